"""Events the engine emits (it never prints). Callbacks are plain callables ``cb(event)``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import attrs

__all__ = [
    "Event",
    "StageStarted",
    "StepFinished",
    "StageFinished",
    "CheckpointSaved",
    "Resumed",
    "Callback",
    "emit",
]


@attrs.frozen(kw_only=True)
class StageStarted:
    """A stage begins. ``stage`` is ``"latent"`` or ``"generator"``; ``start_step`` > 0 when resuming."""

    stage: str
    num_steps: int
    start_step: int = 0


@attrs.frozen(kw_only=True)
class StepFinished:
    """One optimisation step is done; ``losses`` holds every logged term as floats."""

    stage: str
    step: int
    num_steps: int
    losses: Mapping[str, float]
    lr: float
    seconds: float
    """Wall time of this step."""


@attrs.frozen(kw_only=True)
class StageFinished:
    """A stage ended after ``steps_run`` steps (fewer than planned when ``early_stopped``)."""

    stage: str
    steps_run: int
    early_stopped: bool
    seconds: float


@attrs.frozen(kw_only=True)
class CheckpointSaved:
    """A resumable checkpoint was written."""

    path: str
    stage: str
    step: int


@attrs.frozen(kw_only=True)
class Resumed:
    """The run continues from a checkpoint."""

    path: str
    stage: str
    step: int


Event = StageStarted | StepFinished | StageFinished | CheckpointSaved | Resumed
Callback = Callable[[Event], None]


def emit(callbacks: Iterable[Callback], event: Event) -> None:
    """Send ``event`` to every callback in order."""
    for cb in callbacks:
        cb(event)
