"""Shared pieces of the progress renderers (engine and batch); imports nothing heavy, so the CLI stays fast."""

from __future__ import annotations

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
        pass
