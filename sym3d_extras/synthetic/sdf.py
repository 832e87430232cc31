"""Signed-distance primitives and smooth boolean operators (vectorised torch).

All functions take points ``p [..., N, 3]`` and primitive parameters whose leading dims
broadcast against ``p``'s leading dims (a batch of heads ``B`` evaluated at ``N`` points each).
Distances are in world units; negative inside. The ellipsoid distance is Quilez's bound
``k0 (k0 - 1) / k1``, exact on the surface and smooth everywhere except the centre (guarded).
"""

from __future__ import annotations

import torch

__all__ = [
    "ellipsoids",
    "smooth_min",
    "smooth_union",
    "smooth_max",
    "soft_step",
]


def ellipsoids(p: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Approximate signed distances to ``P`` axis-aligned ellipsoids.

    Args:
        p: ``[B, N, 3]`` points (world units).
        centres: ``[B, P, 3]`` ellipsoid centres.
        radii: ``[B, P, 3]`` positive semi-axes.

    Returns:
        ``[B, N, P]`` signed distances (world units; exact at the surface, a bound elsewhere).

    """
    q = (p[:, :, None, :] - centres[:, None, :, :]) / radii[:, None, :, :]
    k0 = q.norm(dim=-1)
    k1 = (q / radii[:, None, :, :]).norm(dim=-1).clamp_min(1e-6)
    return k0 * (k0 - 1.0) / k1


def smooth_union(d: torch.Tensor, k: float) -> torch.Tensor:
    """Smooth minimum over the last dim (``-k logsumexp(-d / k)``): a C-infinity union.

    Args:
        d: ``[..., P]`` signed distances.
        k: blend radius (world units); the union bulges by at most ``k log P``.

    Returns:
        ``[...]`` blended distance.

    """
    return -k * torch.logsumexp(-d / k, dim=-1)


def smooth_min(a: torch.Tensor, b: torch.Tensor, k: float) -> torch.Tensor:
    """Smooth minimum of two distance tensors of the same shape (union of two shapes)."""
    return smooth_union(torch.stack([a, b], dim=-1), k)


def smooth_max(a: torch.Tensor, b: torch.Tensor, k: float) -> torch.Tensor:
    """Smooth maximum (intersection; ``smooth_max(a, -b)`` subtracts ``b`` from ``a``)."""
    return k * torch.logaddexp(a / k, b / k)


def soft_step(x: torch.Tensor, width: float) -> torch.Tensor:
    """``sigmoid(x / width)``: a smooth indicator of ``x > 0`` with transition ``width``."""
    return torch.sigmoid(x / width)
