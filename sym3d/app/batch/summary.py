"""``sym3d batch --summary``: counts, mean time per image, mean metrics and failures, from the manifest."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from sym3d.app.batch.manifest import MANIFEST_NAME, Manifest

__all__ = ["BatchSummary", "flatten_metrics", "summarize", "print_summary"]


@attrs.frozen(kw_only=True)
class BatchSummary:
    """The state of a batch output folder.

    Attributes:
        out_dir: the folder.
        input_dir: the input folder of its last run.
        counts: images per status (``pending``, ``running``, ``done``, ``failed``).
        mean_seconds: mean worker time per finished image (``None`` if none).
        metrics: dotted metric name -> ``(mean, count)`` over finished images.
        failures: ``(key, attempts, error)`` of the failed images.
    """

    out_dir: str
    input_dir: str
    counts: Mapping[str, int]
    mean_seconds: float | None
    metrics: Mapping[str, tuple[float, int]]
    failures: tuple[tuple[str, int, str], ...]

    @property
    def total(self) -> int:
        """Images in the manifest."""
        return sum(self.counts.values())


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """``("reconstruction.psnr", 22.7)``, ... for every finite number in nested metrics (not booleans)."""
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flatten_metrics(value, name + ".")
        elif (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ):
            yield name, float(value)


def summarize(out_dir: str | os.PathLike) -> BatchSummary:
    """Read ``<out_dir>/manifest.sqlite`` (works while a run is going on).

    Raises:
        sym3d.errors.UserInputError: no manifest in ``out_dir``.
    """
    with Manifest(Path(out_dir) / MANIFEST_NAME, readonly=True) as m:
        rows = m.rows()
        input_dir = m.meta("input_dir") or ""
    seconds = [r.seconds for r in rows if r.status == "done" and r.seconds is not None]
    sums: dict[str, list[float]] = {}
    for r in rows:
        if r.status == "done":
            for name, value in flatten_metrics(r.metrics):
                sums.setdefault(name, []).append(value)
    counts = {s: 0 for s in ("done", "failed", "pending", "running")}
    for r in rows:
        counts[r.status] += 1
    return BatchSummary(
        out_dir=str(out_dir),
        input_dir=input_dir,
        counts=counts,
        mean_seconds=sum(seconds) / len(seconds) if seconds else None,
        metrics={k: (sum(v) / len(v), len(v)) for k, v in sorted(sums.items())},
        failures=tuple((r.key, r.attempts, r.error or "") for r in rows if r.status == "failed"),
    )


def print_summary(summary: BatchSummary, console: Any = None) -> None:
    """Rich tables: status counts and timing, mean metrics, failures with their reasons."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    c = summary.counts
    table = Table(
        title=f"batch {summary.out_dir}"
        + (f" (input {summary.input_dir})" if summary.input_dir else "")
    )
    for col in ("images", "done", "failed", "pending", "running", "mean s/image"):
        table.add_column(col, justify="right")
    mean = "-" if summary.mean_seconds is None else f"{summary.mean_seconds:.2f}"
    table.add_row(
        str(summary.total),
        f"[green]{c['done']}",
        f"[red]{c['failed']}",
        str(c["pending"]),
        str(c["running"]),
        mean,
    )
    console.print(table)
    if summary.metrics:
        mt = Table(title="mean metrics of finished images")
        mt.add_column("metric")
        mt.add_column("mean", justify="right")
        mt.add_column("images", justify="right")
        for name, (value, n) in summary.metrics.items():
            mt.add_row(Text(name), f"{value:.4g}", str(n))
        console.print(mt)
    if summary.failures:
        ft = Table(title="failures")
        ft.add_column("image")
        ft.add_column("attempts", justify="right")
        ft.add_column("reason", overflow="fold")
        for key, attempts, error in summary.failures:
            ft.add_row(Text(key), str(attempts), Text(error))
        console.print(ft)
