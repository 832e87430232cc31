"""What every built-in generator shares: mean latent, latent spread, render checks, frozen copy.

:class:`GeneratorMixin` implements three :class:`~sym3d.protocols.Generator3D` members from one
generator-specific method, ``_latent_samples``. :func:`latent_stats` gives the engine the mean
latent and the spread from **one** draw of samples for any generator (with the mixin or not).
"""

from __future__ import annotations

import copy
from typing import Any, Self

import torch

from sym3d.checks import check_shape
from sym3d.errors import ShapeError

__all__ = ["GeneratorMixin", "latent_stats"]


class GeneratorMixin:
    """Mix into an ``nn.Module`` generator (before ``nn.Module`` in the bases).

    The class provides ``num_ws``, ``w_dim`` and ``_latent_samples``; the mixin derives
    ``mean_latent``, ``latent_std`` and ``latent_stats`` from it, and ``frozen_copy``.
    """

    num_ws: int
    w_dim: int

    def _latent_samples(self, c: torch.Tensor, num_samples: int, seed: int) -> torch.Tensor:
        """Mapped samples of ``num_samples`` seeded ``z`` draws, conditioned on ``c [B, 25]``.

        Returns ``[B, S, w_dim]`` (one ``w`` per sample, broadcast to every row) or
        ``[B, S, num_ws, w_dim]`` (a ``ws`` per sample). A generator that ignores the camera
        may return batch size 1; it is broadcast to ``B``.
        """
        raise NotImplementedError(
            f"{type(self).__name__} uses GeneratorMixin and must define _latent_samples"
        )

    def latent_stats(
        self, c: torch.Tensor, *, num_samples: int = 600, seed: int = 123
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean latent ``[B, num_ws, w_dim]`` and spread ``[B]`` from one draw of samples.

        The spread is the RMS distance of the samples' first ``w`` row to its mean (SPI's
        ``w_std``). ``mean_latent``/``latent_std`` with the same arguments return these values.
        """
        check_shape(c, ["B", 25], "c")
        samples = self._latent_samples(c, num_samples, seed)
        b = c.shape[0]
        if samples.dim() == 3:  # [b, S, w_dim]: one w per sample
            first = samples
            mean = samples.mean(1)[:, None, :].expand(-1, self.num_ws, -1)
        else:  # [b, S, num_ws, w_dim]
            first = samples[:, :, 0]
            mean = samples.mean(1)
        std = (first - first.mean(1, keepdim=True)).square().sum(-1).mean(1).sqrt()
        return mean.expand(b, -1, -1).clone(), std.expand(b).clone()

    def mean_latent(
        self, c: torch.Tensor, *, num_samples: int = 600, seed: int = 123
    ) -> torch.Tensor:
        """``[B, num_ws, w_dim]`` mean of ``num_samples`` mapped draws conditioned on ``c``."""
        return self.latent_stats(c, num_samples=num_samples, seed=seed)[0]

    def latent_std(
        self, c: torch.Tensor, *, num_samples: int = 600, seed: int = 123
    ) -> torch.Tensor:
        """``[B]`` RMS distance of the sampled first ``w`` rows to their mean."""
        return self.latent_stats(c, num_samples=num_samples, seed=seed)[1]

    def _check_render_inputs(self, ws: torch.Tensor, cameras: torch.Tensor) -> tuple[int, int]:
        """Check ``ws [B, num_ws, w_dim]`` and ``cameras [B, V, 25]``; return ``(B, V)``.

        Raises:
            sym3d.errors.ShapeError: on any other shape (with a hint for ``[B, 25]`` cameras).
        """
        dims = check_shape(ws, ["B", self.num_ws, self.w_dim], "ws")
        if cameras.dim() != 3:
            raise ShapeError(
                "cameras", "[B,V,25]", cameras.shape, hint="add a view dimension: cameras[:, None]."
            )
        check_shape(cameras, ["B", "V", 25], "cameras", dims=dims)
        return int(cameras.shape[0]), int(cameras.shape[1])

    def frozen_copy(self) -> Self:
        """A deep copy in eval mode with every parameter frozen."""
        clone: Any = copy.deepcopy(self)
        clone.eval()
        clone.requires_grad_(False)
        return clone


def latent_stats(
    generator: Any, c: torch.Tensor, *, num_samples: int = 600, seed: int = 123
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean_latent, latent_std)`` of any :class:`~sym3d.protocols.Generator3D`.

    Uses the generator's ``latent_stats`` (one draw) when it has one; otherwise calls the two
    protocol methods.
    """
    both = getattr(generator, "latent_stats", None)
    if callable(both):
        return both(c, num_samples=num_samples, seed=seed)
    mean = generator.mean_latent(c, num_samples=num_samples, seed=seed)
    return mean, generator.latent_std(c, num_samples=num_samples, seed=seed)
