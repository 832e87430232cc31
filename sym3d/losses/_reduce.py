"""Shared helpers of the losses: reduction, masked spatial means, module bases (private)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from sym3d.checks import check_shape
from sym3d.errors import ConfigError, ShapeError
from sym3d.protocols import Reduction

__all__ = [
    "reduce",
    "check_reduction",
    "check_image_pair",
    "check_mask",
    "masked_mean",
    "ReducingLoss",
    "ImageLossModule",
]

_REDUCTIONS = ("none", "mean", "sum")


def check_reduction(reduction: str) -> None:
    """Raise :class:`ConfigError` unless ``reduction`` is ``"none"``, ``"mean"`` or ``"sum"``."""
    if reduction not in _REDUCTIONS:
        raise ConfigError(
            f"reduction: expected one of {', '.join(map(repr, _REDUCTIONS))}, got {reduction!r}."
        )


def reduce(per_sample: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    """Reduce per-sample values ``[B]`` to ``[B]`` (``"none"``) or a scalar (``"mean"``/``"sum"``)."""
    check_reduction(reduction)
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


def check_image_pair(
    pred: torch.Tensor, target: torch.Tensor, channels: int | None = 3
) -> dict[str, int]:
    """Check that ``pred`` and ``target`` are ``[B, C, H, W]`` with equal shapes; return the dims."""
    pattern: list[int | str] = ["B", "C" if channels is None else channels, "H", "W"]
    dims = check_shape(pred, pattern, "pred")
    check_shape(target, pattern, "target", dims=dims)
    return dict(dims)


def check_mask(mask: torch.Tensor, dims: dict[str, int], name: str = "mask") -> None:
    """Check that ``mask`` is ``[B, 1, H, W]`` (or ``[B, C, H, W]``) matching the bound dims."""
    channels = dims.get("C", 3)
    check_shape(mask, ["B", "M", "H", "W"], name, dims=dict(dims))
    if mask.shape[1] not in (1, channels):
        raise ShapeError(name, f"[B,1 or {channels},H,W]", mask.shape)


def masked_mean(
    values: torch.Tensor,
    mask: torch.Tensor | None,
    *,
    empty_value: float = 0.0,
) -> torch.Tensor:
    """Per-sample mean of ``values [B, C, H, W]`` weighted by ``mask`` over channels and pixels.

    Args:
        values: ``[B, C, H, W]`` per-pixel values.
        mask: ``[B, 1, H, W]`` or ``[B, C, H, W]`` weights in ``[0, 1]``, or ``None`` (plain mean).
        empty_value: the result for samples whose mask sums to zero (``0`` for losses, ``nan``
            for metrics). The gradient there is zero, never NaN.

    Returns:
        ``[B]``: ``sum(w * v) / sum(w)`` where ``w`` is the mask broadcast over channels.
    """
    if mask is None:
        return values.flatten(1).mean(dim=1)
    weights = mask.to(values.dtype).expand_as(values)
    total = weights.flatten(1).sum(dim=1)
    num = (weights * values).flatten(1).sum(dim=1)
    empty = total <= 0
    safe = torch.where(empty, torch.ones_like(total), total)
    return torch.where(empty, torch.full_like(total, empty_value), num / safe)


class ReducingLoss(nn.Module):
    """Base of the loss modules: a default ``reduction``, checked here, overridable per call.

    Args:
        reduction: ``"none"``, ``"mean"`` or ``"sum"``; the default of every call.

    Raises:
        sym3d.errors.ConfigError: for an unknown ``reduction``.
    """

    def __init__(self, reduction: Reduction = "mean") -> None:
        super().__init__()
        check_reduction(reduction)
        self.reduction: Reduction = reduction


class ImageLossModule(ReducingLoss):
    """Module form of an image loss function ``_fn(pred, target, *, mask, reduction, **options)``.

    Satisfies :class:`sym3d.protocols.Loss`. Subclasses set ``_fn`` and, where the module holds
    options of the function, override :meth:`_options`.

    Shape:
        - pred, target: ``(B, C, H, W)`` in ``[0, 1]``; mask: ``(B, 1, H, W)``.
        - output: ``(B,)`` for ``"none"``, else ``()``.
    """

    _fn: Callable[..., torch.Tensor]

    def _options(self) -> dict[str, Any]:
        """Keyword options the module passes to ``_fn`` on every call."""
        return {}

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        reduction: Reduction | None = None,
    ) -> torch.Tensor:
        """The loss of ``pred`` against ``target`` (``reduction`` overrides the module's)."""
        red = reduction or self.reduction
        return type(self)._fn(pred, target, mask=mask, reduction=red, **self._options())
