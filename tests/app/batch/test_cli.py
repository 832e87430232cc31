"""`sym3d batch` and `sym3d bench batch` argument handling, errors, and the throughput table (no workers)."""

from __future__ import annotations

import sys

import pytest
from rich.console import Console

from sym3d.app.batch.runner import BatchReport, ItemRecord
from sym3d.cli import main
from sym3d.errors import MissingDependencyError
from sym3d_extras.benchmarks.batch import BenchRow, print_bench


def test_commands_are_registered(capsys):
    assert main(["batch", "--help"]) == 0
    text = capsys.readouterr().out
    for option in (
        "--out",
        "--cameras",
        "--ray",
        "--workers",
        "--threads",
        "--max-attempts",
        "--summary",
        "--progress",
    ):
        assert option in text
    assert main(["bench", "batch", "--help"]) == 0


def test_usage_errors_exit_2_before_any_worker(tmp_path, capsys):
    assert main(["batch"]) == 2
    assert main(["batch", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    (tmp_path / "a.png").write_bytes(b"x")
    assert main(["batch", str(tmp_path), "--out", str(tmp_path / "o"), "--preset", "nope"]) == 2
    assert (
        main(["batch", str(tmp_path), "--out", str(tmp_path / "o"), "--set", "tune.steps=-3"]) == 2
    )
    assert (
        main(["batch", str(tmp_path), "--out", str(tmp_path / "o"), "--export", "views,holo"]) == 2
    )
    assert main(["batch", str(tmp_path), "--out", str(tmp_path / "o"), "--progress", "loud"]) == 2
    assert main(["batch", "--summary", str(tmp_path)]) == 2
    assert "no batch manifest" in capsys.readouterr().err


def test_ray_missing_names_the_dist_extra(monkeypatch, tmp_path):
    from sym3d.app.batch.ray_backend import RayPool, import_ray
    from sym3d.app.batch.tasks import JobSpec

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MissingDependencyError) as info:
        import_ray()
    assert info.value.extra == "dist" and "sym3d[dist]" in str(info.value)
    with pytest.raises(MissingDependencyError):
        RayPool(JobSpec()).start()


def test_bench_rows_and_table():
    from sym3d_extras.benchmarks.batch import _row

    items = (
        ItemRecord(key="a", status="done", work_seconds=2.0, roundtrip=2.1, worker="w"),
        ItemRecord(key="b", status="done", work_seconds=4.0, roundtrip=4.3, worker="w"),
    )
    row = _row(
        "local", 2, 1, 2, BatchReport(counts={}, seconds=10.0, startup_seconds=4.0, items=items)
    )
    assert row.done == 2 and row.work_mean == 3.0 and row.overhead_ms == pytest.approx(200.0)
    assert row.per_minute == pytest.approx(12.0) and row.steady_per_minute == pytest.approx(20.0)
    ray_row = BenchRow(
        backend="ray (local)",
        workers=2,
        threads=1,
        images=2,
        done=2,
        wall=16.0,
        startup=9.0,
        work_mean=3.0,
        overhead_ms=260.0,
    )
    console = Console(record=True, width=200)
    print_bench(
        [row, ray_row],
        {
            "cores": 2,
            "load_before": (1.0, 2.0, 3.0),
            "load_after": (1.5, 2, 3),
            "command": "sym3d bench batch",
        },
        console,
    )
    text = console.export_text()
    assert (
        "load average 1.00 2.00 3.00" in text
        and "dispatch overhead +60 ms/image" in text
        and "steady wall time +500 ms/image" in text
    )
