"""Stage 2: the mirrored photo warped into views around the mirrored camera, compared with a
contextual loss inside facial-feature regions, with SPI's authentic mask against conflicts."""

from __future__ import annotations

import torch

from sym3d.camera import mirror_camera, sample_cameras_around, yaw_pitch_roll
from sym3d.config import MirrorPseudoConfig, WarpConfig
from sym3d.image import from_model_range, mirror_image
from sym3d.priors.base import BasePrior, RegionLossFn
from sym3d.priors.pseudo_views import source_depth, source_mask, target_depths
from sym3d.protocols import PriorContext, PriorViews
from sym3d.warp import conflict_mask, warp_to_views

__all__ = ["MirrorRegionsPrior", "region_boxes"]


def region_boxes(ctx: PriorContext, names: tuple[str, ...], padding: float) -> torch.Tensor:
    """Normalised boxes ``[1, R, 4]`` of the named facial regions of the input view.

    Uses ``ctx.observation.regions`` (from landmarks) when they hold every requested name;
    otherwise one box around the face mask (or the rendered foreground when no mask is known).
    """
    obs = ctx.observation
    if obs is not None and obs.regions and all(n in obs.regions for n in names):
        boxes = torch.tensor([list(obs.regions[n]) for n in names], dtype=torch.float32)
        boxes = boxes + torch.tensor([-padding, -padding, padding, padding])
    else:
        mask = source_mask(ctx, use_face_mask=True)[0, 0] > 0.5
        if not bool(mask.any()):
            boxes = torch.tensor([[0.25, 0.25, 0.75, 0.75]])
        else:
            ys, xs = torch.nonzero(mask, as_tuple=True)
            size = mask.shape[-1]
            boxes = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()[None] / size
    return boxes.clamp(0.0, 1.0)[None].to(ctx.target.device)


class MirrorRegionsPrior(BasePrior):
    """``weight * mean_k RegionCX(flip(G(w, c'_k)) * M_k, flip(Warp'_k(flip(x))) * M_k)``.

    ``c'_k`` are cameras around the mirrored camera ``mirror(c)``. The source of the warp is the
    flipped photo at ``mirror(c)`` with the *flipped* depth of the input view (this assumes a
    symmetric head, as SPI does). Renders, warps and masks are flipped back to the photo's
    orientation and compared with the contextual loss inside the facial regions (eyes, mouth by
    default), so one-sided marks elsewhere (a mole on a cheek) are never pulled across.

    **Authentic mask** (beyond the official code): the photo itself is also warped into the same
    views; where both pseudo labels are valid and disagree by more than
    ``config.conflict_threshold`` (mean absolute RGB), the mirror is not trusted and the pixel is
    dropped. Where the photo does not see the pixel (the unseen side) the mirror is kept: that is
    the information the symmetry prior adds.

    Used only when the input's ``|yaw| >= config.gate_threshold``.
    """

    def __init__(
        self,
        config: MirrorPseudoConfig,
        warp_config: WarpConfig,
        contextual: RegionLossFn,
        *,
        num_views: int = 4,
        every: int = 4,
    ) -> None:
        super().__init__("mirror_regions", ("generator",), every=every)
        self.config = config
        self.warp_config = warp_config
        self.contextual = contextual
        self.num_views = num_views

    def gated(self, camera: torch.Tensor) -> bool:
        """True when the input yaw is large enough for the mirror to add information."""
        return float(yaw_pitch_roll(camera)[0].abs().max()) >= self.config.gate_threshold

    def views(self, ctx: PriorContext) -> torch.Tensor | None:
        """``num_views`` cameras around the mirrored camera (``None`` when gated off)."""
        if not self.gated(ctx.camera):
            return None
        w = self.warp_config
        return sample_cameras_around(
            mirror_camera(ctx.camera), self.num_views, yaw_range=w.yaw_range, pitch_range=w.pitch_range, generator=ctx.rng
        )[0]

    def pseudo_labels(self, ctx: PriorContext, views: PriorViews) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Warped mirror image ``[V,3,H,W]``, its authentic mask ``[V,1,H,W]`` and the conflict map, in the views' orientation."""
        assert ctx.render is not None
        w = self.warp_config
        src_depth = source_depth(ctx.render, w.depth_mode)
        tgt_depth = target_depths(views.render, w.depth_mode)
        mask_src = source_mask(ctx, w.use_face_mask)
        warped_m = warp_to_views(
            mirror_image(ctx.target),
            mirror_image(src_depth),
            mirror_camera(ctx.camera),
            tgt_depth,
            views.cameras,
            source_mask=mirror_image(mask_src),
            occlusion_threshold=w.occlusion_threshold,
        )
        mask = warped_m.mask
        conflict = torch.zeros_like(mask)
        if self.config.authentic_mask:
            warped_x = warp_to_views(
                ctx.target, src_depth, ctx.camera, tgt_depth, views.cameras, source_mask=mask_src, occlusion_threshold=w.occlusion_threshold
            )
            conflict = conflict_mask(warped_m, warped_x, threshold=self.config.conflict_threshold)
            mask = mask * (1.0 - conflict)
        return warped_m.image[0], mask[0], conflict[0]

    def __call__(self, ctx: PriorContext, views: PriorViews | None) -> dict[str, torch.Tensor]:
        """Contextual loss in the regions, flipped back to the photo's orientation."""
        if views is None:
            return {}
        target, mask, conflict = self.pseudo_labels(ctx, views)
        pred = from_model_range(views.render.image[0])
        pred_f, target_f, mask_f = mirror_image(pred), mirror_image(target), mirror_image(mask)
        boxes = region_boxes(ctx, self.config.regions, self.config.region_padding).expand(pred.shape[0], -1, -1)
        loss = self.contextual(pred_f, target_f, boxes, mask=mask_f, weight_mask=mask_f).mean()
        return {
            "contextual": self.config.weight * loss,
            "_valid": mask.mean().detach(),
            "_conflict": conflict.mean().detach(),
        }
