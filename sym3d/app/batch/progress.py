"""Batch events and their renderers: ``rich`` (a bar of the whole batch), ``plain``, ``json``, ``off``.

The runner never prints; it emits these events to a callback, like the engine does.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

import attrs

from sym3d.cli.renderer_base import NoOpContext, Off, rich_bar

__all__ = [
    "BatchStarting",
    "BatchStarted",
    "ItemStarted",
    "ItemFinished",
    "BatchFinished",
    "make_batch_progress",
    "headline_metrics",
]


@attrs.frozen(kw_only=True)
class BatchStarting:
    """The workers are being started (loading the generator can take a while)."""

    todo: int
    backend: str


@attrs.frozen(kw_only=True)
class BatchStarted:
    """The workers are ready: ``total`` images, of which ``done``/``failed`` were settled by earlier runs."""

    total: int
    done: int
    failed: int
    todo: int
    backend: Mapping[str, Any] = attrs.field(factory=dict)
    startup_seconds: float = 0.0
    notes: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class ItemStarted:
    """An image was handed to a worker."""

    key: str
    worker: str
    attempt: int


@attrs.frozen(kw_only=True)
class ItemFinished:
    """An attempt ended: ``status`` is ``done``, ``failed`` or ``requeued`` (the worker died; it will be retried)."""

    key: str
    status: str
    attempt: int
    seconds: float | None = None
    worker: str = ""
    error: str | None = None
    metrics: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class BatchFinished:
    """The run ended (``interrupted`` when a signal stopped it)."""

    done: int
    failed: int
    pending: int
    seconds: float
    interrupted: bool = False


def headline_metrics(metrics: Mapping[str, Any]) -> str:
    """``"psnr 22.7 ssim 0.76"`` from a result's metrics (the reconstruction's, if any)."""
    rec = metrics.get("reconstruction") if isinstance(metrics, Mapping) else None
    if not isinstance(rec, Mapping):
        return ""
    return " ".join(f"{k} {v:.3g}" for k, v in rec.items() if isinstance(v, (int, float)))


def _line(event: Any) -> str | None:
    if isinstance(event, BatchStarting):
        return f"starting {event.backend} workers for {event.todo} image(s)..."
    if isinstance(event, BatchStarted):
        b = event.backend
        head = f"batch: {event.total} images, {event.done} done, {event.failed} failed, {event.todo} to do"
        if b:
            head += f" ({b.get('backend', '?')}: {b.get('workers', '?')} worker(s) x {b.get('threads', '?')} thread(s) on {b.get('device', '?')}; ready in {event.startup_seconds:.1f} s)"
        return "\n".join([head, *(f"  note: {n}" for n in event.notes)])
    if isinstance(event, ItemFinished):
        if event.status == "done":
            extra = headline_metrics(event.metrics)
            return f"done    {event.key} in {event.seconds or 0:.1f} s on {event.worker}" + (
                f": {extra}" if extra else ""
            )
        if event.status == "failed":
            return f"failed  {event.key} (attempt {event.attempt}): {event.error}"
        return f"retry   {event.key}: {event.error}"
    if isinstance(event, BatchFinished):
        state = "interrupted" if event.interrupted else "finished"
        return f"batch {state} in {event.seconds:.0f} s: {event.done} done, {event.failed} failed, {event.pending} pending"
    return None


@attrs.define
class _Plain(NoOpContext):
    stream: TextIO

    def __call__(self, event: Any) -> None:
        text = _line(event)
        if text is not None:
            print(text, file=self.stream, flush=True)


@attrs.define
class _Json(NoOpContext):
    stream: TextIO

    def __call__(self, event: Any) -> None:
        print(
            json.dumps({"event": type(event).__name__, **attrs.asdict(event)}, default=str),
            file=self.stream,
            flush=True,
        )


class _Rich:
    """One bar for the whole batch (images settled / total, failures, running, ETA) with a log line per image."""

    def __init__(self) -> None:
        self.progress = rich_bar(
            "[bold]batch",
            fields=["[red]{task.fields[failed]} failed", "{task.fields[running]} running"],
        )
        self.console = self.progress.console
        self.task: Any = None
        self.running = 0
        self.failed = 0
        self.t0 = time.monotonic()

    def __call__(self, event: Any) -> None:
        if isinstance(event, BatchStarting):
            self.console.print(_line(event), markup=False, highlight=False)
        elif isinstance(event, BatchStarted):
            self.console.print(_line(event), markup=False, highlight=False)
            self.failed = event.failed
            self.task = self.progress.add_task(
                "batch",
                total=max(event.total, 1),
                completed=event.done + event.failed,
                failed=self.failed,
                running=0,
            )
        elif self.task is None:
            return
        elif isinstance(event, ItemStarted):
            self.running += 1
            self.progress.update(self.task, running=self.running)
        elif isinstance(event, ItemFinished):
            self.running = max(0, self.running - 1)
            style = {"done": "green", "failed": "red"}.get(event.status, "yellow")
            self.progress.console.print(f"[{style}]{event.status:>8}[/] ", end="")
            self.progress.console.print(
                (_line(event) or "").split(maxsplit=1)[1], markup=False, highlight=False
            )
            if event.status == "failed":
                self.failed += 1
            self.progress.update(
                self.task,
                advance=0 if event.status == "requeued" else 1,
                failed=self.failed,
                running=self.running,
            )
        elif isinstance(event, BatchFinished):
            self.progress.update(self.task, running=0)
            self.progress.stop()
            self.console.print(_line(event), markup=False, highlight=False)

    def __enter__(self) -> _Rich:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


def make_batch_progress(kind: str = "rich", *, stream: TextIO | None = None) -> Any:
    """A context manager that is also a batch-event callback.

    Args:
        kind: ``"rich"`` (falls back to ``"plain"`` when stderr is not a terminal), ``"plain"``
            (one line per image on stderr), ``"json"`` (one JSON object per event on ``stream``,
            default stdout) or ``"off"``.
    """
    if kind == "off":
        return Off()
    if kind == "json":
        return _Json(stream or sys.stdout)
    if kind == "rich" and sys.stderr.isatty():
        return _Rich()
    return _Plain(stream or sys.stderr)
