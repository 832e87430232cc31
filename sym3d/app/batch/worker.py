"""The worker side of a batch: load the generator once, then turn tasks into result folders.

Both backends run this same code (a local process and a Ray actor each own one
:class:`Worker`), so an image gives the same result on either when the thread count is equal.
"""

from __future__ import annotations

import json
import os
import socket
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

from sym3d.app.batch.tasks import JobSpec, Placement, Task, TaskResult
from sym3d.errors import Sym3DError

__all__ = [
    "Worker",
    "worker_id",
    "finished_outcome",
    "set_thread_env",
    "bind_to_parent",
    "CoordinatorGoneError",
]

_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def worker_id() -> str:
    """``host:pid`` of this process (the manifest's ``worker`` column)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def set_thread_env(threads: int) -> None:
    """Set the BLAS/OpenMP thread variables before torch is imported in a fresh worker."""
    for name in _THREAD_ENV:
        os.environ[name] = str(max(1, int(threads)))


class CoordinatorGoneError(Sym3DError):
    """The batch coordinator that started this worker is gone: nothing may be committed any more."""


def _parent_alive(parent_pid: int) -> bool:
    return os.getppid() == parent_pid


def bind_to_parent(parent_pid: int, interval: float = 0.5) -> None:
    """Make this worker process die with its coordinator ``parent_pid``.

    Linux delivers SIGKILL when the parent exits (``prctl(PR_SET_PDEATHSIG)``); a watchdog thread
    that checks the parent's pid every ``interval`` seconds covers other systems and the moment
    before the ``prctl``. Exits at once when the parent is already gone.
    """
    import signal
    import sys
    import threading

    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        try:
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl in this libc
            pass
    if not _parent_alive(parent_pid):
        os._exit(1)

    def watch() -> None:
        while _parent_alive(parent_pid):
            time.sleep(interval)
        os._exit(1)  # no cleanup: an orphan must not write anything more

    threading.Thread(target=watch, name="sym3d-parent-watchdog", daemon=True).start()


def finished_outcome(out_dir: str | os.PathLike) -> tuple[float | None, dict[str, Any]]:
    """``(seconds, metrics)`` of a finished result folder.

    ``metrics`` is its ``metrics.json``, or, when that was not exported, the stage timings of its
    ``run.json`` (``{"stages": {"latent_seconds": ..., "tune_seconds": ...}}``).
    """
    from sym3d.engine.result import ResultFiles

    out = Path(out_dir)
    seconds: float | None = None
    metrics: dict[str, Any] = {}
    try:
        run = json.loads((out / ResultFiles.RUN).read_text())
        seconds = float(run.get("seconds")) if run.get("seconds") is not None else None
        summary = run.get("summary") or {}
        stages = {
            k: summary[k]
            for k in ("latent_seconds", "tune_seconds")
            if isinstance(summary.get(k), (int, float))
        }
        if stages:
            metrics["stages"] = stages
    except (OSError, ValueError, TypeError):
        pass
    try:  # metrics.json has the stage timings too
        metrics = json.loads((out / ResultFiles.METRICS).read_text())
    except (OSError, ValueError):
        pass
    return seconds, metrics


class Worker:
    """Owns the generator (and pose estimator) of one worker process; runs tasks one at a time.

    Args:
        spec: the batch's settings.
        placement: device and CPU threads of this worker.
        parent_pid: the coordinator's pid (local workers): a result is renamed into place only
            while it is still this process's parent.

    Raises:
        sym3d.errors.Sym3DError: the generator or the pose estimator cannot be built (the
            coordinator stops the batch: every image would fail the same way).
    """

    def __init__(self, spec: JobSpec, placement: Placement, parent_pid: int | None = None) -> None:
        import torch

        from sym3d.app.commands import load_generator_for

        t0 = time.perf_counter()
        torch.set_num_threads(max(1, placement.threads))
        self.spec, self.placement, self.parent_pid = spec, placement, parent_pid
        network = Path(spec.network) if spec.network else None
        self.generator = load_generator_for(
            spec.generator, network, placement.device, dict(spec.generator_options)
        )
        self.pose_estimator = None
        if spec.pose is not None:
            from sym3d.plugins import default_registry

            self.pose_estimator = default_registry().build("pose", spec.pose)
        # The first optimiser imports torch._dynamo (2-3 s): pay it at start-up, not in the first image.
        torch.optim.Adam([torch.zeros(1, requires_grad=True)])
        self.images = 0
        self.id = worker_id()
        self.init_seconds = time.perf_counter() - t0

    def info(self) -> dict[str, Any]:
        """``{"worker", "device", "threads", "init_seconds"}`` (sent once the worker is ready)."""
        import torch

        return {
            "worker": self.id,
            "device": self.placement.device,
            "threads": torch.get_num_threads(),
            "init_seconds": self.init_seconds,
        }

    def _before_commit(self) -> None:
        if self.parent_pid is not None and not _parent_alive(self.parent_pid):
            raise CoordinatorGoneError(
                "the batch coordinator is gone; this result was not renamed into place.",
                hint="run the same `sym3d batch` command again: it resumes this image.",
            )

    def run(self, task: Task) -> TaskResult:
        """Process one image into ``task.out_dir``; every exception becomes a failed result."""
        import torch

        from sym3d.app.outdir import describe_failure
        from sym3d.app.pipeline import process_photo
        from sym3d.errors import ResultExistsError, Sym3DError, UserInputError

        self.images += 1
        t0 = time.perf_counter()
        common = {"key": task.key, "worker": self.id, "worker_images": self.images}
        if Path(task.out_dir).is_dir():  # finished by an attempt that could not report it
            seconds, metrics = finished_outcome(task.out_dir)
            return TaskResult(
                ok=True, seconds=seconds or 0.0, metrics=metrics, already_done=True, **common
            )
        notes: list[str] = []
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                camera = (
                    torch.tensor(task.camera, dtype=torch.float32)
                    if task.camera is not None
                    else None
                )
                outcome = process_photo(
                    task.image,
                    task.out_dir,
                    generator=self.generator,
                    pose_estimator=self.pose_estimator,
                    camera=camera,
                    preset=self.spec.preset,
                    config=self.spec.config,
                    overrides=self.spec.overrides,
                    device=self.placement.device,
                    export=self.spec.export,
                    export_options=dict(self.spec.export_options),
                    resume=self.spec.resume,
                    before_commit=self._before_commit,
                )
            notes.extend(outcome.notes)
            notes.extend(sorted({f"{w.category.__name__}: {w.message}" for w in caught}))
        except ResultExistsError:  # finished meanwhile by another run (`sym3d invert`, same --out)
            seconds, metrics = finished_outcome(task.out_dir)
            seconds = seconds or 0.0
            return TaskResult(
                ok=True, seconds=seconds, metrics=metrics, already_done=True, **common
            )
        except Sym3DError as exc:
            return TaskResult(
                ok=False,
                seconds=time.perf_counter() - t0,
                error=str(exc),
                error_type=type(exc).__name__,
                user_error=isinstance(exc, UserInputError),
                **common,
            )
        except Exception as exc:  # an unexpected error fails this image, not the worker
            return TaskResult(
                ok=False,
                seconds=time.perf_counter() - t0,
                error=describe_failure(
                    exc, task.image, "the manifest's detail column has the traceback"
                ),
                error_type=type(exc).__name__,
                detail=traceback.format_exc(limit=20),
                **common,
            )
        _, metrics = finished_outcome(outcome.out_dir)
        return TaskResult(
            ok=True, seconds=outcome.seconds, metrics=metrics, notes=tuple(notes), **common
        )
