"""``unseen_anchor`` (stage 2): what the photo does not see stays as the pivot showed it.

Tuning the generator on the input view (and views warped from it) changes shared features, and
nothing holds the surface the photo never saw: far views drift (streaks on the unseen cheek,
lost mirror detail) although stage 1 rendered them well. This term renders random orbit views
with the tuned generator and with the frozen one at the pivot, and keeps them equal where the
photo does not see the surface (the complement of the warp's visibility), so the fine-tuning
acts where there is evidence and the pivot's prior (the mirror, under SPI) is kept elsewhere.

Where stage 2's mirror regions teach the unseen side (the eyes and mouth of the flipped photo,
warped to the view), the anchor lets go: those pixels have evidence too, from the mirror.
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
from sym3d.terms.mirror_regions import region_boxes
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
    mirror_regions: tuple[str, ...] = attrs.field(
        default=("left_eye", "right_eye", "mouth"),
        converter=tuple,
        validator=v.deep_iterable(v.instance_of(str), v.instance_of(tuple)),
    )
    """Facial regions left to the mirror: where the flipped photo's regions land in a view, the
    anchor does not hold (as ``mirror_regions.regions``; one box around the face when the
    observation has no regions). Empty: hold every unseen pixel."""
    region_padding: float = attrs.field(default=0.0, converter=float, validator=v.ge(0.0))
    """Extra padding of those regions (fraction of the image side, as ``mirror_regions``)."""
    occluder_window: float = attrs.field(
        default=0.0, converter=float, validator=[v.ge(0.0), v.le(0.25)]
    )
    """Reach of the occlusion test (fraction of the image side; 0: the projected pixel only).
    A surface point counts as seen only if no surface of the input view within this distance of
    its projection lies in front of it by more than ``occlusion_threshold``: surface just behind
    an occluding edge (the nose, the far cheek's silhouette), or seen at a grazing angle, counts
    as unseen, while a loose threshold still tolerates a volume-rendered depth's imprecision."""
    rim: float = attrs.field(default=0.0, converter=float, validator=[v.ge(0.0), v.le(0.25)])
    """Width of the seen region's rim that is held too (fraction of the image side; 0: none).
    Surface next to an occlusion edge or a silhouette is seen by the photo at a grazing angle or
    not at all (the occlusion test has a tolerance), so its pixels carry little of the photo."""

    def setup(self, env: TermEnv) -> Prior:
        """The provider (every ``env.every`` steps, ``env.num_views`` cameras)."""
        return UnseenAnchor(self, env.losses, num_views=env.num_views, every=env.every)


class UnseenAnchor(OrbitViewsPrior):
    """``weight * MSE(U_k * G(w, c_k), U_k * G0(w, c_k))`` at random cameras ``c_k``.

    ``G0`` is the frozen generator (``ctx.reference``) at the pivot ``w``, rendered without
    gradient. ``U_k = (1 - V_k) * (1 - R_k)`` ``[1, H, W]`` in ``[0, 1]``: ``V_k`` is where the
    photo sees the surface that the tuned render shows at ``c_k`` (the validity of warping the
    photo there with this step's depths, detached, the occlusion test reaching ``occluder_window``
    around each projection; the photo's foreground, not only its face, counts as seen), eroded
    by ``rim`` (each pixel the minimum over the square of pixels within
    ``round(rim * W)`` of it), ``R_k`` where the mirror regions of the flipped photo land there
    (the region boxes of the input view, flipped and warped from the mirrored camera).
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
                occluder_window=c.occluder_window,
            ).mask[0]  # [V, 1, H, W]
            seen = self.erode(seen)
            unseen = (1.0 - seen) * (1.0 - self.region_mask(ctx, views))
        pred = from_model_range(views.render.image[0])
        loss = self.losses.mse(pred, ref.clamp(0.0, 1.0), unseen).mean()
        return {"mse": c.weight * loss, "_unseen": unseen.mean()}

    def erode(self, seen: torch.Tensor) -> torch.Tensor:
        """``seen [V, 1, H, W]`` in [0, 1], each pixel the minimum over its ``rim`` square."""
        k = round(self.config.rim * seen.shape[-1])
        if k == 0:
            return seen
        import kornia.morphology  # deferred: importing kornia costs ~0.4 s

        return kornia.morphology.erosion(seen, seen.new_ones(2 * k + 1, 2 * k + 1))

    def region_mask(self, ctx: PriorContext, views: PriorViews) -> torch.Tensor:
        """Where the flipped photo's facial regions land in the views: ``[V, 1, H, W]`` in [0, 1].

        Zero when ``mirror_regions`` is empty. The region boxes are painted in the input view
        and warped like the mirror's pseudo label (flipped, from the mirrored camera, inside the
        face mask), so a region counts only where the mirror actually supplies it.
        """
        c = self.config
        if not c.mirror_regions:
            return torch.zeros_like(views.render.image[0][:, :1])
        h, w = ctx.target.shape[-2:]
        boxes = region_boxes(ctx, c.mirror_regions, c.region_padding)[0]  # [R, 4] in [0, 1]
        x = (torch.arange(w, device=boxes.device, dtype=torch.float32) + 0.5) / w
        y = (torch.arange(h, device=boxes.device, dtype=torch.float32) + 0.5) / h
        inside_x = (x >= boxes[:, 0:1]) & (x < boxes[:, 2:3])  # [R, W]
        inside_y = (y >= boxes[:, 1:2]) & (y < boxes[:, 3:4])  # [R, H]
        painted = (inside_y[:, :, None] & inside_x[:, None, :]).any(0).float()  # [H, W]
        painted = painted.expand(1, 3, h, w)
        warped = warp_photo(
            ctx,
            views.render,
            views.cameras,
            depth_mode=c.depth_mode,
            use_face_mask=True,
            occlusion_threshold=c.occlusion_threshold,
            mirrored=True,
            photo=painted,
        )
        return (warped.image[0][:, :1] * warped.mask[0]).clamp(0.0, 1.0)
