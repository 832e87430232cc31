"""Shared pieces of the progress renderers (engine and batch); imports nothing heavy, so the CLI stays fast."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class NoOpContext:
    """Base for renderers that hold no resources: ``with renderer:`` does nothing."""

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class Off(NoOpContext):
    """The ``off`` renderer: ignores every event."""

    def __call__(self, event: Any) -> None:
        """Ignore ``event``."""


def rich_bar(title: str, *, fields: Sequence[str] = (), tail: Sequence[str] = ()) -> Any:
    """A ``rich.progress.Progress`` on stderr: title, bar, done/total, fields, elapsed, ETA, tail.

    Args:
        title: the first column's format string (``{task.description}`` for the task's label).
        fields: format strings of text columns after ``done/total``
            (``{task.fields[name]}`` reads a field given to ``add_task``/``update``).
        tail: format strings of text columns after the ETA.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn(title),
        BarColumn(),
        MofNCompleteColumn(),
        *(TextColumn(f) for f in fields),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        *(TextColumn(t) for t in tail),
        console=Console(stderr=True),
    )
