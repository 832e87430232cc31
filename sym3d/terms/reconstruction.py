"""``reconstruction``: the input view rendered by the generator against the photo (both stages)."""

from __future__ import annotations

from typing import Literal

import attrs
import torch
from attrs import validators as v

from sym3d.image import from_model_range
from sym3d.protocols import Prior, PriorContext, PriorViews
from sym3d.terms.base import BasePrior, TermConfig, TermEnv
from sym3d.terms.losses import Losses

__all__ = ["ReconstructionConfig", "Reconstruction", "PERCEPTUAL_KEY"]

PERCEPTUAL_KEY = "reconstruction/_perceptual"
"""Logged key of the unweighted perceptual distance (what the early-stop rule reads)."""


@attrs.frozen(kw_only=True)
class ReconstructionConfig(TermConfig, name="reconstruction"):
    """``perceptual_weight * perceptual(x_hat, x) + mse_weight * MSE(x_hat, x)``, input view."""

    perceptual_weight: float = attrs.field(default=1.0, converter=float, validator=v.ge(0.0))
    """Weight of the perceptual loss."""
    mse_weight: float = attrs.field(default=0.0, converter=float, validator=v.ge(0.0))
    """Weight of the MSE (SPI: 0 in stage 1, 1 in stage 2)."""
    mse_range: Literal["model", "public"] = attrs.field(
        default="public", validator=v.in_(("model", "public"))
    )
    """Where the MSE is measured: ``model`` on ``[-1, 1]`` as SPI's stage 2 (4x the ``[0, 1]``
    value), ``public`` on ``[0, 1]``."""

    def setup(self, env: TermEnv) -> Prior:
        """The provider for ``env.stage`` (runs every step)."""
        return Reconstruction(self, env.losses, env.stage)


class Reconstruction(BasePrior):
    """Compares ``ctx.render`` (the input view) with ``ctx.target``; asks for no extra view."""

    def __init__(self, config: ReconstructionConfig, losses: Losses, stage: str) -> None:
        super().__init__("reconstruction", (stage,), every=1)
        self.config = config
        self.losses = losses

    def __call__(self, ctx: PriorContext, views: PriorViews | None) -> dict[str, torch.Tensor]:
        """``perceptual`` and ``mse`` (when weighted), plus the unweighted ``_perceptual``."""
        assert ctx.render is not None, "the engine renders the input view every step"
        c = self.config
        pred = from_model_range(ctx.render.image[:, 0])
        rec = self.losses.perceptual(pred, ctx.target).mean()
        terms = {"perceptual": c.perceptual_weight * rec, "_perceptual": rec.detach()}
        if c.mse_weight > 0:
            scale = c.mse_weight * 4.0 if c.mse_range == "model" else c.mse_weight
            terms["mse"] = scale * self.losses.mse(pred, ctx.target).mean()
        return terms
