"""The one image/mask/depth resize of sym3d: box average where it shrinks, bilinear where it grows.

Shrinking averages every input pixel that falls into an output pixel (``area``), so there is no
aliasing and a mask keeps its exact mean; at a factor of 2 this equals plain bilinear sampling,
and it is the reference pre-processing for LPIPS at 256 px. Enlarging interpolates bilinearly
(``align_corners=False``). Each axis is treated on its own, so ``[h, w] -> [2h, w/2]`` averages
along ``w`` and interpolates along ``h``. Differentiable; the same size returns the input itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["resize"]


def resize(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize ``x [N, C, H, W]`` (float) to ``size`` (a side, or ``(height, width)``).

    Returns ``[N, C, h, w]``; ``x`` itself when it already has that size.
    """
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    in_h, in_w = x.shape[-2], x.shape[-1]
    if (in_h, in_w) == (h, w):
        return x
    shrunk = (min(h, in_h), min(w, in_w))
    if shrunk != (in_h, in_w):
        x = F.interpolate(x, size=shrunk, mode="area")
    if shrunk != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return x
