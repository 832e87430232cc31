"""Progress renderers for engine events.

``rich`` (bars with ETA and losses), ``plain`` (a line every few steps), ``json`` (one JSON object
per event) and ``off``. The engine never prints; the CLI picks one of these and passes it as a
callback.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from typing import Any, Literal, TextIO

import attrs

from sym3d.cli.renderer_base import NoOpContext, Off, rich_bar
from sym3d.engine.events import CheckpointSaved, Resumed, StageFinished, StageStarted, StepFinished

__all__ = ["ProgressKind", "make_progress", "format_losses"]

ProgressKind = Literal["rich", "plain", "json", "off"]
_STAGE_LABEL = {"latent": "stage 1 latent", "generator": "stage 2 tune"}


def format_losses(losses: Mapping[str, float], limit: int = 4) -> str:
    """``"total 0.123 reconstruction/perceptual 0.101 ..."`` with the total first and diagnostics omitted."""
    items = [(k, v) for k, v in losses.items() if not k.rsplit("/", 1)[-1].startswith("_")]
    items.sort(key=lambda kv: (kv[0] != "total", kv[0]))
    return " ".join(f"{k} {v:.4g}" for k, v in items[:limit])


def describe_resumed(event: Resumed) -> str:
    """One line saying where an interrupted run continues."""
    if event.stage == "done":
        return f"resumed: the run had finished; its state is reused from {event.path}"
    label = _STAGE_LABEL.get(event.stage, event.stage)
    return f"resumed {label} at step {event.step} (from {event.path})"


@attrs.define
class _Plain(NoOpContext):
    stream: TextIO
    every: int = 25
    prefix: str = ""

    def __call__(self, event: Any) -> None:
        p = f"{self.prefix}: " if self.prefix else ""
        if isinstance(event, StageStarted):
            print(
                f"{p}{_STAGE_LABEL.get(event.stage, event.stage)}: {event.num_steps} steps",
                file=self.stream,
                flush=True,
            )
        elif isinstance(event, StepFinished):
            done = event.step + 1
            if done % self.every == 0 or done == event.num_steps:
                print(
                    f"{p}  {event.stage} {done}/{event.num_steps} {format_losses(event.losses)}",
                    file=self.stream,
                    flush=True,
                )
        elif isinstance(event, StageFinished):
            stop = " (early stop)" if event.early_stopped else ""
            print(
                f"{p}{_STAGE_LABEL.get(event.stage, event.stage)} done: {event.steps_run} steps in {event.seconds:.1f}s{stop}",
                file=self.stream,
                flush=True,
            )
        elif isinstance(event, Resumed):
            print(f"{p}{describe_resumed(event)}", file=self.stream, flush=True)


@attrs.define
class _Json(NoOpContext):
    stream: TextIO
    prefix: str = ""

    def __call__(self, event: Any) -> None:
        data = {"event": type(event).__name__, **attrs.asdict(event)}
        if self.prefix:
            data["item"] = self.prefix
        print(json.dumps(data), file=self.stream, flush=True)


class _Rich:
    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.progress = rich_bar("[bold]{task.description}", tail=["{task.fields[losses]}"])
        self.tasks: dict[str, Any] = {}
        self._last = 0.0

    def __call__(self, event: Any) -> None:
        stage = getattr(event, "stage", "")
        label = f"{self.prefix} {_STAGE_LABEL.get(stage, stage)}".strip()
        if isinstance(event, StageStarted):
            self.tasks[event.stage] = self.progress.add_task(
                label, total=max(event.num_steps, 1), completed=event.start_step, losses=""
            )
        elif isinstance(event, StepFinished) and event.stage in self.tasks:
            now = time.perf_counter()
            update: dict[str, Any] = {"completed": event.step + 1}
            if now - self._last > 0.2 or event.step + 1 == event.num_steps:
                update["losses"] = format_losses(event.losses, limit=3)
                self._last = now
            self.progress.update(self.tasks[event.stage], **update)
        elif isinstance(event, StageFinished) and event.stage in self.tasks:
            self.progress.update(
                self.tasks[event.stage],
                completed=self.progress.tasks[self.tasks[event.stage]].total,
            )
        elif isinstance(event, Resumed):
            self.progress.console.print(
                f"{self.prefix} {describe_resumed(event)}".strip(), markup=False
            )
        elif isinstance(event, CheckpointSaved):
            pass

    def __enter__(self) -> _Rich:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


def make_progress(
    kind: ProgressKind = "rich", *, prefix: str = "", stream: TextIO | None = None
) -> Any:
    """A context manager that is also an engine callback.

    Args:
        kind: ``"rich"`` (falls back to ``"plain"`` when stderr is not a terminal), ``"plain"``,
            ``"json"`` (one JSON object per event on ``stream``, default stdout) or ``"off"``.
        prefix: label of the item (e.g. the image name in batch runs).
    """
    if kind == "off":
        return Off()
    if kind == "json":
        return _Json(stream or sys.stdout, prefix)
    if kind == "rich" and sys.stderr.isatty():
        return _Rich(prefix)
    return _Plain(stream or sys.stderr, prefix=prefix)
