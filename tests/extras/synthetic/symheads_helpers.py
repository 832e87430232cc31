"""Helpers shared by the SymHeads tests (imported by name: tests are not a package)."""

from __future__ import annotations

import torch


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """PSNR in dB of images in [0, 1] (optionally over mask > 0.5 pixels only)."""
    d = (a - b).square()
    if mask is not None:
        m = (mask > 0.5).expand_as(d)
        mse = d[m].mean()
    else:
        mse = d.mean()
    return float(10 * torch.log10(1.0 / mse.clamp_min(1e-12)))
