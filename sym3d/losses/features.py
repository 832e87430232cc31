"""Feature extractors for the contextual loss: the protocol and a fixed, non-learned filter bank.

The contextual loss compares sets of feature vectors, so it works with any extractor that maps
images to a ``[B, C, h, w]`` feature map. SPI uses the first layers of an ImageNet VGG
(``sym3d_extras.perceptual.VGGContextualFeatures``); :class:`GaussianDerivativeFeatures` is a
deterministic stand-in with no weights at all, for tests and for installs without the ``lpips``
extra. It is never substituted silently: callers must pass the extractor they want.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from sym3d.checks import check_shape
from sym3d.errors import ConfigError

__all__ = ["FeatureExtractor", "GaussianDerivativeFeatures"]


@runtime_checkable
class FeatureExtractor(Protocol):
    """Maps images to a dense feature map.

    Attributes:
        name: a short identifier recorded in logs and configs (e.g. ``"vgg16-conv2_1"``).
    """

    name: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Extract features.

        Args:
            images: ``[B, 3, H, W]`` in ``[0, 1]``. The extractor does any network-specific
                normalisation itself.

        Returns:
            ``[B, C, h, w]`` features; ``h, w`` depend on ``H, W`` (typically a fixed stride).
        """
        ...


def _gaussian_kernels(sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """1D Gaussian ``g`` and its derivative ``dg`` (float64, odd length ``2 ceil(3 sigma) + 1``)."""
    radius = max(1, math.ceil(3.0 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    g = g / g.sum()
    dg = -x / sigma**2 * g  # derivative of the normalised Gaussian, times sigma below
    return g, dg * sigma  # scale-normalised derivative (comparable magnitude across sigmas)


class GaussianDerivativeFeatures(nn.Module):
    """A fixed bank of Gaussian and Gaussian-derivative filters on each colour channel.

    For every colour channel and every ``sigma``, three responses: the smoothed value and the
    scale-normalised derivatives along x and y. This captures local colour and edge orientation
    (a crude texture descriptor) with no learned weights. It is a documented fallback for tests
    and for installs without VGG weights; it is *not* a perceptual feature space, so contextual
    losses computed with it are not comparable to SPI's VGG-based values.

    Args:
        sigmas: Gaussian scales in pixels.
        stride: output stride (average pooling); 2 mimics VGG ``conv2_1`` (an 80x80 crop gives 40x40).

    Shape:
        - images: ``(B, 3, H, W)`` in ``[0, 1]``.
        - output: ``(B, 9 * len(sigmas), H // stride, W // stride)``.

    Example:
        >>> ext = GaussianDerivativeFeatures()
        >>> ext(torch.rand(2, 3, 80, 80)).shape
        torch.Size([2, 18, 40, 40])
    """

    name: str

    def __init__(self, sigmas: Sequence[float] = (1.0, 2.0), stride: int = 2) -> None:
        super().__init__()
        sigmas = tuple(float(s) for s in sigmas)
        if not sigmas or any(s <= 0 for s in sigmas):
            raise ConfigError(f"sigmas: expected positive values, got {sigmas!r}.")
        if stride < 1:
            raise ConfigError(f"stride: expected an int >= 1, got {stride!r}.")
        self.sigmas = sigmas
        self.stride = int(stride)
        self.name = f"gaussian-derivatives-s{'-'.join(f'{s:g}' for s in sigmas)}"
        self._radius = max(max(1, math.ceil(3.0 * s)) for s in sigmas)
        size = 2 * self._radius + 1
        g_list, dg_list = [], []
        for s in sigmas:
            g, dg = _gaussian_kernels(s)
            pad = self._radius - (g.numel() // 2)
            g_list.append(F.pad(g, (pad, pad)))
            dg_list.append(F.pad(dg, (pad, pad)))
        # separable filtering: rows with (g, dg) per sigma, then columns with (g, g, dg), giving
        # (smooth, d/dx, d/dy) per sigma
        rows = torch.stack(
            [k for pair in zip(g_list, dg_list, strict=True) for k in pair]
        )  # [2S, k]
        cols = torch.stack(
            [k for g, dg in zip(g_list, dg_list, strict=True) for k in (g, g, dg)]
        )  # [3S, k]
        self.register_buffer("row_kernels", rows.reshape(-1, 1, 1, size).float(), persistent=False)
        self.register_buffer("col_kernels", cols.reshape(-1, 1, size, 1).float(), persistent=False)
        # which row response feeds each column filter: (g, dg, g) for every sigma
        self._col_source = [2 * i + j for i in range(len(sigmas)) for j in (0, 1, 0)]

    @property
    def out_channels(self) -> int:
        """Number of output channels, ``9 * len(sigmas)``."""
        return 9 * len(self.sigmas)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Filter ``images [B, 3, H, W]`` in ``[0, 1]``; see the class docstring for the output."""
        check_shape(images, ["B", 3, "H", "W"], "images")
        b, c, h, w = images.shape
        x = images.reshape(b * c, 1, h, w)
        mode = "reflect" if min(h, w) > self._radius else "replicate"
        x = F.pad(x, (self._radius,) * 4, mode=mode)
        kw = {"device": images.device, "dtype": images.dtype}
        rows = F.conv2d(x, self.row_kernels.to(**kw))  # [B*3, 2S, H + 2r, W]
        out = F.conv2d(
            rows[:, self._col_source], self.col_kernels.to(**kw), groups=len(self._col_source)
        )
        out = out.reshape(b, c * out.shape[1], h, w)  # [B, 3 * 3S, H, W]
        if self.stride > 1:
            out = F.avg_pool2d(out, self.stride)
        return out
