"""The fixed SymHeads mapping network ``z -> w`` (a seeded two-layer MLP, never trained).

``w = standardise(A2 @ leaky_relu(A1 @ z))`` with Gaussian ``A1 [64, z_dim]``, ``A2 [w_dim, 64]``
drawn from ``seed``; the standardisation (per-dimension mean and scale over 4096 seeded draws)
makes mapped ``w`` roughly zero-mean with unit variance per dimension, which is what the readout
gain of :class:`~sym3d_extras.synthetic.layout.LatentLayout` assumes. Like EG3D's mapping the
output is one ``w`` broadcast to all ``num_ws`` rows ("W" space). Camera conditioning is
accepted for interface compatibility and **ignored** (SymHeads latents are view-independent).
"""

from __future__ import annotations

import torch
from torch import nn

from sym3d.checks import check_shape

__all__ = ["FixedMapping"]


class FixedMapping(nn.Module):
    """Seeded, frozen ``z [B, z_dim] -> w [B, w_dim]`` map (buffers only, no parameters).

    Args:
        z_dim, w_dim: sizes.
        seed: seed of the weights (part of the world's definition).
        hidden: hidden width.

    """

    def __init__(
        self, z_dim: int = 32, w_dim: int = 32, *, seed: int = 1, hidden: int = 64
    ) -> None:
        super().__init__()
        self.z_dim, self.w_dim = z_dim, w_dim
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("a1", torch.randn(hidden, z_dim, generator=g) / z_dim**0.5)
        self.register_buffer("a2", torch.randn(w_dim, hidden, generator=g) / hidden**0.5)
        self.register_buffer("shift", torch.zeros(w_dim))
        self.register_buffer("scale", torch.ones(w_dim))
        with torch.no_grad():
            raw = self._raw(torch.randn(4096, z_dim, generator=g))
            self.shift.copy_(raw.mean(0))
            self.scale.copy_(raw.std(0))

    def _raw(self, z: torch.Tensor) -> torch.Tensor:
        return nn.functional.leaky_relu(z @ self.a1.T, 0.2) @ self.a2.T

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Map ``z [B, z_dim]`` (standard normal) to ``w [B, w_dim]`` (about unit variance per dim)."""
        check_shape(z, ["B", self.z_dim], "z")
        return (self._raw(z) - self.shift) / self.scale
