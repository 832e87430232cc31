"""The coordinator's scheduling with a scripted in-process backend: retries, limits, interrupts, resume."""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from pathlib import Path

import pytest

from sym3d.app.batch import (
    BatchSettings,
    JobSpec,
    Manifest,
    TaskResult,
    discover_images,
    run_batch,
)
from sym3d.app.batch.backend import Backend
from sym3d.app.batch.runner import _exclusive, discover_inputs
from sym3d.app.batch.tasks import Completion
from sym3d.errors import UserInputError


class ScriptedBackend:
    """Runs nothing: each image's attempts follow a script (``ok``, ``fail``, ``lost``, ``lost-after-rename``, ``hang``)."""

    name = "scripted"

    def __init__(self, script=None, capacity=2, on_submit=None):
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self._capacity, self.on_submit = capacity, on_submit
        self.inflight, self.submitted = [], []
        self.started = self.closed = False

    @property
    def capacity(self):
        return self._capacity

    def describe(self):
        return {"backend": self.name, "workers": self._capacity, "threads": 1, "device": "cpu"}

    def start(self):
        self.started = True

    def workers(self):
        return [f"fake:{i}" for i in range(self._capacity)]

    def idle(self):
        return self._capacity - len(self.inflight)

    def submit(self, task):
        worker = f"fake:{len(self.submitted)}"
        self.inflight.append((task, worker))
        self.submitted.append(task)
        if self.on_submit:
            self.on_submit(task)
        return worker

    def poll(self, timeout):
        for i, (task, worker) in enumerate(self.inflight):
            steps = self.script.get(task.key) or ["ok"]
            if steps[0] == "hang":
                continue
            step = steps.pop(0) if len(steps) > 1 else steps[0]
            del self.inflight[i]
            out = Path(task.out_dir)
            if step in ("ok", "lost-after-rename"):
                out.mkdir(parents=True)
                (out / "run.json").write_text(json.dumps({"seconds": 1.0}))
                (out / "metrics.json").write_text(json.dumps({"reconstruction": {"psnr": 30.0}}))
            if step.startswith("lost"):
                return [
                    Completion(
                        task=task,
                        lost="worker process fake exited with code -9 (signal 9)",
                        worker=worker,
                    )
                ]
            if step == "ok":
                return [
                    Completion(
                        task=task,
                        result=TaskResult(
                            key=task.key,
                            ok=True,
                            seconds=1.0,
                            metrics={"reconstruction": {"psnr": 30.0}},
                            worker=worker,
                        ),
                        worker=worker,
                    )
                ]
            return [
                Completion(
                    task=task,
                    result=TaskResult(
                        key=task.key,
                        ok=False,
                        error="RuntimeError: boom",
                        error_type="RuntimeError",
                        worker=worker,
                    ),
                    worker=worker,
                )
            ]
        return []

    def cancel(self):
        tasks = [t for t, _ in self.inflight]
        self.inflight = []
        return tasks

    def close(self):
        self.closed = True


def _settings(tmp_path, names=("a", "b", "c"), **changes):
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    for n in names:
        (folder / f"{n}.png").write_bytes(b"not read by the scripted backend")
    options = {
        "input_dir": folder,
        "out_dir": tmp_path / "out",
        "spec": JobSpec(generator="symheads", pose="none"),
        "max_attempts": 3,
    }
    options.update(changes)
    return BatchSettings(**options)


def _events(settings):
    with Manifest(settings.out_dir / "manifest.sqlite") as m:
        return m.events(), {r.key: r for r in m.rows()}


def test_scripted_backend_satisfies_the_protocol():
    assert isinstance(ScriptedBackend(), Backend)


def test_lost_worker_image_is_retried_at_once_and_counted(tmp_path):
    settings = _settings(tmp_path)
    backend = ScriptedBackend({"b": ["lost", "ok"]})
    report = run_batch(settings, backend=backend)
    assert report.counts["done"] == 3 and backend.started and backend.closed
    assert [t.key for t in backend.submitted].count("b") == 2
    assert [t.attempt for t in backend.submitted if t.key == "b"] == [1, 2]
    events, rows = _events(settings)
    assert rows["b"].attempts == 2 and rows["a"].attempts == 1
    assert [e["event"] for e in events if e["key"] == "b"] == [
        "added",
        "started",
        "lost",
        "requeued",
        "started",
        "done",
    ]
    assert [i.status for i in report.items if i.key == "b"] == ["requeued", "done"]


def test_worker_lost_every_time_fails_at_the_limit(tmp_path):
    settings = _settings(tmp_path, max_attempts=2)
    run_batch(settings, backend=ScriptedBackend({"a": ["lost", "lost", "ok"]}))
    _, rows = _events(settings)
    assert (
        rows["a"].status == "failed"
        and rows["a"].attempts == 2
        and rows["a"].error_type == "WorkerLost"
    )
    assert "signal 9" in rows["a"].error


def test_result_renamed_before_the_worker_died_is_done_not_redone(tmp_path):
    settings = _settings(tmp_path)
    backend = ScriptedBackend({"a": ["lost-after-rename"]})
    run_batch(settings, backend=backend)
    _, rows = _events(settings)
    assert rows["a"].status == "done" and rows["a"].seconds == 1.0
    assert [t.key for t in backend.submitted].count("a") == 1


def test_failure_is_recorded_then_retried_by_a_rerun_up_to_the_limit(tmp_path):
    settings = _settings(tmp_path, max_attempts=2)
    run_batch(settings, backend=ScriptedBackend({"c": ["fail", "fail", "fail"]}))
    _, rows = _events(settings)
    assert (rows["c"].status, rows["c"].attempts, rows["c"].error) == (
        "failed",
        1,
        "RuntimeError: boom",
    )
    backend = ScriptedBackend({"c": ["fail"]})
    run_batch(settings, backend=backend)
    assert [t.key for t in backend.submitted] == ["c"]  # finished images are skipped
    _, rows = _events(settings)
    assert rows["c"].attempts == 2
    backend = ScriptedBackend()
    report = run_batch(settings, backend=backend)
    assert not backend.started and report.counts == {
        "pending": 0,
        "running": 0,
        "done": 2,
        "failed": 1,
    }
    assert any("--max-attempts 2" in n for n in report.notes)
    report = run_batch(attrs_evolve(settings, retry_failed=True), backend=ScriptedBackend())
    assert report.counts["done"] == 3


def attrs_evolve(settings, **changes):
    import attrs

    return attrs.evolve(settings, **changes)


def test_stop_cancels_in_flight_images_back_to_pending_and_a_rerun_resumes(tmp_path):
    stop = threading.Event()
    settings = _settings(tmp_path, names=("a", "b", "c", "d"))

    def on_submit(task):
        if task.key == "c":
            stop.set()  # like SIGINT while c and d... are in flight

    backend = ScriptedBackend({"c": ["hang"]}, on_submit=on_submit)
    report = run_batch(settings, backend=backend, stop=stop)
    assert report.interrupted and backend.closed
    events, rows = _events(settings)
    assert rows["c"].status == "pending" and rows["c"].attempts == 0
    assert not [r for r in rows.values() if r.status == "running"]
    assert {k for k, r in rows.items() if r.status == "done"} <= {"a", "b"}
    assert events[-1]["event"] == "run_interrupted"
    report = run_batch(settings, backend=ScriptedBackend())
    events, rows = _events(settings)
    assert all(r.status == "done" for r in rows.values())
    assert Counter(e["key"] for e in events if e["event"] == "done") == {
        "a": 1,
        "b": 1,
        "c": 1,
        "d": 1,
    }


def test_images_without_a_camera_label_fail_without_a_worker(tmp_path):
    settings = _settings(tmp_path, names=("a", "b"))
    from sym3d.camera import look_at

    label = look_at(0.0, 0.0).tolist()  # a usable camera: an all-zero label is refused
    (tmp_path / "cams.json").write_text(json.dumps({"labels": [["a.png", label]]}))
    backend = ScriptedBackend()
    run_batch(attrs_evolve(settings, cameras=tmp_path / "cams.json"), backend=backend)
    assert [(t.key, len(t.camera)) for t in backend.submitted] == [("a", 25)]
    _, rows = _events(settings)
    assert rows["b"].status == "failed" and "no camera label for 'b.png'" in rows["b"].error


def test_changed_settings_are_noted(tmp_path):
    settings = _settings(tmp_path, names=("a",))
    run_batch(settings, backend=ScriptedBackend())
    (tmp_path / "in" / "z.png").write_bytes(b"x")
    report = run_batch(
        attrs_evolve(
            settings, spec=JobSpec(generator="symheads", pose="none", overrides=("tune.steps=5",))
        ),
        backend=ScriptedBackend(),
    )
    assert any("settings differ" in n for n in report.notes) and report.counts["done"] == 2


def test_one_coordinator_per_output_folder(tmp_path):
    with _exclusive(tmp_path), pytest.raises(UserInputError, match="another `sym3d batch`"):
        with _exclusive(tmp_path):
            pass


def test_discover_images(tmp_path):
    for name in ("b.PNG", "a.jpg", ".hidden.png", "notes.txt", "dataset.json"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    assert list(discover_images(tmp_path)) == ["a", "b"]
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(UserInputError, match="a.jpg / a.png"):
        discover_images(tmp_path)
    with pytest.raises(UserInputError, match="no such folder"):
        discover_images(tmp_path / "missing")
    with pytest.raises(UserInputError, match="no images"):
        discover_images(tmp_path / "sub.png")


def test_result_names_that_cannot_be_folders_are_refused_per_file(tmp_path):
    """A name that is not UTF-8 once failed the whole batch (UnicodeEncodeError in the manifest)."""
    settings = _settings(tmp_path, names=("a", "a.partial"))
    (settings.input_dir / os.fsdecode(b"bad\xff.png")).write_bytes(b"x")
    (settings.input_dir / "manifest.sqlite.png").write_bytes(b"x")
    images, refused = discover_inputs(settings.input_dir)
    assert sorted(images) == ["a", "a.partial"]
    assert len(refused) == 2
    assert any("bad\\xff.png" in r and "not valid UTF-8" in r for r in refused)
    assert any("manifest.sqlite.png" in r and "reserved" in r for r in refused)
    report = run_batch(settings, backend=ScriptedBackend())
    assert report.counts["done"] == 2 and report.refused == tuple(refused)
    assert sum("skipped" in n for n in report.notes) == 2
    _, rows = _events(settings)
    assert set(rows) == {"a", "a.partial"}


def test_full_disk_stops_the_run_clearly_and_a_rerun_continues(tmp_path, monkeypatch):
    import sqlite3

    from sym3d.errors import OutputWriteError

    settings = _settings(tmp_path)
    real_mark_done = Manifest.mark_done

    def full(self, key, **kw):
        if key == "b":
            with self._tx() as db:
                db.execute("UPDATE images SET status = 'done' WHERE key = ?", (key,))
                raise sqlite3.OperationalError("database or disk is full")
        return real_mark_done(self, key, **kw)

    monkeypatch.setattr(Manifest, "mark_done", full)
    backend = ScriptedBackend(capacity=1)
    with pytest.raises(OutputWriteError, match="the disk is full"):
        run_batch(settings, backend=backend)
    assert backend.closed
    _, rows = _events(settings)
    assert rows["a"].status == "done" and rows["b"].status == "running"  # the last committed state
    assert (settings.out_dir / "b").is_dir()  # the worker had finished it

    monkeypatch.setattr(Manifest, "mark_done", real_mark_done)
    backend = ScriptedBackend(capacity=1)
    report = run_batch(settings, backend=backend)
    assert report.counts["done"] == 3 and report.sync.found_done == ("b",)
    assert [t.key for t in backend.submitted] == ["c"]
