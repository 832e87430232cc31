"""Schedules of stage 1 (the StyleGAN2 projector's learning rate and latent noise)."""

from __future__ import annotations

import math

__all__ = ["projector_lr", "latent_noise_scale"]


def projector_lr(t: float, *, peak: float, rampup: float, rampdown: float) -> float:
    """Learning rate at progress ``t`` in ``[0, 1]``: linear warm-up over ``rampup``, cosine ramp-down over the last ``rampdown``.

    ``lr = peak * min(1, t / rampup) * (1/2 - cos(pi * min(1, (1 - t) / rampdown)) / 2)``.
    """
    up = min(1.0, t / rampup) if rampup > 0 else 1.0
    down = 0.5 - 0.5 * math.cos(math.pi * min(1.0, (1.0 - t) / rampdown))
    return peak * up * down


def latent_noise_scale(t: float, *, w_std: float, strength: float, ramp: float) -> float:
    """Std of the noise added to the latent at progress ``t``: ``w_std * strength * max(0, 1 - t / ramp)^2``."""
    return w_std * strength * max(0.0, 1.0 - t / ramp) ** 2
