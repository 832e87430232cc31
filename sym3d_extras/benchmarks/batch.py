"""``sym3d bench batch``: batch throughput with the SymHeads generator, local pools vs a local Ray.

Every configuration inverts the same rendered SymHeads images (known cameras, so no pose
estimation) into a fresh output folder with :func:`~sym3d.app.batch.runner.run_batch`.
Reported per configuration: wall time (including starting the workers; for Ray also ``ray.init``),
start-up time, images per minute over the whole run and once the workers are up (steady), the mean
worker time per image, and the per-image dispatch overhead: the coordinator's round trip (submit
-> result recorded) minus the worker's own time for the image.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from sym3d.app.batch.runner import BatchReport, BatchSettings, run_batch
from sym3d.app.batch.sizing import available_cores
from sym3d.app.batch.tasks import JobSpec

__all__ = ["BatchBenchSettings", "BenchRow", "make_symheads_inputs", "run_bench", "print_bench"]


@attrs.frozen(kw_only=True)
class BatchBenchSettings:
    """What to measure.

    Attributes:
        images: SymHeads images per configuration.
        steps: steps of each stage.
        local_workers: local pool sizes to measure (threads: cores / workers).
        ray_workers: actors of the local Ray (0: no Ray).
        export, overrides: outputs and config overrides of every image.
        cores: the cores to split (default: this process's).
        ray_niceness: niceness of Ray's worker processes when the benchmark starts Ray (Ray's
            default is 15, which on a busy machine gives its actors less CPU than the local
            pool's processes at 0; 0 compares like with like). ``None`` keeps Ray's setting.
    """

    images: int = 8
    steps: int = 10
    local_workers: tuple[int, ...] = (1, 2)
    ray_workers: int = 2
    export: tuple[str, ...] = ("metrics",)
    overrides: tuple[str, ...] = ()
    cores: int | None = None
    ray_niceness: int | None = 0


@attrs.frozen(kw_only=True)
class BenchRow:
    """One configuration's measurements."""

    backend: str
    workers: int
    threads: int
    images: int
    done: int
    wall: float
    startup: float
    work_mean: float
    overhead_ms: float

    @property
    def per_minute(self) -> float:
        """Images per minute over the whole run."""
        return 60.0 * self.done / self.wall if self.wall > 0 else math.nan

    @property
    def steady_per_minute(self) -> float:
        """Images per minute once the workers were up."""
        busy = self.wall - self.startup
        return 60.0 * self.done / busy if busy > 0 else math.nan


def make_symheads_inputs(folder: str | os.PathLike, count: int) -> Path:
    """Render ``count`` SymHeads heads (seeds 0.., yaw -30..30 degrees) as PNGs plus their ``dataset.json``."""
    import torch

    from sym3d.camera import look_at
    from sym3d.image import save_image
    from sym3d_extras.synthetic import SymHeadsScene

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    labels = []
    for i in range(count):
        yaw = math.radians(-30 + 60 * i / max(count - 1, 1))
        cam = look_at(yaw, 0.0)
        with torch.no_grad():
            image = SymHeadsScene(i).render(cam[None]).image
        save_image(image, out / f"head{i:03d}.png")
        labels.append([f"head{i:03d}.png", cam.reshape(-1).tolist()])
    (out / "dataset.json").write_text(json.dumps({"labels": labels}))
    return out / "dataset.json"


@contextlib.contextmanager
def _env(name: str, value: str | None) -> Iterator[None]:
    """Set an environment variable for the block (``None``: leave it alone)."""
    if value is None:
        yield
        return
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _row(name: str, workers: int, threads: int, images: int, report: BatchReport) -> BenchRow:
    done = [i for i in report.items if i.status == "done" and i.work_seconds is not None]
    work = [i.work_seconds for i in done if i.work_seconds is not None]
    overhead = [i.roundtrip - i.work_seconds for i in done if i.work_seconds is not None]
    return BenchRow(
        backend=name,
        workers=workers,
        threads=threads,
        images=images,
        done=len(done),
        wall=report.seconds,
        startup=report.startup_seconds,
        work_mean=sum(work) / len(work) if work else math.nan,
        overhead_ms=1000 * sum(overhead) / len(overhead) if overhead else math.nan,
    )


def run_bench(
    settings: BatchBenchSettings,
    *,
    out: str | os.PathLike | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> tuple[list[BenchRow], dict[str, Any]]:
    """Run every configuration; returns the rows and the machine's description (cores, load before and after)."""
    cores = settings.cores or available_cores()
    meta: dict[str, Any] = {
        "cores": cores,
        "load_before": os.getloadavg(),
        "command": " ".join(["sym3d", *sys.argv[1:]]) if sys.argv else "",
        "ray_niceness": settings.ray_niceness,
    }
    with tempfile.TemporaryDirectory(prefix="sym3d-bench-batch-") as tmp:
        root = Path(out) if out is not None else Path(tmp)
        inputs = root / "inputs"
        log(f"rendering {settings.images} SymHeads inputs into {inputs}")
        cameras = make_symheads_inputs(inputs, settings.images)
        spec = JobSpec(
            generator="symheads",
            pose=None,
            overrides=(
                f"latent.steps={settings.steps}",
                f"tune.steps={settings.steps}",
                *settings.overrides,
            ),
            export=settings.export,
        )
        configs: list[tuple[str, int, int, str | None]] = [
            ("local", w, max(1, cores // w), None) for w in settings.local_workers
        ]
        if settings.ray_workers:
            configs.append(
                ("ray (local)", settings.ray_workers, max(1, cores // settings.ray_workers), "auto")
            )
        rows: list[BenchRow] = []
        for name, workers, threads, ray in configs:
            dest = root / f"{name.split()[0]}-{workers}w"
            log(f"{name}: {workers} worker(s) x {threads} thread(s) -> {dest}")
            settings_ = BatchSettings(
                input_dir=inputs,
                out_dir=dest,
                spec=spec,
                cameras=cameras,
                ray=ray,
                device="cpu",
                workers=workers,
                threads=threads,
                ray_init_options={"num_cpus": cores} if ray else {},
            )
            with _env(
                "RAY_worker_niceness",
                None if not ray or settings.ray_niceness is None else str(settings.ray_niceness),
            ):
                report = run_batch(settings_)
            rows.append(_row(name, workers, threads, settings.images, report))
            log(f"  {rows[-1].done}/{settings.images} done in {report.seconds:.1f} s")
    meta["load_after"] = os.getloadavg()
    return rows, meta


def print_bench(rows: Sequence[BenchRow], meta: dict[str, Any], console: Any) -> None:
    """The throughput table and Ray's overhead against the local pool with as many workers."""
    from rich.table import Table

    load = meta.get("load_before", (math.nan,) * 3)
    table = Table(
        title=f"batch throughput, SymHeads, {meta.get('cores')} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start"
    )
    for col in (
        "backend",
        "workers x threads",
        "images",
        "wall s",
        "start-up s",
        "images/min",
        "images/min steady",
        "worker s/image",
        "dispatch ms/image",
    ):
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        table.add_row(
            r.backend,
            f"{r.workers} x {r.threads}",
            f"{r.done}/{r.images}",
            f"{r.wall:.1f}",
            f"{r.startup:.1f}",
            f"{r.per_minute:.1f}",
            f"{r.steady_per_minute:.1f}",
            f"{r.work_mean:.2f}",
            f"{r.overhead_ms:.0f}",
        )
    console.print(table)
    ray_rows = [r for r in rows if r.backend.startswith("ray")]
    for ray_row in ray_rows:
        local = next(
            (r for r in rows if r.backend == "local" and r.workers == ray_row.workers), None
        )
        if local is None:
            continue
        steady_local = (local.wall - local.startup) / max(local.done, 1)
        steady_ray = (ray_row.wall - ray_row.startup) / max(ray_row.done, 1)
        console.print(
            f"Ray vs local pool ({ray_row.workers} workers): dispatch overhead {ray_row.overhead_ms - local.overhead_ms:+.0f} ms/image; "
            f"steady wall time {1000 * (steady_ray - steady_local):+.0f} ms/image; start-up {ray_row.startup - local.startup:+.1f} s"
        )
    if ray_rows and meta.get("ray_niceness") is not None:
        console.print(
            f"Ray worker processes ran at niceness {meta['ray_niceness']} (Ray's default is 15; the local pool runs at 0)."
        )
    console.print(
        "steady: images per minute once the workers were up; dispatch: the coordinator's round trip per image minus the worker's own time."
    )
    after = meta.get("load_after")
    if after:
        console.print(f"load average at the end: {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}")
    if meta.get("command"):
        console.print(f"command: {meta['command']}")
