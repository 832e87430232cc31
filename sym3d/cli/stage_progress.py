"""Progress of long work that is not an optimisation (exports, renders, benchmarks).

``(stage, done, total)`` updates are shown by the engine's renderers of :mod:`sym3d.cli.progress`.

The exporters report ``progress(stage, done, total)``; :class:`StageProgress` turns each new
stage into a ``StageStarted`` event, forwards about ten ``StepFinished`` events per stage (every
update for a stage of ten units or fewer) and ends a stage with ``StageFinished``, so
``--progress rich|plain|json|off`` looks and parses the same as during an inversion. Import-light.
"""

from __future__ import annotations

import time
from typing import Any, TextIO

from sym3d.cli.progress import ProgressKind, make_progress
from sym3d.engine.events import StageFinished, StageStarted, StepFinished

__all__ = ["StageProgress", "make_stage_progress"]


class StageProgress:
    """A ``progress(stage, done, total)`` callable feeding an engine-event renderer.

    Args:
        renderer: a callback from :func:`sym3d.cli.progress.make_progress` (a context manager).
        updates: forwarded step events per stage (at most; the last update is always forwarded).

    Use it as a context manager: entering enters the renderer, leaving finishes the open stage.
    """

    def __init__(self, renderer: Any, updates: int = 10) -> None:
        self.renderer, self.updates = renderer, max(1, int(updates))
        if hasattr(renderer, "every"):
            renderer.every = 1  # the plain renderer prints every forwarded step (already thinned)
        self._stage: str | None = None
        self._total = self._sent = self._done = 0
        self._t0 = self._last = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        """Report ``done`` of ``total`` units of ``stage`` (a new name starts a new stage)."""
        now = time.perf_counter()
        if stage != self._stage:
            self.finish()
            self._stage, self._total, self._sent, self._done = stage, max(int(total), 1), 0, 0
            self._t0 = self._last = now
            self.renderer(StageStarted(stage=stage, num_steps=self._total))
        self._done = done = min(int(done), self._total)
        bucket = done * self.updates // self._total
        if done <= 0 or (bucket <= self._sent and done < self._total):
            return
        self._sent = self.updates if done == self._total else bucket
        step = StepFinished(
            stage=stage,
            step=done - 1,
            num_steps=self._total,
            losses={},
            lr=0.0,
            seconds=now - self._last,
        )
        self.renderer(step)
        self._last = now

    def finish(self) -> None:
        """End the open stage (``StageFinished``), if any."""
        if self._stage is not None:
            seconds = time.perf_counter() - self._t0
            end = StageFinished(
                stage=self._stage, steps_run=self._done, early_stopped=False, seconds=seconds
            )
            self.renderer(end)
            self._stage = None

    def __enter__(self) -> StageProgress:
        self.renderer.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self.finish()
        finally:
            self.renderer.__exit__(*exc)


def make_stage_progress(
    kind: ProgressKind = "rich", *, prefix: str = "", stream: TextIO | None = None
) -> StageProgress:
    """:class:`StageProgress` over ``make_progress(kind, prefix=prefix, stream=stream)``."""
    return StageProgress(make_progress(kind, prefix=prefix, stream=stream))
