"""SIGINT on `sym3d batch` (a real subprocess): consistent manifest, a clear message, and a re-run resumes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

from sym3d.cli import main
from tests.extras.batch.conftest import FAST_CLI, copy_inputs, read_events, read_rows


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigint_keeps_the_manifest_consistent_and_a_rerun_resumes(symheads_images, tmp_path):
    inputs = copy_inputs(symheads_images, tmp_path / "in", heads=4)
    out = tmp_path / "out"
    args = ["batch", str(inputs), "--out", str(out), "--generator", "symheads", "--cameras", str(inputs / "dataset.json"), *FAST_CLI,
            "--export", "views", "--progress", "plain", "--device", "cpu", "--workers", "1", "--threads", "1"]
    log = (tmp_path / "stderr.txt").open("w")
    proc = subprocess.Popen([sys.executable, "-c", "from sym3d.cli import main; main()", *args], stderr=log, stdout=subprocess.DEVNULL)
    manifest = out / "manifest.sqlite"
    try:
        deadline = time.monotonic() + 120
        # interrupt once an image is done and the next one has just started (it has seconds to go)
        while time.monotonic() < deadline:
            try:
                rows = read_rows(manifest) if manifest.exists() else {}
            except sqlite3.Error:  # created, schema not written yet
                rows = {}
            statuses = Counter(r["status"] for r in rows.values())
            fresh = [r for r in rows.values() if r["status"] == "running" and time.time() - r["started_at"] < 0.3]
            if statuses["done"] >= 1 and fresh:
                break
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
            time.sleep(0.05)
        else:
            raise AssertionError("the batch never reached a done image with another one running")
        interrupted = next(k for k, r in rows.items() if r["status"] == "running")
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    stderr = (tmp_path / "stderr.txt").read_text()
    assert code == 130, stderr
    assert "Re-run the same command to resume" in stderr

    rows = read_rows(manifest)
    assert not [k for k, r in rows.items() if r["status"] == "running"]
    assert rows[interrupted]["status"] == "pending" and rows[interrupted]["attempts"] == 0  # an interrupt is not a failed attempt
    for key, r in rows.items():  # done <=> a finished folder
        assert (r["status"] == "done") == (out / key).is_dir(), key
    events = read_events(manifest)
    assert events[-1]["event"] == "run_interrupted"
    workers = {int(e["worker"].rsplit(":", 1)[1]) for e in events if e["event"] == "started"}
    assert not [pid for pid in workers if _alive(pid)], "worker processes outlived the interrupted batch"
    finished_before = {k for k, r in rows.items() if r["status"] == "done"}

    # the same command again finishes the batch; images finished before the interrupt are not redone
    assert main(args) == 0
    rows = read_rows(manifest)
    assert all(r["status"] == "done" for r in rows.values()) and len(rows) == 4
    events = read_events(manifest)
    assert Counter(e["key"] for e in events if e["event"] == "done") == {f"head{i}": 1 for i in range(4)}
    for key in finished_before:
        assert sum(1 for e in events if e["event"] == "started" and e["key"] == key) == 1
    assert not list(out.glob("*.partial"))
