"""Stage 1: the mirrored photo as a pseudo second view at the mirrored camera."""

from __future__ import annotations

import torch

from sym3d.camera import mirror_camera, mirror_weight, yaw_pitch_roll
from sym3d.config import MirrorWeightConfig
from sym3d.image import from_model_range, mirror_image
from sym3d.priors.base import BasePrior, ImageLossFn
from sym3d.protocols import PriorContext, PriorViews

__all__ = ["MirrorViewPrior"]


class MirrorViewPrior(BasePrior):
    """``lambda(yaw) * loss(G(w, mirror(c)), flip(x))``: SPI's symmetry prior for the latent.

    ``lambda`` is :func:`sym3d.camera.mirror_weight` of the input camera's yaw: 0 for near
    frontal inputs (no extra render is requested then), about 0.3 at 11.5 degrees, up to 0.5.

    Args:
        config: the weight curve.
        perceptual: perceptual loss on ``[0, 1]`` images (per sample).
        perceptual_weight, mse_weight: weights of the two reconstruction terms on the mirror view.
        mse: pixel loss used with ``mse_weight`` (per sample, ``[0, 1]`` images).
    """

    def __init__(
        self,
        config: MirrorWeightConfig,
        perceptual: ImageLossFn,
        *,
        perceptual_weight: float = 1.0,
        mse_weight: float = 0.0,
        mse: ImageLossFn | None = None,
    ) -> None:
        super().__init__("mirror", ("latent",), every=1)
        self.config = config
        self.perceptual = perceptual
        self.perceptual_weight = perceptual_weight
        self.mse_weight = mse_weight
        self.mse = mse

    def weight(self, camera: torch.Tensor) -> float:
        """The mirror weight for the input ``camera [1, 25]``."""
        yaw = yaw_pitch_roll(camera)[0]
        c = self.config
        return float(mirror_weight(yaw, threshold=c.threshold, sigma=c.sigma, scale=c.scale).max())

    def views(self, ctx: PriorContext) -> torch.Tensor | None:
        """The mirrored camera, or ``None`` when the weight is 0."""
        if not self.config.enabled or self.weight(ctx.camera) == 0.0:
            return None
        return mirror_camera(ctx.camera)

    def __call__(self, ctx: PriorContext, views: PriorViews | None) -> dict[str, torch.Tensor]:
        """Weighted reconstruction loss of the mirrored view."""
        if views is None:
            return {}
        lam = self.weight(ctx.camera)
        pred = from_model_range(views.render.image[:, 0])
        target = mirror_image(ctx.target)
        terms = {"perceptual": lam * self.perceptual_weight * self.perceptual(pred, target).mean()}
        if self.mse_weight > 0 and self.mse is not None:
            terms["mse"] = lam * self.mse_weight * self.mse(pred, target).mean()
        terms["_weight"] = torch.tensor(lam)
        return terms
