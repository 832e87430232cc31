"""Structural similarity (SSIM) as a metric and as a loss, with an optional pixel mask.

The SSIM map comes from :func:`kornia.metrics.ssim` (Gaussian window, sigma 1.5, reflect
padding, ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2`` with ``L = max_val``). A mask weights the
per-pixel SSIM map before averaging; windows straddling the mask edge still see unmasked
neighbours (mask the images first if those must not contribute either).
"""

from __future__ import annotations

from typing import Any

import torch

from sym3d.errors import ConfigError, ShapeError
from sym3d.losses._reduce import (
    ImageLossModule,
    check_image_pair,
    check_mask,
    check_reduction,
    masked_mean,
    reduce,
)
from sym3d.protocols import Reduction

__all__ = ["ssim", "ssim_loss", "SSIMLoss"]


def _check_window(window_size: int) -> None:
    if not isinstance(window_size, int) or window_size < 1 or window_size % 2 == 0:
        raise ConfigError(f"window_size: expected an odd positive int, got {window_size!r}.")


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    window_size: int = 11,
    max_val: float = 1.0,
    empty_value: float = float("nan"),
    reduction: Reduction = "none",
) -> torch.Tensor:
    """Mean SSIM of each sample, optionally weighted by a pixel mask.

    Args:
        pred: ``[B, C, H, W]`` image, values in ``[0, max_val]`` (``[0, 1]`` by default).
        target: ``[B, C, H, W]`` image, same range.
        mask: optional ``[B, 1, H, W]`` (or ``[B, C, H, W]``) weights in ``[0, 1]`` applied to
            the SSIM map.
        window_size: odd side of the Gaussian window (11 as in Wang et al.).
        max_val: dynamic range ``L`` of the images.
        empty_value: the value for samples with an all-zero mask (NaN: SSIM is undefined there).
        reduction: ``"none"`` (default, metric style) returns ``[B]``; ``"mean"`` / ``"sum"`` a scalar.

    Returns:
        ``[B]`` or a scalar; 1 for identical images, lower is worse (can be negative).

    Raises:
        sym3d.errors.ShapeError: if shapes differ or are not ``[B, C, H, W]``.
        sym3d.errors.ConfigError: for a bad ``window_size`` or ``reduction``.

    Example:
        >>> x = torch.rand(2, 3, 16, 16)
        >>> torch.allclose(ssim(x, x), torch.ones(2))
        True
    """
    check_reduction(reduction)
    _check_window(window_size)
    dims = check_image_pair(pred, target, channels=None)
    if mask is not None:
        check_mask(mask, dims)
    if min(dims["H"], dims["W"]) <= window_size // 2:
        raise ShapeError(
            "pred",
            f"[B,C,H,W] with H, W > {window_size // 2} (window_size={window_size})",
            pred.shape,
            hint="use a smaller window_size for tiny images.",
        )
    import kornia.metrics  # deferred: importing kornia costs ~0.4 s

    ssim_map = kornia.metrics.ssim(pred, target, window_size, max_val=max_val)  # [B, C, H, W]
    return reduce(masked_mean(ssim_map, mask, empty_value=empty_value), reduction)


def ssim_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    window_size: int = 11,
    max_val: float = 1.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Structural dissimilarity ``(1 - SSIM) / 2`` of each sample (kornia's ``ssim_loss`` convention).

    The SSIM map is averaged (mask-weighted when ``mask`` is given) first, so
    ``ssim_loss == (1 - ssim) / 2`` exactly. A sample with an all-zero mask gives ``0``.

    Args:
        pred: ``[B, C, H, W]`` image in ``[0, max_val]``.
        target: ``[B, C, H, W]`` image in ``[0, max_val]``.
        mask: optional ``[B, 1, H, W]`` (or ``[B, C, H, W]``) weights in ``[0, 1]``.
        window_size: odd side of the Gaussian window.
        max_val: dynamic range of the images.
        reduction: ``"none"`` returns ``[B]``; ``"mean"`` / ``"sum"`` a scalar.

    Returns:
        ``[B]`` or a scalar in ``[0, 1]`` (0 for identical images).

    Raises:
        sym3d.errors.ShapeError: if shapes differ or are not ``[B, C, H, W]``.
        sym3d.errors.ConfigError: for a bad ``window_size`` or ``reduction``.

    Example:
        >>> x = torch.rand(1, 3, 16, 16)
        >>> ssim_loss(x, x)
        tensor(0.)
    """
    check_reduction(reduction)
    # empty_value=1 maps an all-zero mask to a loss of exactly 0 with zero gradient
    value = ssim(pred, target, mask=mask, window_size=window_size, max_val=max_val, empty_value=1.0)
    return reduce((1.0 - value) * 0.5, reduction)


class SSIMLoss(ImageLossModule):
    """Module form of :func:`ssim_loss`; satisfies :class:`sym3d.protocols.Loss`.

    Args:
        window_size: odd side of the Gaussian window.
        max_val: dynamic range of the images.
        reduction: default reduction, overridable per call.

    Shape:
        - pred, target: ``(B, C, H, W)`` in ``[0, 1]``; mask: ``(B, 1, H, W)``.
        - output: ``(B,)`` for ``"none"``, else ``()``.
    """

    _fn = staticmethod(ssim_loss)

    def __init__(
        self, window_size: int = 11, max_val: float = 1.0, reduction: Reduction = "mean"
    ) -> None:
        _check_window(window_size)
        super().__init__(reduction)
        self.window_size = window_size
        self.max_val = max_val

    def _options(self) -> dict[str, Any]:
        return {"window_size": self.window_size, "max_val": self.max_val}
