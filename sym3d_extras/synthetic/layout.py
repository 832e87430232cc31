"""The SymHeads latent layout: which ``ws`` row controls which attributes, and the readout.

``ws`` is ``[B, num_ws, w_dim]`` with ``num_ws = 14``. Row ``r`` controls only the attributes of
group ``ROWS[r]``. Each attribute is read out from its row by a fixed, seeded projection:
``u = P_r @ ws[:, r]`` with ``P_r [n_r, w_dim]`` orthonormal rows, then ``t = tanh(gain * u)``
in ``(-1, 1)``. :mod:`sym3d_extras.synthetic.head` turns ``t`` into physical values
(``base + span * t``). In "W" mode (one vector broadcast to every row, as the mapping produces)
all attributes are correlated through the shared vector; in "W+" mode every row is free.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from sym3d.checks import check_shape
from sym3d.errors import ConfigError

__all__ = ["ROWS", "ASYMMETRIC", "NUM_WS", "LatentLayout", "attribute_names"]

ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("skull", ("width", "height", "depth", "crown_y", "back_z")),
    ("jaw", ("width", "height", "depth", "chin", "cheek_size", "cheek_height", "cheek_asym")),
    ("nose", ("length", "projection", "width", "bridge", "shift")),
    ("eyes", ("spacing", "height", "size", "depth")),
    ("brows", ("height", "ridge", "thickness", "tilt", "darkness", "height_asym")),
    ("mouth", ("height", "width", "upper_lip", "lower_lip", "protrusion", "shift")),
    ("ears", ("size", "protrusion", "height", "thickness")),
    ("hair", ("thickness", "hairline", "back_volume", "temple", "curve")),
    ("skin_colour", ("tone", "warmth", "blush", "side_tint")),
    ("hair_colour", ("darkness", "warmth", "grey")),
    ("eye_colour", ("darkness", "hue", "saturation")),
    ("lip_colour", ("redness", "darkness", "saturation")),
    ("texture", ("c0", "c1", "c2", "c3", "c4", "c5", "a0", "a1")),
    ("light", ("elevation", "ambient", "strength", "azimuth")),
)
"""``(group, attribute names)`` per ``ws`` row, in row order."""

ASYMMETRIC: frozenset[str] = frozenset(
    {
        "jaw.cheek_asym",
        "nose.shift",
        "brows.height_asym",
        "mouth.shift",
        "skin_colour.side_tint",
        "texture.a0",
        "texture.a1",
        "light.azimuth",
    }
)
"""Attributes that break the left/right symmetry (0 for a symmetric head). A real GAN's latent
space holds such directions too; from a side view they are weakly constrained, which is the
ambiguity the mirrored view removes."""

NUM_WS: int = len(ROWS)


def attribute_names() -> list[str]:
    """All attribute names ``"group.attribute"`` in row order."""
    return [f"{g}.{a}" for g, attrs_ in ROWS for a in attrs_]


class LatentLayout:
    """Fixed seeded readout from ``ws`` rows to normalised attributes ``t`` in ``(-1, 1)``.

    Args:
        w_dim: width of each ``ws`` row; must be at least the largest group (6).
        seed: seed of the projection matrices (part of the world's definition).
        gain: slope of ``tanh`` (``t = tanh(gain * u)``); ``u`` has unit scale for mapped latents.

    """

    def __init__(self, w_dim: int = 32, *, seed: int = 0, gain: float = 0.7) -> None:
        widest = max(len(a) for _, a in ROWS)
        if w_dim < widest:
            raise ConfigError(f"w_dim: expected at least {widest}, got {w_dim}.")
        self.w_dim, self.seed, self.gain = w_dim, seed, gain
        g = torch.Generator().manual_seed(seed)
        mats = []
        for _, names in ROWS:
            q, _ = torch.linalg.qr(torch.randn(w_dim, len(names), generator=g, dtype=torch.float64))
            mats.append(q.T.to(torch.float32))  # [n_r, w_dim], orthonormal rows
        self._proj = mats

    @property
    def num_ws(self) -> int:
        """Number of rows (14)."""
        return NUM_WS

    def projection(self, row: int) -> torch.Tensor:
        """``[n_r, w_dim]`` readout matrix of ``row`` (orthonormal rows)."""
        return self._proj[row]

    def decode(self, ws: torch.Tensor) -> dict[str, torch.Tensor]:
        """Read the normalised attributes of a batch of latents.

        Args:
            ws: ``[B, num_ws, w_dim]`` latents.

        Returns:
            ``"group.attribute" -> [B]`` values ``t`` in ``(-1, 1)`` (differentiable in ``ws``).

        """
        check_shape(ws, ["B", NUM_WS, self.w_dim], "ws")
        out: dict[str, torch.Tensor] = {}
        for r, (group, names) in enumerate(ROWS):
            u = ws[:, r] @ self._proj[r].to(ws).T  # [B, n_r]
            t = torch.tanh(self.gain * u)
            for i, name in enumerate(names):
                out[f"{group}.{name}"] = t[:, i]
        return out

    def symmetrize(self, ws: torch.Tensor) -> torch.Tensor:
        """``ws`` with every :data:`ASYMMETRIC` readout set to zero (the head becomes mirror-symmetric).

        Removes the components of each row along its asymmetric readout directions; everything
        else (the symmetric attributes and the unread part of the row) is unchanged.
        """
        check_shape(ws, ["B", NUM_WS, self.w_dim], "ws")
        rows = []
        for r, (group, names) in enumerate(ROWS):
            idx = [i for i, n in enumerate(names) if f"{group}.{n}" in ASYMMETRIC]
            row = ws[:, r]
            if idx:
                p = self._proj[r][idx].to(ws)  # [k, w_dim], orthonormal rows
                row = row - (row @ p.T) @ p
            rows.append(row)
        return torch.stack(rows, dim=1)

    def encode_row(
        self, row: int, t: Mapping[str, float] | torch.Tensor, base: torch.Tensor | None = None
    ) -> torch.Tensor:
        """A ``[w_dim]`` row vector whose readout is ``t`` (inverse of :meth:`decode` for one row).

        Args:
            row: row index.
            t: target normalised values ``[n_r]`` in ``(-1, 1)`` (or ``name -> value``).
            base: optional ``[w_dim]`` vector whose component outside the readout span is kept.

        """
        names = ROWS[row][1]
        if isinstance(t, Mapping):
            t = torch.tensor([float(t[n]) for n in names])
        t = torch.as_tensor(t, dtype=torch.float32).clamp(-0.999, 0.999)
        p = self._proj[row]
        u = torch.atanh(t) / self.gain
        out = p.T @ u
        if base is not None:
            out = out + base - p.T @ (p @ base)
        return out
