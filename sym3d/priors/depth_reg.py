"""Stage 2: keep the tuned generator's geometry close to the pretrained one at random views."""

from __future__ import annotations

import torch

from sym3d.camera import sample_orbit_cameras
from sym3d.config import DepthRegConfig
from sym3d.priors.base import BasePrior
from sym3d.protocols import PriorContext, PriorViews

__all__ = ["DepthRegPrior"]


class DepthRegPrior(BasePrior):
    """``weight * MSE(depth_G(w, c_k), depth_G0(w, c_k))`` at random orbit cameras ``c_k``.

    ``G0`` is the frozen pretrained generator (``ctx.reference``), rendered without gradient and
    deterministically. Depth is the renderer's ray distance at the neural resolution. Yaw is drawn
    from ``[-yaw_range, yaw_range]`` (``symmetric=True``; the official code's ``[0, yaw_range]`` is
    available with ``symmetric=False``). This is what keeps pivot tuning from flattening the face.
    """

    def __init__(self, config: DepthRegConfig, *, num_views: int = 4, every: int = 4) -> None:
        super().__init__("depth_reg", ("generator",), every=every)
        self.config = config
        self.num_views = num_views

    def views(self, ctx: PriorContext) -> torch.Tensor | None:
        """Random orbit cameras."""
        c = self.config
        return sample_orbit_cameras(
            self.num_views, yaw_range=c.yaw_range, pitch_range=c.pitch_range, symmetric=c.symmetric, generator=ctx.rng, device=ctx.camera.device
        )

    def __call__(self, ctx: PriorContext, views: PriorViews | None) -> dict[str, torch.Tensor]:
        """Depth MSE to the frozen generator."""
        if views is None or ctx.reference is None:
            return {}
        with torch.no_grad():
            ref = ctx.reference.render(ctx.ws.detach(), views.cameras)
        loss = (views.render.depth - ref.depth).square().mean()
        return {"depth": self.config.weight * loss}
