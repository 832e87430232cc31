"""``depth_reg`` (stage 2): the tuned depth kept near the frozen generator's at random views."""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
from attrs import validators as v

from sym3d.protocols import Prior, PriorContext, PriorViews
from sym3d.terms.base import OrbitViewsPrior, TermConfig, TermEnv

__all__ = ["DepthRegConfig", "DepthReg"]


@attrs.frozen(kw_only=True)
class DepthRegConfig(TermConfig, name="depth_reg", stages=("generator",)):
    """Depth MSE to the frozen pretrained generator at random orbit cameras."""

    needs_reference: ClassVar[bool] = True
    weight: float = attrs.field(default=1.0, converter=float, validator=v.ge(0.0))
    yaw_range: float = attrs.field(default=0.7, converter=float, validator=v.ge(0.0))
    """Half-width of the yaw draw (radians)."""
    pitch_range: float = attrs.field(default=0.2, converter=float, validator=v.ge(0.0))
    """Half-width of the pitch draw (radians)."""
    symmetric: bool = attrs.field(default=True, validator=v.instance_of(bool))
    """Yaw in [-range, range]; the official code samples only [0, range] (a bug we fix)."""

    def setup(self, env: TermEnv) -> Prior:
        """The provider (every ``env.every`` steps, ``env.num_views`` cameras)."""
        return DepthReg(self, num_views=env.num_views, every=env.every)


class DepthReg(OrbitViewsPrior):
    """``weight * MSE(depth_G(w, c_k), depth_G0(w, c_k))`` at random orbit cameras ``c_k``.

    ``G0`` is the frozen pretrained generator (``ctx.reference``), rendered without gradient and
    deterministically. Depth is the renderer's ray distance at the neural resolution. This is
    what keeps pivot tuning from flattening the face.
    """

    def __init__(self, config: DepthRegConfig, *, num_views: int = 4, every: int = 4) -> None:
        super().__init__("depth_reg", ("generator",), every=every)
        self.config = config
        self.num_views = num_views

    def __call__(self, ctx: PriorContext, views: PriorViews | None) -> dict[str, torch.Tensor]:
        """Depth MSE to the frozen generator (no term without views or reference)."""
        if views is None or ctx.reference is None:
            return {}
        with torch.no_grad():
            ref = ctx.reference.render(ctx.ws.detach(), views.cameras)
        loss = (views.render.depth - ref.depth).square().mean()
        return {"depth": self.config.weight * loss}
