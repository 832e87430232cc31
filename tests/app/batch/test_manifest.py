"""The SQLite manifest: schema, transitions, reconciling with the disk (no workers, no torch)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from sym3d.app.batch.manifest import Manifest
from sym3d.errors import UserInputError


def _finished(folder):
    return 1.5, {"reconstruction": {"psnr": 20.0}}


@pytest.fixture
def manifest(tmp_path):
    with Manifest(tmp_path / "out" / "manifest.sqlite") as m:
        yield m


def test_schema_is_wal_with_one_row_per_image(manifest, tmp_path):
    out = tmp_path / "out"
    report = manifest.sync({"a": "/in/a.png", "b": "/in/b.png"}, out, max_attempts=3)
    assert report.added == ("a", "b")
    assert manifest._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [r.status for r in manifest.rows()] == ["pending", "pending"]
    cols = {r[1] for r in manifest._db.execute("PRAGMA table_info(images)")}
    assert {
        "key",
        "path",
        "status",
        "attempts",
        "error",
        "seconds",
        "worker",
        "metrics",
        "started_at",
        "finished_at",
    } <= cols
    with pytest.raises(sqlite3.IntegrityError):  # statuses are constrained
        manifest._db.execute("UPDATE images SET status = 'bogus' WHERE key = 'a'")


def test_transitions_and_events(manifest, tmp_path):
    manifest.sync({"a": "a.png", "b": "b.png", "c": "c.png"}, tmp_path / "out", max_attempts=2)
    manifest.mark_running("a", "host:1", 1)
    manifest.mark_done("a", seconds=2.0, metrics={"x": {"y": 1}}, worker="host:1", notes=["n"])
    manifest.mark_running("b", "host:2", 1)
    assert manifest.mark_lost("b", reason="killed", worker="host:2", requeue=True) == 1
    manifest.mark_running("c", "host:1", 1)
    manifest.mark_failed(
        "c", error="bad file", error_type="ImageLoadError", worker="host:1", seconds=0.1
    )
    a, b, c = manifest.rows()
    assert (a.status, a.attempts, a.seconds, a.metrics, a.notes) == (
        "done",
        1,
        2.0,
        {"x": {"y": 1}},
        ("n",),
    )
    assert (b.status, b.attempts, b.worker) == ("pending", 1, None)
    assert (c.status, c.attempts, c.error, c.error_type) == (
        "failed",
        1,
        "bad file",
        "ImageLoadError",
    )
    assert [e["event"] for e in manifest.events("b")] == ["added", "started", "lost", "requeued"]
    # a second loss at the limit fails the image with the reason
    manifest.mark_running("b", "host:3", 2)
    assert manifest.mark_lost("b", reason="killed again", worker="host:3", requeue=False) == 2
    b = manifest.row("b")
    assert b.status == "failed" and b.error_type == "WorkerLost" and "killed again" in b.error
    assert manifest.counts() == {"pending": 0, "running": 0, "done": 1, "failed": 2}


def test_sync_reconciles_with_the_disk(manifest, tmp_path):
    out = tmp_path / "out"
    images = {
        k: f"{k}.png"
        for k in ("done_on_disk", "crashed", "failed_once", "failed_out", "deleted", "gone")
    }
    manifest.sync(images, out, max_attempts=2)
    (out / "done_on_disk").mkdir()  # finished (renamed) but never recorded
    manifest.mark_running("crashed", "h:1", 1)  # the previous coordinator died
    manifest.mark_failed("failed_once", error="e", error_type="X", worker="h:1")
    for _ in range(2):
        manifest.mark_failed("failed_out", error="e", error_type="X", worker="h:1")
    manifest.mark_done("deleted", seconds=1.0, metrics={}, worker="h:1")  # its folder is not there
    (out / "deleted.partial").mkdir()
    del images["gone"]
    report = manifest.sync(images, out, max_attempts=2, finished=_finished)
    assert report.found_done == ("done_on_disk",)
    assert report.reset_running == ("crashed",)
    assert set(report.retried) == {"failed_once", "deleted"}
    assert report.exhausted == ("failed_out",)
    assert report.removed == ("gone",)
    status = {r.key: r.status for r in manifest.rows()}
    assert status == {
        "done_on_disk": "done",
        "crashed": "pending",
        "failed_once": "pending",
        "failed_out": "failed",
        "deleted": "pending",
    }
    assert manifest.row("done_on_disk").metrics == {"reconstruction": {"psnr": 20.0}}
    assert manifest.row("crashed").attempts == 0  # a coordinator crash is not the image's attempt
    # --retry-failed gives exhausted images a fresh start
    report = manifest.sync(images, out, max_attempts=2, retry_failed=True)
    assert report.retried == ("failed_out",) and manifest.row("failed_out").attempts == 0


def test_interrupted_images_go_back_to_pending_without_an_attempt(manifest, tmp_path):
    manifest.sync({"a": "a.png"}, tmp_path / "out", max_attempts=3)
    manifest.mark_running("a", "h:1", 1)
    manifest.mark_pending(["a"], reason="interrupted")
    row = manifest.row("a")
    assert (row.status, row.attempts) == ("pending", 0)
    assert manifest.events("a")[-1]["detail"] == "interrupted"


def test_failed_write_is_rolled_back(manifest, tmp_path):
    manifest.sync({"a": "a.png"}, tmp_path / "out", max_attempts=3)
    with pytest.raises(RuntimeError), manifest._tx() as db:
        db.execute("UPDATE images SET status = 'done' WHERE key = 'a'")
        raise RuntimeError("crash in the middle of a transaction")
    assert manifest.row("a").status == "pending"


def test_readonly_needs_an_existing_manifest(tmp_path):
    with pytest.raises(UserInputError, match="no batch manifest"):
        Manifest(tmp_path / "manifest.sqlite", readonly=True)
    (tmp_path / "x.sqlite").write_bytes(b"not a database at all, just some bytes" * 50)
    with pytest.raises(UserInputError, match="not a sym3d batch manifest"):
        Manifest(tmp_path / "x.sqlite")


def test_meta_round_trip(manifest):
    manifest.set_meta({"settings": {"a": [1, 2]}, "input_dir": "/in"})
    assert (
        json.loads(manifest.meta("settings")) == {"a": [1, 2]}
        and manifest.meta("input_dir") == "/in"
    )


def test_full_disk_is_one_clear_error_and_the_write_is_rolled_back(manifest, tmp_path):
    from sym3d.errors import OutputWriteError

    manifest.sync({"a": "a.png"}, tmp_path / "out", max_attempts=3)
    with pytest.raises(
        OutputWriteError,
        match=r"manifest.sqlite: the batch manifest was not updated: the disk is full",
    ) as info:
        with manifest._tx() as db:
            db.execute("UPDATE images SET status = 'done' WHERE key = 'a'")
            raise sqlite3.OperationalError("database or disk is full")
    assert "run the same command again" in str(info.value)
    assert manifest.row("a").status == "pending"
    manifest.mark_running("a", "h:1", 1)  # the connection is usable again once space is back
    assert manifest.row("a").status == "running"
