"""StyleGAN2 mapping network: ``(z, c) -> ws`` with label embedding and truncation."""

from __future__ import annotations

import torch
from torch import nn

from sym3d.checks import check_shape
from sym3d.errors import ConfigError
from sym3d_eg3d.networks.layers import FullyConnectedLayer, normalize_2nd_moment

__all__ = ["MappingNetwork", "truncate"]


def truncate(
    ws: torch.Tensor, w_avg: torch.Tensor, psi: float, cutoff: int | None = None
) -> torch.Tensor:
    """Pull ``ws`` toward ``w_avg``: ``w_avg + psi * (w - w_avg)`` on rows ``[:cutoff]``.

    Args:
        ws: ``[N, num_ws, w_dim]`` or ``[N, w_dim]`` (then ``cutoff`` is ignored).
        w_avg: ``[w_dim]``.
        psi: 1 keeps ``ws``; 0 gives ``w_avg``.
        cutoff: truncate only the first ``cutoff`` rows; ``None`` truncates all.

    Returns:
        A new tensor shaped like ``ws``; the input is not modified.

    """
    if ws.ndim == 2 or cutoff is None:
        return w_avg.lerp(ws, psi)
    head = w_avg.lerp(ws[:, :cutoff], psi)
    return torch.cat([head, ws[:, cutoff:]], dim=1)


class MappingNetwork(nn.Module):
    """Maps a latent ``z`` and a conditioning label ``c`` to intermediate latents ``ws``.

    The input is ``cat(normalize(z), normalize(embed(c)))``, then ``num_layers`` lrelu FC
    layers with learning-rate multiplier ``lr_multiplier``; the result is broadcast to
    ``num_ws`` rows.

    Args:
        z_dim: latent width, 0 for none.
        c_dim: label width, 0 for none.
        w_dim: output width.
        num_ws: rows to broadcast to; ``None`` returns ``[N, w_dim]``.
        num_layers: number of FC layers.
        embed_features: label embedding width (default ``w_dim``).
        layer_features: hidden width (default ``w_dim``).
        activation: hidden activation.
        lr_multiplier: learning-rate multiplier of the FC layers (not of the embedding).
        w_avg_beta: decay of the tracked mean ``w_avg``; ``None`` disables tracking (and
            truncation).

    Shape:
        ``z [N, z_dim], c [N, c_dim] -> ws [N, num_ws, w_dim]``.

    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        embed_features: int | None = None,
        layer_features: int | None = None,
        activation: str = "lrelu",
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.998,
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta

        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        widths = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]

        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                widths[idx], widths[idx + 1], activation=activation, lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{idx}", layer)

        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: torch.Tensor | None,
        c: torch.Tensor | None,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> torch.Tensor:
        """Map ``z [N, z_dim]`` and ``c [N, c_dim]`` to ``ws [N, num_ws, w_dim]``.

        Args:
            z: latents (ignored when ``z_dim == 0``).
            c: labels (ignored when ``c_dim == 0``).
            truncation_psi: truncation strength; 1 disables truncation.
            truncation_cutoff: truncate only ``ws[:, :cutoff]``; ``None`` truncates all rows.
            update_emas: update ``w_avg`` with this batch's mean (training only; this is the
                only way the forward pass changes module state).

        Raises:
            ShapeError: ``z`` or ``c`` has the wrong shape.
            ConfigError: truncation requested but ``w_avg`` is not tracked.

        """
        x = None
        dims: dict[str, int] = {}
        if self.z_dim > 0:
            check_shape(z, ["N", self.z_dim], "z", dims=dims)
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            check_shape(c, ["N", self.c_dim], "c", dims=dims)
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y

        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)

        if update_emas and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])

        if truncation_psi != 1:
            if "w_avg" not in self._buffers:
                raise ConfigError(
                    "truncation needs the tracked mean w_avg, which this mapping network does not "
                    "have (num_ws or w_avg_beta is None)."
                )
            x = truncate(x, self.w_avg, truncation_psi, truncation_cutoff)
        return x

    def extra_repr(self) -> str:
        """One-line summary shown by ``repr``."""
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"
