"""The batch coordinator: discover images, reconcile the manifest, feed a backend, record results.

Only this process writes the manifest. One loop hands pending images to idle workers and records
each completion as it arrives: ``done`` once the worker has renamed the result folder into place,
``failed`` with the error, or, when the worker died, back to ``pending`` (the attempt counted)
until ``max_attempts``. SIGINT/SIGTERM stop the loop: no more submissions, the images in flight
are cancelled and go back to ``pending`` (their work folders ``OUT/.work/<key>`` resume), the
manifest is consistent, and a re-run continues. A second signal interrupts at once. When the
manifest cannot be written (a full disk), the run stops with one clear error; the last committed
state stays valid and a re-run continues. An image whose name cannot name a result folder is
reported and skipped; the others run.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from sym3d.app.batch.backend import Backend
from sym3d.app.batch.manifest import MANIFEST_NAME, Manifest, SyncReport
from sym3d.app.batch.progress import (
    BatchFinished,
    BatchStarted,
    BatchStarting,
    ItemFinished,
    ItemStarted,
)
from sym3d.app.batch.tasks import Completion, JobSpec, Task
from sym3d.app.batch.worker import finished_outcome
from sym3d.app.outdir import check_key, exclusive_lock
from sym3d.errors import ResultNameError, Sym3DError, UserInputError

__all__ = [
    "IMAGE_SUFFIXES",
    "BatchSettings",
    "BatchReport",
    "ItemRecord",
    "discover_images",
    "discover_inputs",
    "make_backend",
    "run_batch",
    "StopFlag",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
LOCK_NAME = ".manifest.lock"


@attrs.frozen(kw_only=True)
class BatchSettings:
    """A batch run.

    Attributes:
        input_dir: the folder of images (not recursive; hidden files are skipped).
        out_dir: one result folder per image (``<out_dir>/<image stem>``) and the manifest.
        spec: how each image is processed.
        cameras: EG3D ``dataset.json`` with the camera labels of already aligned crops.
        max_attempts: attempts per image, counted across runs; a failed image is retried by a
            re-run until it has had this many.
        retry_failed: retry failed images even if they reached ``max_attempts``.
        ray: ``None`` for the local process pool, else ``"auto"`` or a Ray cluster address.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or (local only) ``"cuda:N"``.
        workers: worker count (``None``: sized to the machine or the cluster).
        threads: torch CPU threads per worker (``None``: the cores split evenly; Ray: 1).
        ray_init_options: extra ``ray.init`` options when the batch starts Ray.
    """

    input_dir: Path = attrs.field(converter=Path)
    out_dir: Path = attrs.field(converter=Path)
    spec: JobSpec = attrs.field(factory=JobSpec)
    cameras: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    max_attempts: int = 3
    retry_failed: bool = False
    ray: str | None = None
    device: str = "auto"
    workers: int | None = None
    threads: int | None = None
    ray_init_options: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class ItemRecord:
    """One attempt's outcome as the coordinator saw it (timings for the benchmark)."""

    key: str
    status: str
    work_seconds: float | None
    roundtrip: float
    worker: str


@attrs.frozen(kw_only=True)
class BatchReport:
    """What :func:`run_batch` did.

    Attributes:
        counts: manifest rows per status at the end.
        seconds: wall time of the run (including starting the workers).
        startup_seconds: time until every worker had loaded the generator.
        items: one record per attempt that ended in this run.
        interrupted: a signal (or the ``stop`` event) stopped the run.
        backend: the backend's description (empty when there was nothing to do).
        sync: what reconciling the manifest with the disk changed.
        notes: warnings for the user (changed settings, images out of attempts, ...).
        refused: one line per image skipped because its name cannot name a result folder.
    """

    counts: Mapping[str, int]
    seconds: float
    startup_seconds: float = 0.0
    items: tuple[ItemRecord, ...] = ()
    interrupted: bool = False
    backend: Mapping[str, Any] = attrs.field(factory=dict)
    sync: SyncReport = attrs.field(factory=SyncReport)
    notes: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()


class StopFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks (installed only in the main thread).

    The first signal sets the flag; a second one raises :class:`KeyboardInterrupt` at once.

    Args:
        event: an external event that also stops the run (e.g. from a test or an embedding app).
    """

    def __init__(self, event: threading.Event | None = None) -> None:
        self.event = event or threading.Event()
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()

    def is_set(self) -> bool:
        """A stop was requested."""
        return self.event.is_set()

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def _exclusive(out_dir: Path) -> contextlib.AbstractContextManager[None]:
    """One coordinator per output folder (an advisory ``flock``; a no-op where fcntl is missing)."""
    return exclusive_lock(
        out_dir / LOCK_NAME,
        f"{out_dir}: another `sym3d batch` is writing to this folder.",
        "wait for it, or choose another --out.",
    )


def discover_images(input_dir: str | os.PathLike) -> dict[str, Path]:
    """Image files of ``input_dir`` by key (the stem, which names the result folder), sorted.

    Images whose name cannot name a result folder are left out (see :func:`discover_inputs`).

    Raises:
        UserInputError: no such folder, no images, or two images with the same stem
            (``a.png`` and ``a.jpg`` would share a result folder).
    """
    return discover_inputs(input_dir)[0]


def discover_inputs(input_dir: str | os.PathLike) -> tuple[dict[str, Path], list[str]]:
    """``(images by key, refused)``: the images of ``input_dir`` and one line per refused file.

    Hidden files are skipped. A file is refused when its stem cannot name a result folder (not
    valid UTF-8, reserved, too long: :func:`sym3d.app.outdir.check_key`); the batch runs the
    others and reports these.

    Raises:
        UserInputError: no such folder, no images, or two images with the same stem.
    """
    folder = Path(input_dir)
    if not folder.is_dir():
        raise UserInputError(
            f"{folder}: no such folder.",
            hint="pass a folder of images (for single files use `sym3d invert`).",
        )
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise UserInputError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}).")
    by_key: dict[str, Path] = {}
    clashes: list[str] = []
    refused: list[str] = []
    for p in files:
        try:
            check_key(p.stem, p)
        except ResultNameError as exc:
            refused.append(str(exc))
            continue
        if p.stem in by_key:
            clashes.append(f"{by_key[p.stem].name} / {p.name}")
        by_key[p.stem] = p.resolve()
    if clashes:
        raise UserInputError(
            f"{folder}: images share a name and would share a result folder: {'; '.join(clashes[:5])}.",
            hint="rename them.",
        )
    return by_key, refused


def make_backend(settings: BatchSettings) -> Backend:
    """The local pool, or the Ray pool when ``settings.ray`` is set."""
    if settings.ray:
        from sym3d.app.batch.ray_backend import RayPool

        return RayPool(
            settings.spec,
            address=settings.ray,
            workers=settings.workers,
            threads=settings.threads,
            device=settings.device,
            init_options=settings.ray_init_options,
        )
    from sym3d.app.batch.local import LocalPool
    from sym3d.app.batch.sizing import plan_local

    return LocalPool(settings.spec, plan_local(settings.device, settings.workers, settings.threads))


class _Coordinator:
    """State of one run (the queue, what is in flight) and how completions are recorded."""

    def __init__(
        self, settings: BatchSettings, manifest: Manifest, emit: Callable[[Any], None]
    ) -> None:
        self.settings, self.m, self.emit = settings, manifest, emit
        self.queue: collections.deque[Task] = collections.deque()
        self.inflight: dict[str, Task] = {}
        self.items: list[ItemRecord] = []
        self.seen_workers: set[str] = set()

    def queue_pending(self, labels: Mapping[str, list[float]] | None) -> list[ItemFinished]:
        """Queue the pending images; those without a camera label fail at once (returned, to be shown)."""
        out = self.settings.out_dir
        unlabelled = []
        for row in self.m.rows("pending"):
            camera = None
            if labels is not None:
                name = Path(row.path).name
                if name not in labels:
                    error = f"{row.path}: no camera label for {name!r} in {self.settings.cameras}."
                    self.m.mark_failed(
                        row.key, error=error, error_type="UserInputError", worker=None
                    )
                    unlabelled.append(
                        ItemFinished(
                            key=row.key, status="failed", attempt=row.attempts + 1, error=error
                        )
                    )
                    continue
                camera = labels[name]
            self.queue.append(
                Task(
                    key=row.key,
                    image=row.path,
                    out_dir=str(out / row.key),
                    camera=camera,
                    attempt=row.attempts + 1,
                )
            )
        return unlabelled

    def note_workers(self, backend: Backend) -> None:
        """Log each worker the first time it is ready (each one loaded the generator once)."""
        for worker in backend.workers():
            if worker not in self.seen_workers:
                self.seen_workers.add(worker)
                self.m.log("worker_ready", worker=worker)

    def submit(self, backend: Backend, stop: StopFlag) -> None:
        while self.queue and backend.idle() > 0 and not stop.is_set():
            task = self.queue.popleft()
            worker = backend.submit(task)
            self.m.mark_running(task.key, worker, task.attempt)
            self.inflight[task.key] = task
            self.emit(ItemStarted(key=task.key, worker=worker, attempt=task.attempt))

    def record(self, c: Completion) -> None:
        task = c.task
        self.inflight.pop(task.key, None)
        out = Path(task.out_dir)
        if (
            c.result is None and out.is_dir()
        ):  # renamed into place, then the worker died before reporting
            seconds, metrics = finished_outcome(out)
            self.m.mark_done(
                task.key,
                seconds=seconds,
                metrics=metrics,
                worker=c.worker,
                detail={"note": "finished before its worker was lost"},
            )
            self._finished(task, "done", seconds, c, metrics=metrics)
        elif c.result is None:
            requeue = task.attempt < self.settings.max_attempts
            attempts = self.m.mark_lost(
                task.key, reason=c.lost or "worker lost", worker=c.worker, requeue=requeue
            )
            if requeue:
                self.queue.appendleft(attrs.evolve(task, attempt=attempts + 1))
                self._finished(
                    task,
                    "requeued",
                    None,
                    c,
                    error=f"{c.lost}; retrying (attempt {attempts + 1} of {self.settings.max_attempts})",
                )
            else:
                self._finished(
                    task,
                    "failed",
                    None,
                    c,
                    error=f"the worker died on each of {attempts} attempts (last: {c.lost})",
                )
        elif c.result.ok:
            r = c.result
            self.m.mark_done(
                task.key,
                seconds=r.seconds,
                metrics=r.metrics,
                worker=r.worker,
                notes=r.notes,
                detail={
                    "seconds": r.seconds,
                    "worker_images": r.worker_images,
                    "already_done": r.already_done,
                },
            )
            self._finished(task, "done", r.seconds, c, metrics=r.metrics)
        else:
            r = c.result
            self.m.mark_failed(
                task.key,
                error=r.error or "unknown error",
                error_type=r.error_type,
                worker=r.worker,
                seconds=r.seconds,
                detail=r.detail,
            )
            self._finished(task, "failed", r.seconds, c, error=r.error)

    def _finished(
        self,
        task: Task,
        status: str,
        seconds: float | None,
        c: Completion,
        *,
        error: str | None = None,
        metrics: Mapping[str, Any] | None = None,
    ) -> None:
        self.items.append(
            ItemRecord(
                key=task.key,
                status=status,
                work_seconds=seconds,
                roundtrip=c.roundtrip,
                worker=c.worker,
            )
        )
        self.emit(
            ItemFinished(
                key=task.key,
                status=status,
                attempt=task.attempt,
                seconds=seconds,
                worker=c.worker,
                error=error,
                metrics=metrics or {},
            )
        )

    def settle_inflight(self, tasks: list[Task], reason: str) -> None:
        """Images that were in flight when the run stopped: done if their folder is in place, else pending."""
        for task in tasks:
            out = Path(task.out_dir)
            if out.is_dir():
                seconds, metrics = finished_outcome(out)
                self.m.mark_done(
                    task.key,
                    seconds=seconds,
                    metrics=metrics,
                    worker=None,
                    detail={"note": f"finished when the run stopped ({reason})"},
                )
            else:
                self.m.mark_pending([task.key], reason=reason)
        self.inflight.clear()


def _close_run(
    m: Manifest, coord: _Coordinator, stopped: list[Task], *, interrupted: bool, errored: bool
) -> dict[str, int]:
    """Settle the images that were in flight and log the run's end; returns the final counts.

    When the manifest cannot be written (a full disk) while another error is already on its way
    out, that error is the one reported: the manifest keeps its last committed state, which a
    re-run reconciles with the disk.
    """
    try:
        if stopped:
            coord.settle_inflight(stopped, "interrupted" if interrupted else "the run stopped")
        final = m.counts()
        event = "run_interrupted" if interrupted else "run_failed" if errored else "run_finished"
        m.log(event, {"counts": final})
    except Sym3DError:
        if not errored:
            raise
        final = m.counts()
    return final


def run_batch(
    settings: BatchSettings,
    *,
    progress: Callable[[Any], None] | None = None,
    backend: Backend | None = None,
    stop: threading.Event | None = None,
) -> BatchReport:
    """Process every image of ``settings.input_dir`` that is not done yet (see the module docstring).

    Args:
        settings: the run.
        progress: receives :mod:`sym3d.app.batch.progress` events.
        backend: an execution backend (default: :func:`make_backend`).
        stop: setting this event stops the run like SIGINT does.

    Returns:
        :class:`BatchReport` (``interrupted`` when stopped; the caller decides the exit code).

    Raises:
        UserInputError: bad input folder, camera file or settings; another run holds the folder.
        sym3d.app.batch.backend.WorkerStartError: the workers could not load the generator.
        OutputWriteError: the manifest cannot be written (disk full); a re-run continues.
    """
    from sym3d.app.commands import _read_cameras

    t0 = time.monotonic()
    emit = progress or (lambda event: None)
    images, refused = discover_inputs(settings.input_dir)
    labels = _read_cameras(settings.cameras) if settings.cameras is not None else None
    if settings.max_attempts < 1:
        raise UserInputError(
            f"--max-attempts: expected a positive number, got {settings.max_attempts}."
        )
    out = settings.out_dir
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = [f"skipped {line}" for line in refused]
    with _exclusive(out), Manifest(out / MANIFEST_NAME) as m:
        described = settings.spec.describe()
        previous = m.meta("settings")
        if previous is not None and json.loads(previous) != json.loads(
            json.dumps(described, sort_keys=True)
        ):
            notes.append(
                "the settings differ from the previous run of this folder; finished results are kept as they are."
            )
        m.set_meta(
            {
                "settings": described,
                "input_dir": str(settings.input_dir.resolve()),
                "cameras": str(settings.cameras) if settings.cameras else "",
            }
        )
        sync = m.sync(
            images,
            out,
            max_attempts=settings.max_attempts,
            retry_failed=settings.retry_failed,
            finished=finished_outcome,
        )
        if sync.exhausted:
            notes.append(
                f"{len(sync.exhausted)} failed image(s) reached --max-attempts {settings.max_attempts} and are skipped (--retry-failed retries them)."
            )
        coord = _Coordinator(settings, m, emit)
        # counted before the unlabelled images fail: they are shown as this run's failures
        counts = m.counts()
        unlabelled = coord.queue_pending(labels)
        todo = len(coord.queue) + len(unlabelled)
        m.log("run_started", {"todo": todo, "counts": counts, "ray": settings.ray})
        started = functools.partial(
            BatchStarted,
            total=sum(counts.values()),
            done=counts["done"],
            failed=counts["failed"],
            todo=todo,
        )
        if not coord.queue:
            emit(started(notes=tuple(notes)))
            for event in unlabelled:
                emit(event)
            counts = m.counts()
            emit(
                BatchFinished(
                    done=counts["done"],
                    failed=counts["failed"],
                    pending=counts["pending"],
                    seconds=time.monotonic() - t0,
                )
            )
            return BatchReport(
                counts=counts,
                seconds=time.monotonic() - t0,
                sync=sync,
                notes=tuple(notes),
                refused=tuple(refused),
            )
        pool = backend or make_backend(settings)
        interrupted = errored = False
        startup = 0.0
        described_pool: Mapping[str, Any] = {}
        with StopFlag(stop) as flag:
            try:
                emit(BatchStarting(todo=len(coord.queue), backend=pool.name))
                pool.start()
                startup = time.monotonic() - t0
                described_pool = pool.describe()
                notes.extend(getattr(pool, "warnings", ()))
                emit(started(backend=described_pool, startup_seconds=startup, notes=tuple(notes)))
                for event in unlabelled:
                    emit(event)
                while coord.queue or coord.inflight:
                    if flag.is_set():
                        interrupted = True
                        break
                    coord.note_workers(pool)
                    coord.submit(pool, flag)
                    for completion in pool.poll(0.25):
                        coord.record(completion)
                interrupted = interrupted or flag.is_set()
            except KeyboardInterrupt:
                interrupted = True
                raise
            except BaseException:
                errored = True
                raise
            finally:
                stopped: list[Task] = []
                try:
                    if coord.inflight:
                        cancelled = list(pool.cancel())
                        keys = {c.key for c in cancelled}
                        leftover = [t for k, t in coord.inflight.items() if k not in keys]
                        stopped = cancelled + leftover
                finally:
                    pool.close()
                final = _close_run(m, coord, stopped, interrupted=interrupted, errored=errored)
                emit(
                    BatchFinished(
                        done=final["done"],
                        failed=final["failed"],
                        pending=final["pending"] + final["running"],
                        seconds=time.monotonic() - t0,
                        interrupted=interrupted,
                    )
                )
        return BatchReport(
            counts=final,
            seconds=time.monotonic() - t0,
            startup_seconds=startup,
            items=tuple(coord.items),
            interrupted=interrupted,
            backend=described_pool,
            sync=sync,
            notes=tuple(notes),
            refused=tuple(refused),
        )
