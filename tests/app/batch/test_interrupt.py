"""SIGINT on `sym3d batch` (a real subprocess): consistent manifest, a clear message, and a re-run resumes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from sym3d.cli import main
from tests.app.batch.conftest import FAST_CLI, copy_inputs, read_events, read_rows


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _proc_status(pid: int) -> dict[str, str]:
    """``/proc/<pid>/status`` as a dict ({} once the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def _is_stopped(pid: int) -> bool:
    return _proc_status(pid).get("State", "").startswith("T")


def _sigterm_pending(pid: int) -> bool:
    """Whether SIGTERM waits on ``pid`` (a stopped process keeps it pending until SIGCONT)."""
    status = _proc_status(pid)
    if not status:
        return True  # gone
    bit = 1 << (signal.SIGTERM - 1)
    return any(int(status.get(field, "0"), 16) & bit for field in ("ShdPnd", "SigPnd"))


def _wait_for(
    condition, what: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0
) -> None:
    """Poll ``condition()`` until true (the timeout only bounds a hang; it picks no moment)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the batch ended while waiting for {what}: {log.read_text()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _worker_pid(manifest: Path, key: str) -> int:
    started = [e for e in read_events(manifest) if e["event"] == "started" and e["key"] == key]
    return int(started[-1]["worker"].rsplit(":", 1)[1])


def _rows(manifest: Path) -> dict:
    try:
        return read_rows(manifest) if manifest.exists() else {}
    except sqlite3.Error:  # created, schema not written yet
        return {}


def test_sigint_keeps_the_manifest_consistent_and_a_rerun_resumes(symheads_images, tmp_path):
    """SIGINT while an image is in flight, the moment chosen by state, not by the clock.

    Once an image is done, the test watches for the next image to *start* (a row turning
    ``running`` between two looks at the manifest), freezes that image's worker with SIGSTOP
    (so it cannot finish the image meanwhile), checks the row is still ``running``, sends SIGINT
    to the batch, and lets the worker go on (SIGCONT) once the batch has asked it to terminate
    (SIGTERM pending on it).
    """
    inputs = copy_inputs(symheads_images, tmp_path / "in", heads=4)
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
        *FAST_CLI,
        "--export",
        "views",
        "--progress",
        "plain",
        "--device",
        "cpu",
        "--workers",
        "1",
        "--threads",
        "1",
    ]
    log_path = tmp_path / "stderr.txt"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from sym3d.cli import main; main()", *args],
        stderr=log,
        stdout=subprocess.DEVNULL,
    )
    manifest = out / "manifest.sqlite"
    frozen: int | None = None
    try:
        interrupted = None
        before: set[str] | None = None
        while interrupted is None:
            rows = _rows(manifest)
            running = {k for k, r in rows.items() if r["status"] == "running"}
            done = sum(r["status"] == "done" for r in rows.values())
            started = running - before if before is not None and done >= 1 else set()
            for key in started:
                frozen = _worker_pid(manifest, key)
                os.kill(frozen, signal.SIGSTOP)
                _wait_for(lambda pid=frozen: _is_stopped(pid), "the worker to stop", proc, log_path)
                if read_rows(manifest)[key]["status"] == "running":  # frozen in the middle of it
                    interrupted = key
                    break
                os.kill(frozen, signal.SIGCONT)  # it finished first: wait for the next one
                frozen = None
            before = running
            if interrupted is None:
                assert proc.poll() is None, log_path.read_text()
                assert done < 4, "the batch finished before an image could be interrupted"
                time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _wait_for(
            lambda: _sigterm_pending(frozen),
            "the batch to terminate the busy worker",
            proc,
            log_path,
        )
        os.kill(frozen, signal.SIGCONT)
        frozen = None
        code = proc.wait(timeout=60)
    finally:
        if frozen is not None and _alive(frozen):
            os.kill(frozen, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
        log.close()
    stderr = (tmp_path / "stderr.txt").read_text()
    assert code == 130, stderr
    assert "Re-run the same command to resume" in stderr

    rows = read_rows(manifest)
    assert not [k for k, r in rows.items() if r["status"] == "running"]
    assert (
        rows[interrupted]["status"] == "pending" and rows[interrupted]["attempts"] == 0
    )  # an interrupt is not a failed attempt
    for key, r in rows.items():  # done <=> a finished folder
        assert (r["status"] == "done") == (out / key).is_dir(), key
    events = read_events(manifest)
    assert events[-1]["event"] == "run_interrupted"
    workers = {int(e["worker"].rsplit(":", 1)[1]) for e in events if e["event"] == "started"}
    assert not [pid for pid in workers if _alive(pid)], (
        "worker processes outlived the interrupted batch"
    )
    finished_before = {k for k, r in rows.items() if r["status"] == "done"}

    # the same command again finishes the batch; images finished before the interrupt are not redone
    assert main(args) == 0
    rows = read_rows(manifest)
    assert all(r["status"] == "done" for r in rows.values()) and len(rows) == 4
    events = read_events(manifest)
    assert Counter(e["key"] for e in events if e["event"] == "done") == {
        f"head{i}": 1 for i in range(4)
    }
    for key in finished_before:
        assert sum(1 for e in events if e["event"] == "started" and e["key"] == key) == 1
    assert not list(out.glob("*.partial"))
