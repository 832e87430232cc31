"""Injectable sources for the renderer's uniform random draws.

A forward pass of the EG3D renderer draws uniform numbers exactly twice, in this order:

1. ``"stratified"``: shape ``[N, R, D, 1]`` (rays ``R``, coarse samples ``D``), the jitter of
   each coarse depth inside its bin;
2. ``"importance"``: shape ``[N * R, D_imp]``, the ``u`` of inverse-CDF importance sampling.

Anything accepted as ``random=`` by the renderer and the generator (a :data:`RandomLike`):

* ``None``: the global torch RNG (what the official code does);
* a ``torch.Generator`` on the tensors' device;
* ``"midpoint"``: every draw is 0.5, so coarse depths sit at bin midpoints and all fine
  samples of a ray coincide (the parity fixtures' "0.5 mode");
* a :class:`RandomSource` (anything with a matching ``uniform`` method);
* a callable ``fn(shape, role) -> Tensor``, e.g. one replaying stored draws
  (see :class:`ReplayRandom`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import torch

from sym3d.errors import ConfigError, ShapeError, UserInputError

__all__ = [
    "DrawRole",
    "RandomSource",
    "RandomLike",
    "TorchRandom",
    "MidpointRandom",
    "CallableRandom",
    "ReplayRandom",
    "as_random_source",
    "draw_uniform",
]

DrawRole = Literal["stratified", "importance"]


@runtime_checkable
class RandomSource(Protocol):
    """Produces uniform [0, 1) tensors for the renderer."""

    def uniform(
        self, shape: tuple[int, ...], *, role: DrawRole, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """Return a tensor of ``shape`` (``dtype``/``device`` are what the caller will use)."""
        ...


@dataclass(frozen=True)
class TorchRandom:
    """Draws with ``torch.rand`` from ``generator``, or from the global RNG when it is ``None``."""

    generator: torch.Generator | None = None

    def uniform(
        self, shape: tuple[int, ...], *, role: DrawRole, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """See :class:`RandomSource`."""
        return torch.rand(shape, generator=self.generator, dtype=dtype, device=device)


@dataclass(frozen=True)
class MidpointRandom:
    """Deterministic: every draw is 0.5."""

    def uniform(
        self, shape: tuple[int, ...], *, role: DrawRole, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """See :class:`RandomSource`."""
        return torch.full(shape, 0.5, dtype=dtype, device=device)


@dataclass(frozen=True)
class CallableRandom:
    """Adapts ``fn(shape, role) -> Tensor`` to :class:`RandomSource`."""

    fn: Callable[[tuple[int, ...], str], torch.Tensor]

    def uniform(
        self, shape: tuple[int, ...], *, role: DrawRole, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """See :class:`RandomSource`."""
        return self.fn(shape, role)


class ReplayRandom:
    """Returns prepared tensors in call order (for tests and for replaying a recorded render).

    Args:
        draws: tensors to hand out, one per call; their shapes must match the requests.

    Raises (on use):
        UserInputError: more draws were requested than prepared.

    """

    def __init__(self, draws: Iterable[torch.Tensor]) -> None:
        self._draws = list(draws)
        self._next = 0

    @property
    def remaining(self) -> int:
        """Number of prepared draws not used yet."""
        return len(self._draws) - self._next

    def uniform(
        self, shape: tuple[int, ...], *, role: DrawRole, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """See :class:`RandomSource`."""
        if self._next >= len(self._draws):
            raise UserInputError(
                f"ReplayRandom: draw {self._next + 1} ({role}, shape {list(shape)}) was requested "
                f"but only {len(self._draws)} were prepared."
            )
        out = self._draws[self._next]
        self._next += 1
        return out


RandomLike = (
    RandomSource
    | torch.Generator
    | Literal["midpoint"]
    | Callable[[tuple[int, ...], str], torch.Tensor]
    | None
)
"""Anything accepted as ``random=`` (see the module docstring)."""


def as_random_source(random: RandomLike) -> RandomSource:
    """Turn any :data:`RandomLike` into a :class:`RandomSource`.

    Raises:
        ConfigError: ``random`` is none of the accepted kinds.

    """
    if random is None:
        return TorchRandom()
    if isinstance(random, torch.Generator):
        return TorchRandom(random)
    if isinstance(random, str):
        if random == "midpoint":
            return MidpointRandom()
        raise ConfigError(f"random: the only named mode is 'midpoint'; got {random!r}.")
    if isinstance(random, RandomSource):
        return random
    if callable(random):
        return CallableRandom(random)
    raise ConfigError(
        "random: expected None, a torch.Generator, 'midpoint', a RandomSource or a callable "
        f"fn(shape, role); got {type(random).__name__}."
    )


def draw_uniform(
    source: RandomSource, shape: tuple[int, ...], role: DrawRole, *, like: torch.Tensor
) -> torch.Tensor:
    """Draw from ``source`` and check the result: right shape, moved to ``like``'s dtype/device.

    Raises:
        ShapeError: the source returned a tensor of another shape.
        UserInputError: the source returned something that is not a tensor.

    """
    shape = tuple(int(s) for s in shape)
    out = source.uniform(shape, role=role, dtype=like.dtype, device=like.device)
    if not isinstance(out, torch.Tensor):
        raise UserInputError(
            f"random source returned {type(out).__name__} for the {role} draw; expected a tensor."
        )
    if tuple(out.shape) != shape:
        raise ShapeError(f"{role} random draw", str(list(shape)), out.shape)
    return out.to(dtype=like.dtype, device=like.device)
