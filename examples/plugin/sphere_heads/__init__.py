"""sym3d-sphere-heads: a complete example plugin for sym3d (a generator, a loss and a prior).

The entry module :mod:`sphere_heads.plugin` imports nothing heavy; the components live in
:mod:`sphere_heads.generator` and :mod:`sphere_heads.terms`.
"""

__version__ = "0.1.0"
