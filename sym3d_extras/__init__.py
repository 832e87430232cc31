"""sym3d's plugin components, one subpackage and one entry point per concern.

``synthetic`` (entry point ``symheads``), ``perceptual`` (``lpips``), ``faces`` (``mediapipe``) and
``benchmarks`` (``benchmarks``): each is loaded on its own, so a missing optional dependency
disables only its part. The core never imports this package; see ``docs/architecture.md``.
"""
