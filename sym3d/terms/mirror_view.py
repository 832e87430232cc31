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

    def weight(self, camera: torch.Tensor) -> float:
        """The mirror weight for the input ``camera [1, 25]``."""
        yaw = yaw_pitch_roll(camera)[0]
        c = self.config
        w = mirror_weight(yaw, threshold=self.min_yaw, sigma=c.sigma, scale=c.scale)
        return float(w.detach().max())

    def views(self, ctx: PriorContext) -> torch.Tensor | None:
        """The mirrored camera, or ``None`` when the weight is 0."""
        if self.weight(ctx.camera) == 0.0:
            return None
        return mirror_camera(ctx.camera)

    def __call__(self, ctx: PriorContext, views: PriorViews | None) -> dict[str, torch.Tensor]:
        """Weighted reconstruction loss of the mirrored view."""
        if views is None:
            return {}
        lam = self.weight(ctx.camera)
        c = self.config
        pred = from_model_range(views.render.image[:, 0])
        target = mirror_image(ctx.target)
        terms = {
            "perceptual": lam * c.perceptual_weight * self.losses.perceptual(pred, target).mean()
        }
        if c.mse_weight > 0:
            terms["mse"] = lam * c.mse_weight * self.losses.mse(pred, target).mean()
        terms["_weight"] = torch.tensor(lam)
        return terms
