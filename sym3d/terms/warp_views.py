"""``warp_views`` (stage 2): the photo warped by depth into cameras near the input camera."""

from __future__ import annotations

import attrs
import torch
from attrs import validators as v

from sym3d.camera import sample_cameras_around
from sym3d.image import from_model_range
from sym3d.protocols import Prior, PriorContext, PriorViews
from sym3d.terms.base import BasePrior, TermConfig, TermEnv
from sym3d.terms.losses import Losses
from sym3d.warp import DepthMode, warp_photo

__all__ = ["WarpViewsConfig", "WarpViews"]


@attrs.frozen(kw_only=True)
class WarpViewsConfig(TermConfig, name="warp_views", stages=("generator",)):
    """Masked perceptual loss against the photo warped into nearby cameras."""

    weight: float = attrs.field(default=0.4, converter=float, validator=v.ge(0.0))
    """Weight of the masked perceptual loss (SPI: lambda_rot 0.1 x 4 views)."""
    yaw_range: float = attrs.field(default=0.2, converter=float, validator=v.ge(0.0))
    """Half-width of the yaw offsets (radians)."""
    pitch_range: float = attrs.field(default=0.1, converter=float, validator=v.ge(0.0))
    """Half-width of the pitch offsets (radians)."""
    occlusion_threshold: float = attrs.field(default=0.05, converter=float, validator=v.gt(0.0))
    """Max |z_point - z_surface| in the source view for a visible pixel (world units)."""
    depth_mode: DepthMode = attrs.field(default="camera_z", validator=v.in_(("camera_z", "spi")))
    """``camera_z``: ray distance converted to camera z (correct); ``spi``: the official quirk."""
    use_face_mask: bool = attrs.field(default=True, validator=v.instance_of(bool))
    """Restrict pseudo labels to the source face mask (when known)."""

    def setup(self, env: TermEnv) -> Prior:
        """The provider (every ``env.every`` steps, ``env.num_views`` cameras)."""
        return WarpViews(self, env.losses, num_views=env.num_views, every=env.every)


class WarpViews(BasePrior):
    """``weight * mean_k perceptual(G(w, c_k) * M_k, Warp_k(x))`` over cameras ``c_k`` near ``c``.

    Each auxiliary step samples ``num_views`` cameras around the input camera (rotations about the
    look-at pivot), warps the photo into them with the current depth (backward warping, occlusion
    test, face mask) and compares the renders with these pseudo labels where they are valid.
    """

    def __init__(
        self, config: WarpViewsConfig, losses: Losses, *, num_views: int = 4, every: int = 4
    ) -> None:
        super().__init__("warp_views", ("generator",), every=every)
        self.config = config
        self.losses = losses
        self.num_views = num_views

    def views(self, ctx: PriorContext) -> torch.Tensor | None:
        """``num_views`` cameras around the input camera."""
        c = self.config
        return sample_cameras_around(
            ctx.camera,
            self.num_views,
            yaw_range=c.yaw_range,
            pitch_range=c.pitch_range,
            generator=ctx.rng,
        )[0]

    def __call__(self, ctx: PriorContext, views: PriorViews | None) -> dict[str, torch.Tensor]:
        """Masked perceptual loss to the warped photo, averaged over views."""
        if views is None:
            return {}
        c = self.config
        warped = warp_photo(
            ctx,
            views.render,
            views.cameras,
            depth_mode=c.depth_mode,
            use_face_mask=c.use_face_mask,
            occlusion_threshold=c.occlusion_threshold,
        )
        pred = from_model_range(views.render.image[0])  # [V, 3, H, W]
        mask = warped.mask[0]
        loss = self.losses.perceptual(pred * mask, warped.image[0]).mean()
        return {"perceptual": c.weight * loss, "_valid": mask.mean().detach()}
