"""What the coordinator needs from an execution backend (local process pool, Ray actor pool).

A backend owns a fixed number of workers, each processing one task at a time. The coordinator
submits a task only to an idle worker and collects :class:`~sym3d.app.batch.tasks.Completion`
values as they arrive; a worker that dies yields a completion with ``lost`` set and is replaced
on the next submission.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from sym3d.app.batch.tasks import Completion, Task
from sym3d.errors import Sym3DError, UserInputError

__all__ = ["Backend", "WorkerStartError", "WorkerStartInputError", "error_info", "start_error"]


class WorkerStartError(Sym3DError):
    """A worker could not load the generator or the pose estimator: every image would fail, so the batch stops."""


class WorkerStartInputError(WorkerStartError, UserInputError):
    """A worker could not start because of the user's settings (unknown generator, missing weights, ...)."""


def error_info(exc: BaseException) -> dict[str, Any]:
    """A picklable description of ``exc`` (the exception itself may not unpickle elsewhere)."""
    return {
        "error": str(exc) if isinstance(exc, Sym3DError) else f"{type(exc).__name__}: {exc}",
        "error_type": type(exc).__name__,
        "user_error": isinstance(exc, UserInputError),
        "detail": None if isinstance(exc, Sym3DError) else traceback.format_exc(limit=20),
    }


def start_error(info: dict[str, Any], worker: str = "") -> WorkerStartError:
    """The error to raise in the coordinator for a worker's failed start (``info`` from :func:`error_info`)."""
    where = f" ({worker})" if worker else ""
    cls = WorkerStartInputError if info.get("user_error") else WorkerStartError
    return cls(f"a batch worker{where} could not start: {info.get('error')}")


@runtime_checkable
class Backend(Protocol):
    """An execution backend (see the module docstring)."""

    name: str

    def start(self) -> None:
        """Start every worker; returns once they have loaded the generator.

        Raises:
            WorkerStartError: a worker could not start.
        """

    @property
    def capacity(self) -> int:
        """The number of workers (tasks that may be in flight at once)."""

    def describe(self) -> dict[str, Any]:
        """``{"backend", "workers", "threads", "device", ...}`` for the log and the progress display."""

    def workers(self) -> list[str]:
        """Ids (``host:pid``) of the workers that are ready (each has loaded the generator once)."""

    def idle(self) -> int:
        """Workers without a task."""

    def submit(self, task: Task) -> str:
        """Hand ``task`` to an idle worker (restarting it if it died); returns the worker's id."""

    def poll(self, timeout: float) -> list[Completion]:
        """Completions that arrived within ``timeout`` seconds (at least one unless it timed out)."""

    def cancel(self) -> Sequence[Task]:
        """Stop all in-flight work now (an interrupt); returns the tasks that were in flight."""

    def close(self) -> None:
        """Stop the workers and release their resources (idempotent)."""
