"""A custom prior composed into the inversion: keep the head's depth near a target value at a frontal view.

A prior is any object with ``name``, ``stages``, ``every``, ``views(ctx)`` and ``__call__(ctx, views)``
(see ``sym3d.protocols.Prior``); ``sym3d.terms.BasePrior`` supplies the defaults. The engine renders
the views a prior asks for together with the input view, in one call.

Run: python examples/custom_prior.py
"""

from __future__ import annotations

import torch

import sym3d
from sym3d.camera import look_at
from sym3d.image import from_model_range
from sym3d.terms import BasePrior
from sym3d.testing import TinyGenerator3D


class FrontalDepthPrior(BasePrior):
    """Penalise the frontal view's mean depth moving away from ``target_depth`` (world units)."""

    def __init__(self, target_depth: float = 2.5, weight: float = 0.1) -> None:
        super().__init__("frontal_depth", stages=("latent", "generator"), every=2)
        self.target_depth = target_depth
        self.weight = weight

    def views(self, ctx):  # one extra camera, rendered in the same call as the input view
        return look_at(0.0, 0.0, device=ctx.camera.device)[None]

    def __call__(self, ctx, views):
        depth = views.render.depth[:, 0]
        opacity = views.render.opacity[:, 0]
        mean_depth = (depth * opacity).sum() / opacity.sum().clamp_min(1e-6)
        return {
            "depth": self.weight * (mean_depth - self.target_depth).square(),
            "_mean_depth": mean_depth.detach(),
        }


def main() -> None:
    generator = TinyGenerator3D()
    camera = look_at(0.5, 0.0)[None]
    with torch.no_grad():
        ws = generator.mapping(torch.randn(1, generator.z_dim), camera)
        photo = from_model_range(generator.render(ws, camera[:, None]).image[:, 0]).clamp(0, 1)
    result = sym3d.invert(
        photo,
        camera,
        generator=generator,
        preset="pti",
        overrides=[
            "perceptual=mse",
            "perceptual_resize=0",
            "latent.steps=20",
            "tune.steps=10",
            "tune.lr=0.02",
            "tune.early_stop=0",
        ],
        priors=[FrontalDepthPrior()],
    )
    last = [h for h in result.history if "frontal_depth/_mean_depth" in h][-1]
    print(
        f"final frontal mean depth: {last['frontal_depth/_mean_depth']:.3f} (prior term {last['frontal_depth/depth']:.2e})"
    )


if __name__ == "__main__":
    main()
