"""Masked per-pixel losses: mean squared error and mean absolute error.

Both compare images in the public ``[0, 1]`` range. SPI's reconstruction MSE is computed on
``[-1, 1]`` images, which is exactly ``4 x`` the value on ``[0, 1]`` images; scale the term weight
if numerical parity with SPI's weights matters.
"""

from __future__ import annotations

import torch

from sym3d.losses._reduce import (
    ImageLossModule,
    check_image_pair,
    check_mask,
    check_reduction,
    masked_mean,
    reduce,
)
from sym3d.protocols import Reduction

__all__ = ["mse_loss", "l1_loss", "MSELoss", "L1Loss"]


def _pixel_loss(
    err: torch.Tensor,
    mask: torch.Tensor | None,
    dims: dict[str, int],
    reduction: Reduction,
) -> torch.Tensor:
    if mask is not None:
        check_mask(mask, dims)
    return reduce(masked_mean(err, mask, empty_value=0.0), reduction)


def mse_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Mean squared error over the (masked) pixels of each sample.

    Args:
        pred: ``[B, C, H, W]`` predicted image, values in ``[0, 1]``.
        target: ``[B, C, H, W]`` target image, values in ``[0, 1]``.
        mask: optional ``[B, 1, H, W]`` (or ``[B, C, H, W]``) pixel weights in ``[0, 1]``. The
            per-sample value is ``sum(m * (pred - target)^2) / sum(m)`` (over channels and
            pixels); a sample whose mask is all zero gives ``0`` with zero gradient (no NaN).
        reduction: ``"none"`` returns ``[B]``; ``"mean"`` / ``"sum"`` reduce over the batch.

    Returns:
        ``[B]`` or a scalar, in squared ``[0, 1]`` units.

    Raises:
        sym3d.errors.ShapeError: if shapes differ or are not ``[B, C, H, W]``.
        sym3d.errors.ConfigError: for an unknown ``reduction``.

    Example:
        >>> x = torch.zeros(2, 3, 4, 4)
        >>> mse_loss(x, x + 0.5, reduction="none")
        tensor([0.2500, 0.2500])
    """
    check_reduction(reduction)
    dims = check_image_pair(pred, target, channels=None)
    return _pixel_loss((pred - target).square(), mask, dims, reduction)


def l1_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Mean absolute error over the (masked) pixels of each sample.

    Arguments, mask weighting (``0`` for an empty mask) and errors are those of
    :func:`mse_loss`, with ``|pred - target|`` in place of the squared error.

    Returns:
        ``[B]`` or a scalar, in ``[0, 1]`` intensity units.

    Example:
        >>> x = torch.zeros(1, 3, 4, 4)
        >>> l1_loss(x, x + 0.5)
        tensor(0.5000)
    """
    check_reduction(reduction)
    dims = check_image_pair(pred, target, channels=None)
    return _pixel_loss((pred - target).abs(), mask, dims, reduction)


class MSELoss(ImageLossModule):
    """Module form of :func:`mse_loss`: ``MSELoss(reduction="mean")``, shapes as its function."""

    _fn = staticmethod(mse_loss)


class L1Loss(ImageLossModule):
    """Module form of :func:`l1_loss`: ``L1Loss(reduction="mean")``, shapes as its function."""

    _fn = staticmethod(l1_loss)
