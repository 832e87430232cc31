"""``mirror_regions`` (stage 2): the warped mirror, compared inside facial-feature regions.

The mirrored photo is warped into cameras around the mirrored camera and compared with a
contextual loss inside the eye and mouth boxes, with the authentic mask against conflicts.
"""

from __future__ import annotations

import attrs
import torch
from attrs import validators as v

from sym3d.camera import mirror_camera, sample_cameras_around, yaw_pitch_roll
from sym3d.image import from_model_range, mirror_image
from sym3d.losses.contextual import region_contextual_loss
from sym3d.protocols import Prior, PriorContext, PriorViews
from sym3d.terms.base import BasePrior, TermConfig, TermEnv
from sym3d.terms.losses import Losses
from sym3d.terms.relit import MirrorRelighter
from sym3d.warp import DepthMode, conflict_mask, source_mask, warp_photo

__all__ = ["MirrorRegionsConfig", "MirrorRegions", "region_boxes"]


@attrs.frozen(kw_only=True)
class MirrorRegionsConfig(TermConfig, name="mirror_regions", stages=("generator",)):
    """Contextual loss to the warped mirror inside facial regions (when |yaw| is large enough)."""

    weight: float = attrs.field(default=0.02, converter=float, validator=v.ge(0.0))
    """Weight of the summed region contextual losses (SPI: 0.1 x 0.05 x 4)."""
    regions: tuple[str, ...] = attrs.field(
        default=("left_eye", "right_eye", "mouth"),
        converter=tuple,
        validator=v.deep_iterable(v.instance_of(str), v.instance_of(tuple)),
    )
    """Facial-feature regions the mirror acts in; a one-sided cheek mark is not copied."""
    region_padding: float = attrs.field(default=0.0, converter=float, validator=v.ge(0.0))
    """Extra padding around each region box (fraction of the image side). Regions from the pose
    estimator already carry SPI's padding (15/256 around the eyes, 8/256 around the mouth)."""
    crop_size: int = attrs.field(default=80, validator=[v.instance_of(int), v.gt(0)])
    """Side of the region crops fed to the feature extractor."""
    bandwidth: float = attrs.field(default=0.5, converter=float, validator=v.gt(0.0))
    """Contextual-loss bandwidth h."""
    authentic_mask: bool = attrs.field(default=True, validator=v.instance_of(bool))
    """Drop pixels where the warped mirror disagrees with the warped photo (conflict filtering)."""
    conflict_threshold: float = attrs.field(default=0.12, converter=float, validator=v.gt(0.0))
    """Mean absolute RGB difference (in [0,1]) above which a pixel is a conflict."""
    yaw_range: float = attrs.field(default=0.2, converter=float, validator=v.ge(0.0))
    """Half-width of the yaw offsets around the mirrored camera (radians)."""
    pitch_range: float = attrs.field(default=0.1, converter=float, validator=v.ge(0.0))
    """Half-width of the pitch offsets (radians)."""
    occlusion_threshold: float = attrs.field(default=0.05, converter=float, validator=v.gt(0.0))
    """Occlusion test of the warps (world units)."""
    depth_mode: DepthMode = attrs.field(default="camera_z", validator=v.in_(("camera_z", "spi")))
    """Depth used by the warps (see :data:`sym3d.warp.DepthMode`)."""
    use_face_mask: bool = attrs.field(default=True, validator=v.instance_of(bool))
    """Restrict pseudo labels to the source face mask (when known)."""
    relight: bool = attrs.field(default=False, validator=v.instance_of(bool))
    """Warp the flipped photo relit to the photo's light (:mod:`sym3d.terms.relit`); the plain
    flipped photo where the light estimate is refused."""
    max_correction: float = attrs.field(default=0.0, converter=float, validator=v.ge(0.0))
    """With ``relight``: leave the mirror out while the relighting would change the flipped
    photo by more than this, on the mean of the stage's fits (as ``mirror_view.max_correction``);
    0 never leaves it out."""
    max_render_asymmetry: float = attrs.field(default=0.0, converter=float, validator=v.ge(0.0))
    """Leave the mirror out for the stage when the mean latent fitted to the photo alone renders an
    asymmetry above this (as ``mirror_view.max_render_asymmetry``, the same probe on the frozen
    generator, before the first regions step). 0 never measures it."""
    probe_steps: int = attrs.field(default=25, validator=[v.instance_of(int), v.ge(1)])
    """Steps of the probe's fit (as ``mirror_view.probe_steps``)."""
    probe_lr: float = attrs.field(default=0.03, converter=float, validator=v.gt(0.0))
    """Adam learning rate of the probe's fit."""

    def setup(self, env: TermEnv) -> Prior:
        """The provider (every ``env.every`` steps; gated by ``env.mirror_min_yaw``)."""
        return MirrorRegions(
            self, env.losses, num_views=env.num_views, every=env.every, min_yaw=env.mirror_min_yaw
        )


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
            boxes = (
                torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()[None] / size
            )
    return boxes.clamp(0.0, 1.0)[None].to(ctx.target.device)


class MirrorRegions(BasePrior):
    """``weight * mean_k RegionCX(flip(G(w, c'_k)) * M_k, flip(Warp'_k(flip(x))) * M_k)``.

    ``c'_k`` are cameras around the mirrored camera. The flipped photo is warped from the mirrored
    camera with the flipped depth of the input view (a symmetric head, as SPI assumes); renders,
    warps and masks are flipped back and compared inside the facial regions.

    **Authentic mask** (beyond the official code): the photo itself is also warped into the same
    views; where both pseudo labels are valid and disagree by more than ``conflict_threshold``,
    the mirror is not trusted and the pixel is dropped. Where the photo does not see the pixel
    (the unseen side) the mirror is kept: that is the information the symmetry prior adds.
    """

    def __init__(
        self,
        config: MirrorRegionsConfig,
        losses: Losses,
        *,
        num_views: int = 4,
        every: int = 4,
        min_yaw: float = 0.2,
    ) -> None:
        super().__init__("mirror_regions", ("generator",), every=every)
        self.config = config
        self.losses = losses
        self.num_views = num_views
        self.min_yaw = min_yaw
        self.relighter = MirrorRelighter(
            "mirror_regions", config.max_correction, config.max_render_asymmetry
        )

    def gated(self, camera: torch.Tensor) -> bool:
        """True when the input |yaw| is at least ``min_yaw`` (the mirror adds information)."""
        return float(yaw_pitch_roll(camera)[0].abs().max()) >= self.min_yaw

    def views(self, ctx: PriorContext) -> torch.Tensor | None:
        """``num_views`` cameras around the mirrored camera.

        ``None`` when gated off by the yaw, or left out by the light (``max_correction``,
        ``max_render_asymmetry``).
        """
        if not self.gated(ctx.camera):
            return None
        c = self.config
        frozen = ctx.reference if ctx.reference is not None else ctx.generator
        self.relighter.probe_render(ctx, frozen, self.losses, steps=c.probe_steps, lr=c.probe_lr)
        if self.relighter.left_out:
            return None
        return sample_cameras_around(
            mirror_camera(ctx.camera),
            self.num_views,
            yaw_range=c.yaw_range,
            pitch_range=c.pitch_range,
            generator=ctx.rng,
        )[0]

    def pseudo_labels(
        self, ctx: PriorContext, views: PriorViews
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The mirror's pseudo labels, in the views' orientation.

        Returns:
            warped mirror ``[V,3,H,W]``, its authentic mask ``[V,1,H,W]``, conflicts ``[V,1,H,W]``.
        """
        c = self.config
        kw = dict(
            depth_mode=c.depth_mode,
            use_face_mask=c.use_face_mask,
            occlusion_threshold=c.occlusion_threshold,
        )
        photo = self.relighter.photo(ctx)[0] if c.relight else None
        warped_m = warp_photo(ctx, views.render, views.cameras, mirrored=True, photo=photo, **kw)
        mask = warped_m.mask
        conflict = torch.zeros_like(mask)
        if c.authentic_mask:
            warped_x = warp_photo(ctx, views.render, views.cameras, **kw)
            conflict = conflict_mask(warped_m, warped_x, threshold=c.conflict_threshold)
            mask = mask * (1.0 - conflict)
        return warped_m.image[0], mask[0], conflict[0]

    def __call__(self, ctx: PriorContext, views: PriorViews | None) -> dict[str, torch.Tensor]:
        """Contextual loss in the regions, flipped back to the photo's orientation."""
        c = self.config
        _, info, run = self.relighter.label(ctx, views, relight=c.relight)
        if not run or views is None:
            return info
        target, mask, conflict = self.pseudo_labels(ctx, views)
        pred = from_model_range(views.render.image[0])
        pred_f, target_f, mask_f = mirror_image(pred), mirror_image(target), mirror_image(mask)
        boxes = region_boxes(ctx, c.regions, c.region_padding).expand(pred.shape[0], -1, -1)
        loss = region_contextual_loss(
            pred_f,
            target_f,
            boxes,
            self.losses.extractor(),
            crop_size=c.crop_size,
            resize_to=self.losses.resize or None,
            mask=mask_f,
            weight_mask=mask_f,
            bandwidth=c.bandwidth,
            reduction="none",
        ).mean()
        return {
            "contextual": c.weight * loss,
            "_valid": mask.mean().detach(),
            "_conflict": conflict.mean().detach(),
            **info,
        }
