"""``unseen_anchor`` (stage 2): what the photo does not see stays as the pivot showed it.

Tuning the generator on the input view (and views warped from it) changes shared features, and
nothing holds the surface the photo never saw: far views drift (streaks on the unseen cheek,
lost mirror detail) although stage 1 rendered them well. This term renders random orbit views
with the tuned generator and with the frozen one at the pivot, and keeps them equal where the
photo does not see the surface (the complement of the warp's visibility), so the fine-tuning
acts where there is evidence and the pivot's prior (the mirror, under SPI) is kept elsewhere.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
from attrs import validators as v

from sym3d.image import from_model_range
from sym3d.protocols import Prior, PriorContext, PriorViews
from sym3d.terms.base import OrbitViewsPrior, TermConfig, TermEnv
from sym3d.terms.losses import Losses
from sym3d.warp import DepthMode, warp_photo

__all__ = ["UnseenAnchorConfig", "UnseenAnchor"]


@attrs.frozen(kw_only=True)
class UnseenAnchorConfig(TermConfig, name="unseen_anchor", stages=("generator",)):
    """Image MSE to the frozen generator at random orbit views, where the photo does not see."""

    needs_reference: ClassVar[bool] = True

    weight: float = attrs.field(default=1.0, converter=float, validator=v.ge(0.0))
    """Weight of the masked MSE (images in ``[0, 1]``)."""
    yaw_range: float = attrs.field(default=0.7, converter=float, validator=v.ge(0.0))
    """Half-width of the yaw draw (radians), symmetric about the frontal view."""
    pitch_range: float = attrs.field(default=0.2, converter=float, validator=v.ge(0.0))
    """Half-width of the pitch draw (radians)."""
    occlusion_threshold: float = attrs.field(default=0.05, converter=float, validator=v.gt(0.0))
    """Occlusion test of the visibility warp (world units)."""
    depth_mode: DepthMode = attrs.field(default="camera_z", validator=v.in_(("camera_z", "spi")))
    """Depth used by the visibility warp (see :data:`sym3d.warp.DepthMode`)."""

    def setup(self, env: TermEnv) -> Prior:
        """The provider (every ``env.every`` steps, ``env.num_views`` cameras)."""
        return UnseenAnchor(self, env.losses, num_views=env.num_views, every=env.every)


class UnseenAnchor(OrbitViewsPrior):
    """``weight * MSE((1 - V_k) * G(w, c_k), (1 - V_k) * G0(w, c_k))`` at random cameras ``c_k``.

    ``G0`` is the frozen generator (``ctx.reference``) at the pivot ``w``, rendered without
    gradient; ``V_k [1, H, W]`` in ``[0, 1]`` is where the photo sees the surface that the tuned
    render shows at ``c_k`` (the validity of warping the photo there with this step's depths,
    detached; the photo's foreground, not only its face, counts as seen).
    """

    def __init__(
        self, config: UnseenAnchorConfig, losses: Losses, *, num_views: int = 4, every: int = 4
    ) -> None:
        super().__init__("unseen_anchor", ("generator",), every=every)
        self.config = config
        self.losses = losses
        self.num_views = num_views

    def __call__(self, ctx: PriorContext, views: PriorViews | None) -> dict[str, torch.Tensor]:
        """Masked image MSE to the frozen generator (no term without views or reference)."""
        if views is None or ctx.reference is None:
            return {}
        c = self.config
        with torch.no_grad():
            ref = from_model_range(ctx.reference.render(ctx.ws.detach(), views.cameras).image[0])
            seen = warp_photo(
                ctx,
                views.render,
                views.cameras,
                depth_mode=c.depth_mode,
                use_face_mask=False,
                occlusion_threshold=c.occlusion_threshold,
            ).mask[0]  # [V, 1, H, W]
        unseen = 1.0 - seen
        pred = from_model_range(views.render.image[0])
        loss = self.losses.mse(pred, ref.clamp(0.0, 1.0), unseen).mean()
        return {"mse": c.weight * loss, "_unseen": unseen.mean()}
