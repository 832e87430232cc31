"""Stage 2: pseudo labels in nearby views made by depth-guided warping of the input photo."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sym3d.camera import sample_cameras_around
from sym3d.config import WarpConfig
from sym3d.image import from_model_range
from sym3d.priors.base import BasePrior, ImageLossFn
from sym3d.protocols import PriorContext, PriorViews, RenderOutput
from sym3d.warp import WarpResult, warp_to_views

__all__ = ["WarpViewsPrior", "source_depth", "source_mask", "warp_input"]


def source_depth(render: RenderOutput, mode: str) -> torch.Tensor:
    """Depth ``[1, 1, h, w]`` (detached) of a one-view render for warping: camera z, or SPI's ray distance."""
    d = render.depth_z if mode == "camera_z" else render.depth
    return d[:, 0].detach()


def target_depths(render: RenderOutput, mode: str) -> torch.Tensor:
    """Depths ``[1, V, 1, h, w]`` (detached) of the target views."""
    return (render.depth_z if mode == "camera_z" else render.depth).detach()


def source_mask(ctx: PriorContext, use_face_mask: bool) -> torch.Tensor:
    """Where pseudo labels may come from in the input view: the face mask, else the rendered foreground.

    Returns:
        ``[1, 1, H, W]`` in ``[0, 1]`` at the target image resolution.
    """
    size = ctx.target.shape[-1]
    obs = ctx.observation
    if use_face_mask and obs is not None and obs.face_mask is not None:
        m = obs.face_mask
    else:
        assert ctx.render is not None
        m = ctx.render.opacity[:, 0].detach()
    if m.shape[-1] != size:
        m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False)
    return m.clamp(0.0, 1.0)


def warp_input(ctx: PriorContext, views: PriorViews, config: WarpConfig) -> WarpResult:
    """Warp the input photo into the requested views with the current geometry (all detached)."""
    assert ctx.render is not None, "warp priors need the input-view render"
    return warp_to_views(
        ctx.target,
        source_depth(ctx.render, config.depth_mode),
        ctx.camera,
        target_depths(views.render, config.depth_mode),
        views.cameras,
        source_mask=source_mask(ctx, config.use_face_mask),
        occlusion_threshold=config.occlusion_threshold,
    )


class WarpViewsPrior(BasePrior):
    """``weight * mean_k perceptual(G(w, c_k) * M_k, Warp_k(x))`` over cameras ``c_k`` near ``c``.

    Each auxiliary step samples ``num_views`` cameras around the input camera (rotations about the
    look-at pivot), renders them with the generator being tuned, warps the input photo into them
    with the current depth (backward warping, occlusion test, face mask), and compares the renders
    with these pseudo labels where they are valid. Pseudo labels are targets: no gradient flows
    through the warp.

    Args:
        config: warp settings (weight, ranges, occlusion threshold, depth mode).
        perceptual: per-sample perceptual loss on ``[0, 1]`` images.
        num_views: cameras per auxiliary step.
        every: run every k-th step.
    """

    def __init__(self, config: WarpConfig, perceptual: ImageLossFn, *, num_views: int = 4, every: int = 4) -> None:
        super().__init__("warp", ("generator",), every=every)
        self.config = config
        self.perceptual = perceptual
        self.num_views = num_views

    def views(self, ctx: PriorContext) -> torch.Tensor | None:
        """``num_views`` cameras around the input camera."""
        c = self.config
        return sample_cameras_around(ctx.camera, self.num_views, yaw_range=c.yaw_range, pitch_range=c.pitch_range, generator=ctx.rng)[0]

    def __call__(self, ctx: PriorContext, views: PriorViews | None) -> dict[str, torch.Tensor]:
        """Masked perceptual loss to the warped photo, averaged over views."""
        if views is None:
            return {}
        warped = warp_input(ctx, views, self.config)
        pred = from_model_range(views.render.image[0])  # [V, 3, H, W]
        mask = warped.mask[0]
        loss = self.perceptual(pred * mask, warped.image[0]).mean()
        return {"perceptual": self.config.weight * loss, "_valid": mask.mean().detach()}
