"""Local backend: a pool of ``spawn``-ed worker processes, one pipe each.

Each worker process builds a :class:`~sym3d.app.batch.worker.Worker` (the generator is loaded
once) and then processes one task at a time sent over its own pipe. Because the coordinator knows
which process holds which task, a killed process costs exactly its own image: the image comes back
as a lost completion, and a replacement process starts in the background (it takes tasks once it
has loaded the generator); the other workers are not disturbed (unlike a ``ProcessPoolExecutor``,
which breaks as a whole).

Workers ignore SIGINT: a Ctrl-C in the terminal reaches the whole process group, and it is the
coordinator that decides what happens to the images in flight. Workers die with the coordinator
(a parent-death signal and a watchdog, :func:`~sym3d.app.batch.worker.bind_to_parent`), and a
worker renames a result into place only while its coordinator is alive, so a killed coordinator
leaves no orphan that writes into the next run's folder.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Sequence
from multiprocessing.connection import wait as wait_ready
from typing import Any

import attrs

from sym3d.app.batch.backend import WorkerStartError, error_info, start_error
from sym3d.app.batch.tasks import Completion, JobSpec, Placement, Task
from sym3d.app.batch.worker import Worker, bind_to_parent, set_thread_env

__all__ = ["LocalPool"]


def _worker_main(spec: JobSpec, placement: Placement, conn: Any, parent_pid: int) -> None:
    """Entry point of a worker process: build the worker, then serve tasks until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    bind_to_parent(parent_pid)
    set_thread_env(placement.threads)
    try:
        worker = Worker(spec, placement, parent_pid=parent_pid)
    except Exception as exc:
        conn.send(("fatal", error_info(exc)))
        return
    conn.send(("ready", worker.info()))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the coordinator is gone
            return
        if task is None:
            return
        conn.send(("result", worker.run(task)))


@attrs.define
class _Slot:
    placement: Placement
    state: str = "dead"  # starting -> ready -> dead
    process: Any = None
    conn: Any = None
    worker: str = ""
    info: dict[str, Any] = attrs.field(factory=dict)
    task: Task | None = None
    submitted: float = 0.0
    spawned: float = 0.0

    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()


class LocalPool:
    """A local pool of worker processes (see the module docstring).

    Args:
        spec: the batch's settings.
        placements: one per worker (device and threads), e.g. from
            :func:`~sym3d.app.batch.sizing.plan_local`.
        start_timeout: seconds a worker may take to load the generator.
        max_start_failures: worker processes that may die while starting before the batch stops.
    """

    name = "local"

    def __init__(
        self,
        spec: JobSpec,
        placements: Sequence[Placement],
        *,
        start_timeout: float = 900.0,
        max_start_failures: int | None = None,
    ) -> None:
        if not placements:
            raise ValueError("placements: expected at least one worker")
        self.spec = spec
        self.start_timeout = start_timeout
        self.max_start_failures = (
            max_start_failures if max_start_failures is not None else 3 * len(placements)
        )
        self._ctx = multiprocessing.get_context("spawn")
        self._slots = [_Slot(placement=p) for p in placements]
        self._host = socket.gethostname()
        self._start_failures = 0
        self._early: list[Completion] = []

    @property
    def capacity(self) -> int:
        """Number of worker processes."""
        return len(self._slots)

    def describe(self) -> dict[str, Any]:
        """Backend name, worker count, threads and devices."""
        devices = sorted({s.placement.device for s in self._slots})
        return {
            "backend": self.name,
            "workers": len(self._slots),
            "threads": self._slots[0].placement.threads,
            "device": ",".join(devices),
        }

    def workers(self) -> list[str]:
        """Ids (``host:pid``) of the ready worker processes."""
        return [s.worker for s in self._slots if s.state == "ready"]

    # -- lifecycle ------------------------------------------------------------------------

    def _spawn(self, slot: _Slot) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        args = (self.spec, slot.placement, child, os.getpid())
        proc = self._ctx.Process(
            target=_worker_main, args=args, daemon=True, name="sym3d-batch-worker"
        )
        proc.start()
        child.close()
        slot.process, slot.conn, slot.task, slot.info = proc, parent, None, {}
        slot.state, slot.spawned = "starting", time.monotonic()
        slot.worker = f"{self._host}:{proc.pid}"

    def _take_start_message(self, slot: _Slot) -> None:
        """Read a starting worker's first message (or notice its death)."""
        try:
            kind, payload = slot.conn.recv()
        except (EOFError, OSError):
            slot.process.join(5)
            code = slot.process.exitcode
            self._stop(slot, graceful=False)
            self._start_failures += 1
            if self._start_failures > self.max_start_failures:
                raise WorkerStartError(
                    f"batch workers keep dying while starting (the last, {slot.worker}, exited with code {code})."
                ) from None
            self._spawn(slot)
            return
        if kind == "fatal":
            raise start_error(payload, slot.worker)
        slot.info, slot.state = payload, "ready"

    def start(self) -> None:
        """Spawn every worker and wait until each has loaded the generator."""
        for slot in self._slots:
            self._spawn(slot)
        try:
            deadline = time.monotonic() + self.start_timeout
            while any(s.state == "starting" for s in self._slots):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WorkerStartError(
                        f"batch workers did not load the generator within {self.start_timeout:.0f} s."
                    )
                starting = [s for s in self._slots if s.state == "starting"]
                ready = wait_ready(
                    [s.conn for s in starting] + [s.process.sentinel for s in starting],
                    timeout=remaining,
                )
                for slot in starting:
                    if slot.conn in ready or slot.process.sentinel in ready:
                        self._take_start_message(slot)
        except BaseException:
            self.close()
            raise

    # -- work -----------------------------------------------------------------------------

    def idle(self) -> int:
        """Ready workers without a task (one found dead while idle is restarted)."""
        for slot in self._slots:
            if slot.state == "ready" and slot.task is None and not slot.alive():
                self._stop(slot, graceful=False)
                self._spawn(slot)
        return sum(1 for s in self._slots if s.state == "ready" and s.task is None)

    def submit(self, task: Task) -> str:
        """Send ``task`` to an idle ready worker."""
        slot = next(s for s in self._slots if s.state == "ready" and s.task is None)
        slot.task, slot.submitted = task, time.monotonic()
        try:
            slot.conn.send(task)
        except (BrokenPipeError, EOFError, OSError):  # died just now: reported by the next poll
            slot.task = None
            self._early.append(self._lose(slot, task, 0.0))
        return slot.worker

    def _lose(self, slot: _Slot, task: Task, roundtrip: float) -> Completion:
        """The worker of ``task`` is dead: report it and start a replacement."""
        slot.process.join(5)
        code = slot.process.exitcode
        reason = f"worker process {slot.worker} exited with code {code}" + (
            f" (signal {-code})" if code is not None and code < 0 else ""
        )
        worker = slot.worker
        self._stop(slot, graceful=False)
        self._spawn(slot)
        return Completion(task=task, lost=reason, worker=worker, roundtrip=roundtrip)

    def poll(self, timeout: float) -> list[Completion]:
        """Results and lost workers within ``timeout`` seconds (starting workers become ready meanwhile)."""
        out, self._early = self._early, []
        watched = [s for s in self._slots if s.task is not None or s.state == "starting"]
        if not watched:
            time.sleep(min(timeout, 0.05))
            return out
        ready = wait_ready(
            [s.conn for s in watched] + [s.process.sentinel for s in watched],
            timeout=0 if out else timeout,
        )
        for slot in watched:
            if slot.conn not in ready and slot.process.sentinel not in ready:
                continue
            if slot.state == "starting":
                self._take_start_message(slot)
                continue
            task, roundtrip = slot.task, time.monotonic() - slot.submitted
            assert task is not None
            message = None
            try:
                if slot.conn.poll():
                    message = slot.conn.recv()
            except (EOFError, OSError):
                message = None
            slot.task = None
            if message is not None and message[0] == "result":
                out.append(
                    Completion(
                        task=task, result=message[1], worker=slot.worker, roundtrip=roundtrip
                    )
                )
            else:
                out.append(self._lose(slot, task, roundtrip))
        return out

    def cancel(self) -> list[Task]:
        """Terminate the busy workers now; returns their tasks."""
        tasks = []
        for slot in self._slots:
            if slot.task is not None:
                tasks.append(slot.task)
                slot.task = None
                self._stop(slot, graceful=False)
        return tasks

    def _stop(self, slot: _Slot, *, graceful: bool) -> None:
        proc, conn = slot.process, slot.conn
        slot.state = "dead"
        if proc is None:
            return
        if graceful and proc.is_alive():
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            proc.join(10)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
        if proc.is_alive():  # pragma: no cover - ignores SIGTERM
            proc.kill()
            proc.join(5)
        conn.close()
        slot.process = slot.conn = None

    def close(self) -> None:
        """Ask idle workers to exit, terminate busy and starting ones."""
        for slot in self._slots:
            self._stop(slot, graceful=slot.task is None and slot.state == "ready")
            slot.task = None
