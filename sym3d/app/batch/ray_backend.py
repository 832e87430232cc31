"""Ray backend: a pool of actors, each loading the generator once, fed with ``ray.wait``.

``ray`` is imported only when this backend starts (``pip install 'sym3d[dist]'``). Each actor
reserves ``num_cpus=threads`` and, on GPU clusters, ``num_gpus=1`` (Ray then shows it exactly one
device, ``cuda``). The coordinator keeps one task in flight per actor and consumes the results
with ``ray.wait`` as they finish, so they stream into the manifest. An actor that dies
(``RayActorError``: its process was killed, its node went away, it ran out of memory) yields a
lost completion, and a replacement actor starts in the background (it takes tasks once it has
loaded the generator). Actors that cannot be placed yet (an autoscaling cluster adding nodes)
join the pool when they are ready; the batch starts as soon as the first actor is.

The workers read the images and write the result folders themselves: on a multi-node cluster,
the input and output folders must be on a file system every node mounts at the same path.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import attrs

from sym3d.app.batch.backend import WorkerStartError, error_info, start_error
from sym3d.app.batch.tasks import Completion, JobSpec, Placement, Task, TaskResult
from sym3d.app.batch.worker import Worker, set_thread_env
from sym3d.errors import MissingDependencyError, UserInputError

__all__ = ["RayPool", "import_ray"]


def import_ray() -> Any:
    """``import ray`` or a :class:`~sym3d.errors.MissingDependencyError` naming the ``dist`` extra."""
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(
            "the Ray backend (--ray)", extra="dist", package="ray"
        ) from None
    return ray


class BatchActor:
    """The body of a Ray actor: one :class:`~sym3d.app.batch.worker.Worker` (wrapped by ``ray.remote``)."""

    def __init__(self, spec: JobSpec, placement: Placement) -> None:
        set_thread_env(placement.threads)
        self.worker: Worker | None = None
        self.fatal: dict[str, Any] | None = None
        try:
            self.worker = Worker(spec, placement)
        except Exception as exc:  # reported by ready(), so the coordinator can stop with the reason
            self.fatal = error_info(exc)

    def ready(self) -> tuple[str, dict[str, Any]]:
        """``("ready", info)`` or ``("fatal", error info)``."""
        if self.worker is None:
            return "fatal", self.fatal or {}
        return "ready", self.worker.info()

    def run(self, task: Task) -> Any:
        """Process one task (see :meth:`Worker.run`)."""
        assert self.worker is not None
        return self.worker.run(task)


@attrs.define
class _Actor:
    handle: Any = None
    state: str = "starting"  # starting -> ready -> dead
    ready_ref: Any = None
    worker: str = ""
    info: dict[str, Any] = attrs.field(factory=dict)
    task: Task | None = None
    ref: Any = None
    submitted: float = 0.0


class RayPool:
    """A Ray actor pool (see the module docstring).

    Args:
        spec: the batch's settings.
        address: ``"auto"`` (join the Ray of ``RAY_ADDRESS`` or of ``ray start`` on this machine,
            else start a local one) or a cluster address (``ray://head:10001``, ``head:6379``).
            Ignored when Ray is already initialised in this process.
        workers: actors (``None``: one per GPU of the cluster, else ``CPUs // threads``).
        threads: torch CPU threads per actor, also its ``num_cpus`` (``None``: 1).
        device: ``"auto"`` (GPU actors when the cluster has GPUs), ``"cpu"`` or ``"cuda"``.
        start_timeout: seconds to wait for the first actor to be placed and loaded.
        settle_timeout: after the first actor is ready, seconds to wait for the others before
            starting the batch without them (they join when ready).
        init_options: extra keyword options of ``ray.init`` when this pool starts Ray.
        max_start_failures: actors that may die while starting before the batch stops.
    """

    name = "ray"

    def __init__(
        self,
        spec: JobSpec,
        *,
        address: str = "auto",
        workers: int | None = None,
        threads: int | None = None,
        device: str = "auto",
        start_timeout: float = 900.0,
        settle_timeout: float = 60.0,
        init_options: Mapping[str, Any] | None = None,
        max_start_failures: int | None = None,
    ) -> None:
        if device not in ("auto", "cpu", "cuda"):
            raise UserInputError(
                f"--device {device!r} with --ray: expected auto, cpu or cuda (Ray assigns the GPU of each actor)."
            )
        if workers is not None and workers < 1:
            raise UserInputError(f"--workers: expected a positive number, got {workers}.")
        if threads is not None and threads < 1:
            raise UserInputError(f"--threads: expected a positive number, got {threads}.")
        self.spec, self.address, self.device = spec, address, device
        self.requested_workers, self.threads = workers, threads or 1
        self.start_timeout, self.settle_timeout = start_timeout, settle_timeout
        self.init_options = dict(init_options or {})
        self.max_start_failures = max_start_failures
        self._actors: list[_Actor] = []
        self._ray: Any = None
        self._started_ray = False
        self._gpu = False
        self._cls: Any = None
        self._start_failures = 0
        self.warnings: list[str] = []

    @property
    def capacity(self) -> int:
        """Number of actors (ready or starting)."""
        return len(self._actors)

    def describe(self) -> dict[str, Any]:
        """Backend name, actors, threads, device, the Ray address and the nodes in use."""
        return {
            "backend": self.name,
            "workers": len(self._actors),
            "threads": self.threads,
            "device": "cuda" if self._gpu else "cpu",
            "address": self.address,
            "nodes": len({a.worker.rsplit(":", 1)[0] for a in self._actors if a.worker}),
        }

    def workers(self) -> list[str]:
        """Ids (``host:pid``) of the ready actors."""
        return [a.worker for a in self._actors if a.state == "ready"]

    # -- lifecycle ------------------------------------------------------------------------

    def _init_ray(self) -> None:
        ray = self._ray = import_ray()
        if ray.is_initialized():
            return
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
        if self.address == "auto":
            options["include_dashboard"] = False
        options.update(self.init_options)
        try:
            ray.init(address=None if self.address == "auto" else self.address, **options)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise UserInputError(
                f"--ray {self.address}: could not start or join Ray ({type(exc).__name__}: {exc})."
            ) from None
        self._started_ray = True

    def _new_actor(self) -> _Actor:
        placement = Placement(device="cuda" if self._gpu else "cpu", threads=self.threads)
        options = {
            "num_cpus": self.threads,
            "num_gpus": 1 if self._gpu else 0,
            "max_restarts": 0,
            "max_task_retries": 0,
        }
        handle = self._cls.options(**options).remote(self.spec, placement)
        return _Actor(handle=handle, ready_ref=handle.ready.remote())

    def _replace(self, actor: _Actor) -> None:
        try:
            self._ray.kill(actor.handle, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        self._actors[self._actors.index(actor)] = self._new_actor()

    def _take_ready(self, actor: _Actor) -> None:
        """Resolve a starting actor's ``ready()``: ready, a fatal start error, or dead (replaced)."""
        ray = self._ray
        try:
            kind, payload = ray.get(actor.ready_ref)
        except ray.exceptions.RayError as exc:
            self._start_failures += 1
            limit = (
                self.max_start_failures
                if self.max_start_failures is not None
                else 3 * len(self._actors)
            )
            if self._start_failures > limit:
                raise WorkerStartError(
                    f"batch actors keep dying while starting (last: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})."
                ) from None
            self._replace(actor)
            return
        if kind == "fatal":
            raise start_error(payload, "Ray actor")
        actor.info, actor.worker, actor.state, actor.ready_ref = (
            payload,
            payload["worker"],
            "ready",
            None,
        )

    def _wait_starting(self, timeout: float) -> None:
        starting = {a.ready_ref: a for a in self._actors if a.state == "starting"}
        if not starting:
            return
        done, _ = self._ray.wait(list(starting), num_returns=len(starting), timeout=timeout)
        for ref in done:
            self._take_ready(starting[ref])

    def start(self) -> None:
        """Start or join Ray, create the actors, and wait for them (at least the first) to load the generator."""
        self._init_ray()
        ray = self._ray
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
        if self.device == "cuda" and gpus == 0:
            raise UserInputError(
                "--device cuda: the Ray cluster has no GPU.", hint="use --device cpu (or auto)."
            )
        self._gpu = self.device == "cuda" or (self.device == "auto" and gpus > 0)
        n = self.requested_workers or (gpus if self._gpu else max(1, cpus // self.threads))
        self._cls = ray.remote(BatchActor)
        self._actors = [self._new_actor() for _ in range(n)]
        try:
            t0 = time.monotonic()
            first: float | None = None
            # short waits: a second Ctrl-C (KeyboardInterrupt) gets through between them
            while any(a.state == "starting" for a in self._actors):
                now = time.monotonic()
                if first is None and now - t0 > self.start_timeout:
                    raise WorkerStartError(
                        f"Ray could not start a batch actor needing {self.threads} CPU(s){' and 1 GPU' if self._gpu else ''} within {self.start_timeout:.0f} s; "
                        f"the cluster has {resources}.",
                        hint="use fewer --threads, or add nodes.",
                    )
                if first is not None and now - first > self.settle_timeout:
                    waiting = sum(1 for a in self._actors if a.state == "starting")
                    self.warnings.append(
                        f"{waiting} of {n} Ray actors are not ready yet (resources?); they join the batch when they are."
                    )
                    break
                self._wait_starting(1.0)
                if first is None and any(a.state == "ready" for a in self._actors):
                    first = time.monotonic()
        except BaseException:
            self.close()
            raise

    # -- work -----------------------------------------------------------------------------

    def idle(self) -> int:
        """Ready actors without a task."""
        return sum(1 for a in self._actors if a.state == "ready" and a.task is None)

    def submit(self, task: Task) -> str:
        """Call ``run`` on an idle ready actor."""
        actor = next(a for a in self._actors if a.state == "ready" and a.task is None)
        actor.task, actor.submitted = task, time.monotonic()
        actor.ref = actor.handle.run.remote(task)
        return actor.worker

    def poll(self, timeout: float) -> list[Completion]:
        """Results (and dead actors) within ``timeout`` seconds; starting actors become ready meanwhile."""
        ray = self._ray
        busy = {a.ref: a for a in self._actors if a.task is not None}
        starting = {a.ready_ref: a for a in self._actors if a.state == "starting"}
        refs = list(busy) + list(starting)
        if not refs:
            time.sleep(min(timeout, 0.05))
            return []
        done, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if done:
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        out: list[Completion] = []
        for ref in done:
            if ref in starting:
                self._take_ready(starting[ref])
                continue
            actor = busy[ref]
            task, roundtrip = actor.task, time.monotonic() - actor.submitted
            assert task is not None
            actor.task = actor.ref = None
            try:
                result = ray.get(ref)
            except (
                ray.exceptions.RayActorError,
                ray.exceptions.WorkerCrashedError,
                ray.exceptions.ObjectLostError,
            ) as exc:
                first_line = str(exc).splitlines()[0] if str(exc) else ""
                out.append(
                    Completion(
                        task=task,
                        lost=f"Ray actor {actor.worker} died ({type(exc).__name__}: {first_line})",
                        worker=actor.worker,
                        roundtrip=roundtrip,
                    )
                )
                self._replace(actor)
                continue
            except ray.exceptions.RayError as exc:  # e.g. a result that could not be sent back
                result = TaskResult(
                    key=task.key,
                    ok=False,
                    error=f"{type(exc).__name__}: {exc}",
                    error_type=type(exc).__name__,
                    worker=actor.worker,
                )
            out.append(
                Completion(task=task, result=result, worker=actor.worker, roundtrip=roundtrip)
            )
        return out

    def cancel(self) -> list[Task]:
        """Kill the busy actors now; returns their tasks."""
        tasks = []
        for actor in self._actors:
            if actor.task is not None:
                tasks.append(actor.task)
                try:
                    self._ray.kill(actor.handle, no_restart=True)
                except Exception:  # noqa: BLE001
                    pass
                actor.task, actor.ref, actor.state = None, None, "dead"
        return tasks

    def close(self) -> None:
        """Kill the actors; shut Ray down if this pool started it."""
        if self._ray is None:
            return
        for actor in self._actors:
            try:
                self._ray.kill(actor.handle, no_restart=True)
            except Exception:  # noqa: BLE001
                pass
        self._actors = []
        if self._started_ray:
            self._ray.shutdown()
            self._started_ray = False
