"""``mirror_view`` (stage 1): the mirrored photo as a pseudo second view at the mirrored camera."""

from __future__ import annotations

import attrs
import torch
from attrs import validators as v

from sym3d.camera import mirror_camera, mirror_weight, yaw_pitch_roll
from sym3d.image import from_model_range, mirror_image
from sym3d.protocols import Prior, PriorContext, PriorViews
from sym3d.terms.base import BasePrior, TermConfig, TermEnv
from sym3d.terms.losses import Losses
from sym3d.terms.relit import MirrorRelighter
from sym3d.warp import conflict_mask, warp_photo

__all__ = ["MirrorViewConfig", "MirrorView"]


@attrs.frozen(kw_only=True)
class MirrorViewConfig(TermConfig, name="mirror_view", stages=("latent",)):
    """SPI's yaw-weighted mirror view (the weight curve is :func:`sym3d.camera.mirror_weight`)."""

    sigma: float = attrs.field(default=0.29, converter=float, validator=v.gt(0.0))
    """Std of the Gaussian in the weight formula (radians)."""
    scale: float = attrs.field(default=2.7, converter=float, validator=v.gt(0.0))
    """Divisor of the Gaussian pdf in the weight formula."""
    perceptual_weight: float = attrs.field(default=1.0, converter=float, validator=v.ge(0.0))
    """Weight of the perceptual loss on the mirror view (times the yaw weight)."""
    mse_weight: float = attrs.field(default=0.0, converter=float, validator=v.ge(0.0))
    """Weight of the ``[0, 1]`` MSE on the mirror view (times the yaw weight; SPI: 0)."""
    relight: bool = attrs.field(default=False, validator=v.instance_of(bool))
    """Show the flipped photo relit to the photo's light (:mod:`sym3d.terms.relit`); the plain
    flipped photo where the light estimate is refused."""
    authentic_mask: bool = attrs.field(default=False, validator=v.instance_of(bool))
    """Drop pixels where the mirror label disagrees with the photo warped into the mirrored view
    (both seeing the same surface) from the mirror loss, as ``mirror_regions`` does."""
    max_correction: float = attrs.field(default=0.0, converter=float, validator=v.ge(0.0))
    """With ``relight``: when the relighting changes the flipped photo by more than this (mean
    ``|ratio - 1|`` over the mirrored face, logged as ``/_correction``), averaged over the stage's
    fits so far (``/_mean_correction``), the mirror is left out (no loss, no extra view): under so
    strong a side light the relit label is less faithful than the latent's own guess
    (``docs/benchmarks.md``). Above 0 the fit is also not snapped to a symmetric light
    (:mod:`sym3d.terms.relit`). 0 never leaves it out."""
    max_render_asymmetry: float = attrs.field(default=0.0, converter=float, validator=v.ge(0.0))
    """Leave the mirror out for the stage when the mean latent fitted to the photo alone
    (``probe_steps`` steps at ``probe_lr``, :func:`sym3d.terms.relit.probe_latent`) renders an
    asymmetry above this (:func:`sym3d.terms.relit.render_asymmetry`, logged as
    ``/_render_asymmetry``): the photo's light is one the mirror would undo. Measured once, at
    the stage's first step, with or without ``relight``. 0 never measures it."""
    probe_steps: int = attrs.field(default=25, validator=[v.instance_of(int), v.ge(1)])
    """Steps of the probe's fit (the latent takes on the photo's light within them)."""
    probe_lr: float = attrs.field(default=0.03, converter=float, validator=v.gt(0.0))
    """Adam learning rate of the probe's fit."""
    validate_every: int = attrs.field(default=0, validator=[v.instance_of(int), v.ge(0)])
    """While the light probe (``max_render_asymmetry``) leaves the mirror out, still render the
    mirrored view every this many steps and log ``/_validation``: the ``[0, 1]`` MSE between it
    and the flipped photo relit by the probe's own render
    (:func:`sym3d.terms.relit.render_shading_ratio`), never optimised. With
    ``latent.select_by = "mirror_view/_validation"`` stage 1 ends on the latent that renders the
    mirrored side best, instead of the last one, which has over-fitted the photo (a label too
    unsure to train on still tells when to stop; ``docs/engine.md``). 0: never."""
    conflict_threshold: float = attrs.field(default=0.12, converter=float, validator=v.gt(0.0))
    """Mean absolute RGB difference (in [0,1]) above which a pixel is a conflict."""
    occlusion_threshold: float = attrs.field(default=0.05, converter=float, validator=v.gt(0.0))
    """Occlusion test of the authentic mask's warps (world units)."""

    def setup(self, env: TermEnv) -> Prior:
        """The provider (every step; gated by ``env.mirror_min_yaw``)."""
        return MirrorView(self, env.losses, min_yaw=env.mirror_min_yaw)


class MirrorView(BasePrior):
    """``lambda(yaw) * loss(G(w, mirror(c)), flip(x))``: SPI's symmetry prior for the latent.

    ``lambda`` is 0 for near-frontal inputs (``|yaw| < min_yaw``; no extra render is requested
    then), about 0.3 at 11.5 degrees, up to 0.5.
    """

    def __init__(self, config: MirrorViewConfig, losses: Losses, *, min_yaw: float) -> None:
        super().__init__("mirror_view", ("latent",), every=1)
        self.config = config
        self.losses = losses
        self.min_yaw = min_yaw
        self.relighter = MirrorRelighter(
            "mirror_view", config.max_correction, config.max_render_asymmetry
        )

    def weight(self, camera: torch.Tensor) -> float:
        """The mirror weight for the input ``camera [1, 25]``."""
        yaw = yaw_pitch_roll(camera)[0]
        c = self.config
        w = mirror_weight(yaw, threshold=self.min_yaw, sigma=c.sigma, scale=c.scale)
        return float(w.detach().max())

    def views(self, ctx: PriorContext) -> torch.Tensor | None:
        """The mirrored camera, or ``None`` (weight 0, or the mirror left out).

        With ``max_render_asymmetry`` the probe runs once, before the first mirror view. A
        mirror left out is still rendered on ``validate_every``'s steps (see :meth:`validation`).
        """
        c = self.config
        if self.weight(ctx.camera) == 0.0:
            return None
        self.relighter.probe_render(
            ctx, ctx.generator, self.losses, steps=c.probe_steps, lr=c.probe_lr
        )
        if self.relighter.left_out and not self.validates(ctx.step):
            return None
        return mirror_camera(ctx.camera)

    def validates(self, step: int) -> bool:
        """Whether ``step`` renders the mirror for :meth:`validation`.

        Only when the probe left it out for the stage: the fit's gate may let it back in later,
        so it never starts a validation.
        """
        every = self.config.validate_every
        return every > 0 and self.relighter.probed_out and step % every == 0

    def validation(self, ctx: PriorContext, views: PriorViews) -> torch.Tensor:
        """``[]`` MSE of the mirrored view against the flipped photo relit by the probe (no grad).

        The label ``flip(x) * R_m / flip(R)`` (``R``, ``R_m``: the probe's renders at the photo's
        and the mirrored camera) carries the photo's detail in the light the generator gave it.
        """
        assert self.relighter.probe_ratio is not None, "validation needs the probe's render"
        with torch.no_grad():  # the probe's ratio comes from the same generator: the same size
            pred = from_model_range(views.render.image[:, 0])
            label = (mirror_image(ctx.target) * self.relighter.probe_ratio).clamp(0.0, 1.0)
            return self.losses.mse(pred, label).mean()

    def __call__(self, ctx: PriorContext, views: PriorViews | None) -> dict[str, torch.Tensor]:
        """Weighted reconstruction loss of the mirrored view (or its validation when left out)."""
        c = self.config
        relit, info, run = self.relighter.label(ctx, views, relight=c.relight)
        if views is not None and self.validates(ctx.step):
            return {**info, "_validation": self.validation(ctx, views)}
        if not run or views is None:
            return info
        lam = self.weight(ctx.camera)
        photo = ctx.target if relit is None else relit
        pred = from_model_range(views.render.image[:, 0])
        target = mirror_image(photo)
        mask = None
        if c.authentic_mask:
            mask = self.authentic(ctx, views, photo)
            info["_conflict"] = (1.0 - mask).mean()
        terms = {
            "perceptual": lam
            * c.perceptual_weight
            * self.losses.perceptual(pred, target, mask).mean()
        }
        if c.mse_weight > 0:
            terms["mse"] = lam * c.mse_weight * self.losses.mse(pred, target, mask).mean()
        terms["_weight"] = torch.tensor(lam)
        return {**terms, **info}

    def authentic(self, ctx: PriorContext, views: PriorViews, photo: torch.Tensor) -> torch.Tensor:
        """``[1, 1, H, W]`` in {0, 1}: 0 where the mirror label conflicts with the photo.

        Both the (relit) flipped photo and the photo are warped into the mirrored view with this
        step's detached depths; where both are valid and differ by more than
        ``conflict_threshold`` the mirror is not trusted (a one-sided mark, a fringe, a light the
        relighting missed). Where the photo does not see the surface the mirror is kept.
        """
        c = self.config
        kw = dict(
            depth_mode="camera_z", use_face_mask=True, occlusion_threshold=c.occlusion_threshold
        )
        warped_m = warp_photo(ctx, views.render, views.cameras, mirrored=True, photo=photo, **kw)
        warped_x = warp_photo(ctx, views.render, views.cameras, **kw)
        conflict = conflict_mask(warped_m, warped_x, threshold=c.conflict_threshold)
        return 1.0 - conflict[:, 0]
