"""SIGKILL of the `sym3d batch` coordinator (a real subprocess): its workers die with it at once.

Before, the workers of a killed coordinator ran on (about 46 s with real settings) and renamed
result folders into place outside the lock of the next run.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.app.batch.conftest import copy_inputs, read_rows

# so many steps that the image cannot finish during the test: only a dead worker stops it
SLOW = [
    "--set",
    "latent.steps=100000",
    "--set",
    "tune.steps=2",
    "--set",
    "perceptual=mse",
    "--set",
    "latent.mean_samples=16",
]


def _gone(pid: int) -> bool:
    """The process has exited (a zombie waiting to be reaped counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def _wait_until(condition, timeout: float, poll: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll)
    return condition()


def test_workers_die_with_a_killed_coordinator_and_commit_nothing(symheads_images, tmp_path):
    inputs = copy_inputs(symheads_images, tmp_path / "in", heads=1)
    out = tmp_path / "out"
    args = [
        "batch",
        str(inputs),
        "--out",
        str(out),
        "--generator",
        "symheads",
        "--cameras",
        str(inputs / "dataset.json"),
        *SLOW,
        "--export",
        "metrics",
        "--progress",
        "off",
        "--device",
        "cpu",
        "--workers",
        "1",
        "--threads",
        "1",
    ]
    log = (tmp_path / "stderr.txt").open("w")
    coordinator = subprocess.Popen(
        [sys.executable, "-c", "from sym3d.cli import main; main()", *args],
        stderr=log,
        stdout=subprocess.DEVNULL,
    )
    manifest = out / "manifest.sqlite"
    worker_pid = None
    try:

        def running() -> bool:
            nonlocal worker_pid
            assert coordinator.poll() is None, (tmp_path / "stderr.txt").read_text()
            try:
                rows = read_rows(manifest) if manifest.exists() else {}
            except sqlite3.Error:  # created, schema not written yet
                return False
            busy = [r for r in rows.values() if r["status"] == "running" and r["worker"]]
            if busy:
                worker_pid = int(busy[0]["worker"].rsplit(":", 1)[1])
            return worker_pid is not None

        assert _wait_until(running, 600), "the worker never started the image"
        coordinator.send_signal(signal.SIGKILL)
        coordinator.wait(timeout=30)
        assert _wait_until(lambda: _gone(worker_pid), 15), (
            "the worker outlived its coordinator by more than 15 s"
        )
    finally:
        if coordinator.poll() is None:
            coordinator.kill()
        if worker_pid is not None and not _gone(worker_pid):
            os.kill(worker_pid, signal.SIGKILL)
        log.close()
    # the worker is gone: nothing can be renamed any more, and nothing was
    assert not (out / "head0").exists()
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".") and p.is_dir()) == []


def test_worker_never_commits_once_its_coordinator_is_gone(symheads_images, tmp_path):
    """The check right before the final rename (for the moment before the worker is killed)."""
    from sym3d.app.batch.tasks import Placement, Task
    from sym3d.app.batch.worker import Worker
    from sym3d.app.outdir import work_dir
    from tests.app.batch.conftest import fast_spec

    not_our_parent = (
        os.getpid()
    )  # this process is not the worker's parent: as if the coordinator died
    worker = Worker(fast_spec(export=()), Placement(), parent_pid=not_our_parent)
    out = tmp_path / "out" / "head0"
    camera = json.loads((symheads_images / "dataset.json").read_text())["labels"][0][1]
    result = worker.run(
        Task(key="head0", image=str(symheads_images / "head0.png"), out_dir=str(out), camera=camera)
    )
    assert not result.ok and "coordinator is gone" in result.error
    assert not out.exists() and (work_dir(out) / "run.json").is_file()
