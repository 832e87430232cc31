"""The result folders of `process_photo` / `sym3d invert`: names, locks, overwrite, cleanup, fsync.

Every inversion here uses the tiny analytic generator with one step per stage and no exports, so
each takes a fraction of a second; the folder logic is what is tested.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sym3d.app.outdir import MAX_KEY_BYTES, check_key, work_dir
from sym3d.app.pipeline import process_photo
from sym3d.camera import look_at
from sym3d.cli import main
from sym3d.errors import OutputWriteError, ResultBusyError, ResultNameError, Sym3DError
from sym3d.image import save_image

QUICK = (
    "latent.steps=1",
    "tune.steps=1",
    "tune.aux_every=1",
    "tune.num_views=1",
    "perceptual=mse",
    "latent.mean_samples=8",
)
CLI_QUICK = ["--generator", "tiny", "--export", "views", "--progress", "off", "--video-frames", "2"]
CLI_QUICK += [a for o in QUICK for a in ("--set", o)]


@pytest.fixture(scope="module")
def tiny_gen():
    from sym3d.testing import TinyGenerator3D

    return TinyGenerator3D()


@pytest.fixture(scope="module")
def photo(tmp_path_factory, tiny_gen) -> tuple[Path, torch.Tensor]:
    """A 32 px render of the tiny generator and its camera label."""
    from sym3d.image import from_model_range

    cam = look_at(0.2, 0.0)[None]
    with torch.no_grad():
        ws = tiny_gen.mean_latent(cam)
        img = from_model_range(tiny_gen.render(ws, cam[:, None]).image[:, 0], clamp=True)
    path = tmp_path_factory.mktemp("photo") / "face.png"
    save_image(img, path)
    return path, cam[0]


def _invert(photo, out: Path, tiny_gen, **kw):
    path, cam = photo
    kw.setdefault("export", ())
    return process_photo(
        path, out, generator=tiny_gen, camera=cam, overrides=QUICK, device="cpu", **kw
    )


def _fake_result(folder: Path, marker: str) -> None:
    """A finished result of another image (only its marker file matters)."""
    folder.mkdir(parents=True)
    (folder / "marker.txt").write_text(marker)


def _cameras(folder: Path, names, cam) -> Path:
    path = folder / "dataset.json"
    path.write_text(json.dumps({"labels": [[n, cam.reshape(-1).tolist()] for n in names]}))
    return path


# -- item 1: a result folder is always a direct child with a real name ----------------------


@pytest.mark.parametrize(
    "key",
    ["", ".", "..", ".hidden", "a/b", "manifest.sqlite", "x" * (MAX_KEY_BYTES + 1), "bad\udcff"],
)
def test_keys_that_cannot_name_a_result_are_refused(key):
    with pytest.raises(ResultNameError, match="Hint: rename the image"):
        check_key(key, "img.png")


def test_longest_key_still_fits_its_trash_name():
    check_key("x" * MAX_KEY_BYTES)
    assert len("x" * MAX_KEY_BYTES + ".old-0123456789ab") == 255


def test_cli_dot_stem_is_refused_and_the_output_folder_is_untouched(photo, tmp_path, capsys):
    """`sym3d invert ..png -o OUT --overwrite` once replaced OUT itself with this one result."""
    out = tmp_path / "OUT"
    _fake_result(out / "other", "keep me")
    dots = tmp_path / "..png"
    dots.write_bytes(photo[0].read_bytes())
    cams = _cameras(tmp_path, ["..png"], photo[1])
    code = main(
        ["invert", str(dots), "-o", str(out), "--overwrite", "--cameras", str(cams), *CLI_QUICK]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert "the result folder name would be '.'" in err and "rename the image" in err
    assert (out / "other" / "marker.txt").read_text() == "keep me"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["other"]


def test_parent_folder_as_a_result_is_refused(photo, tmp_path, tiny_gen):
    with pytest.raises(ResultNameError):
        _invert(photo, tmp_path / "OUT" / "..", tiny_gen)
    assert not (tmp_path / "OUT" / ".work" / "..").exists()


# -- item 2: --overwrite deletes only what this run moved aside -----------------------------


def test_overwrite_keeps_a_finished_result_named_like_the_old_trash(photo, tmp_path, tiny_gen):
    out = tmp_path / "OUT"
    _fake_result(out / "face", "old result of face.png")
    _fake_result(out / "face.old", "the result of face.old.png")
    _invert(photo, out / "face", tiny_gen, overwrite=True)
    assert (out / "face.old" / "marker.txt").read_text() == "the result of face.old.png"
    assert (out / "face" / "latent.pt").is_file() and not (out / "face" / "marker.txt").exists()
    assert not [p for p in (out / ".work").iterdir() if ".old-" in p.name], (
        "the moved-aside result was deleted"
    )


# -- item 3: a work folder never collides with a result --------------------------------------


def test_work_folder_is_not_the_result_of_an_image_named_like_it(photo, tmp_path, tiny_gen):
    """`a.partial` is the finished result of `a.partial.png`; inverting `a` must not adopt it."""
    out = tmp_path / "OUT"
    _fake_result(out / "face.partial", "the result of face.partial.png")
    _invert(photo, out / "face", tiny_gen)
    assert (out / "face.partial" / "marker.txt").read_text() == "the result of face.partial.png"
    assert (out / "face" / "latent.pt").is_file() and not (out / "face" / "marker.txt").exists()
    assert not work_dir(out / "face").exists()


# -- item 4: one writer per result, complete before the swap ---------------------------------


def _hold_lock(path: Path) -> subprocess.Popen:
    """Another process holding the flock on ``path`` until its stdin closes."""
    code = (
        "import fcntl, os, sys\n"
        f"fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_of_one_result_is_refused_while_the_first_holds_it(
    photo, tmp_path, tiny_gen
):
    out = tmp_path / "OUT"
    holder = _hold_lock(out / ".work" / "face.lock")
    try:
        with pytest.raises(ResultBusyError, match="another sym3d run"):
            _invert(photo, out / "face", tiny_gen)
        assert not (out / "face").exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    _invert(photo, out / "face", tiny_gen)  # the lock is free again (and its file reused)
    assert (out / "face" / "latent.pt").is_file()


def test_batch_worker_and_invert_share_the_lock(photo, tmp_path):
    """A batch worker on a result that `sym3d invert` is writing fails that image, touching nothing."""
    from sym3d.app.batch.tasks import JobSpec, Placement, Task
    from sym3d.app.batch.worker import Worker

    out = tmp_path / "OUT"
    worker = Worker(JobSpec(generator="tiny", pose=None, overrides=QUICK, export=()), Placement())
    task = Task(
        key="face", image=str(photo[0]), out_dir=str(out / "face"), camera=photo[1].tolist()
    )
    holder = _hold_lock(out / ".work" / "face.lock")
    try:
        result = worker.run(task)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert not result.ok and result.error_type == "ResultBusyError" and result.user_error
    assert not (out / "face").exists()


def test_incomplete_result_is_not_renamed_into_place(photo, tmp_path, tiny_gen):
    out = tmp_path / "OUT"

    def meddle(stage, done, total):  # another program removes a file while the exports run
        (work_dir(out / "face") / "pose.json").unlink(missing_ok=True)

    with pytest.raises(OutputWriteError, match=r"incomplete .*pose\.json"):
        _invert(
            photo,
            out / "face",
            tiny_gen,
            export=("views",),
            export_options={"lpips": False},
            progress=meddle,
        )
    assert not (out / "face").exists()


# -- issue 11 item 4: a failed image leaves nothing behind -----------------------------------


def test_image_failing_before_the_inversion_leaves_no_work_folder(tmp_path, tiny_gen):
    out = tmp_path / "OUT"
    missing = tmp_path / "missing.png"
    with pytest.raises(Sym3DError):
        process_photo(
            missing,
            out / "missing",
            generator=tiny_gen,
            camera=look_at(0.0, 0.0),
            overrides=QUICK,
            export=(),
        )
    visible = [p.name for p in out.iterdir() if p.name != ".work"]
    assert visible == [] and not work_dir(out / "missing").exists()
    assert sorted(p.name for p in (out / ".work").iterdir()) == [
        "missing.lock"
    ]  # the reusable lock only


def test_resumable_work_is_kept_and_a_commit_can_be_vetoed(photo, tmp_path, tiny_gen):
    out = tmp_path / "OUT"

    def veto():
        raise RuntimeError("coordinator gone")

    with pytest.raises(RuntimeError, match="coordinator gone"):
        _invert(photo, out / "face", tiny_gen, before_commit=veto)
    assert not (out / "face").exists() and (work_dir(out / "face") / "run.json").is_file()


def test_unreadable_checkpoint_names_the_file_and_the_fix(photo, tmp_path, tiny_gen):
    out = tmp_path / "OUT"
    ckpt = work_dir(out / "face") / "checkpoint"
    ckpt.mkdir(parents=True)
    (ckpt / "run_state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(Sym3DError, match=r"checkpoint .* cannot be read.*--no-resume") as info:
        _invert(photo, out / "face", tiny_gen)
    assert "weights_only" not in str(info.value)
    _invert(photo, out / "face", tiny_gen, resume=False)
    assert (out / "face" / "latent.pt").is_file()


# -- fsync before each rename ------------------------------------------------------------------


def _record_fsync_and_rename(monkeypatch) -> list[tuple[str, str]]:
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst, *a, **k):
        events.append(("replace", f"{os.fspath(src)} -> {os.fspath(dst)}"))
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


@pytest.mark.skipif(
    not Path("/proc/self/fd").is_dir(), reason="needs /proc to name file descriptors"
)
def test_atomic_write_flushes_the_file_before_the_rename_and_the_folder_after(
    tmp_path, monkeypatch
):
    from sym3d.atomic import atomic_write_bytes

    events = _record_fsync_and_rename(monkeypatch)
    atomic_write_bytes(tmp_path / "x.json", b"{}")
    kinds = [k for k, _ in events]
    assert kinds == ["fsync", "replace", "fsync"], events
    assert events[0][1] == events[1][1].split(" -> ")[0]  # the temporary file itself
    assert events[2][1] == str(tmp_path.resolve())


@pytest.mark.skipif(
    not Path("/proc/self/fd").is_dir(), reason="needs /proc to name file descriptors"
)
def test_every_result_file_is_flushed_before_the_folder_rename(
    photo, tmp_path, tiny_gen, monkeypatch
):
    out = (tmp_path / "OUT").resolve()
    events = _record_fsync_and_rename(monkeypatch)
    _invert(photo, out / "face", tiny_gen)
    final = next(
        i for i, (k, v) in enumerate(events) if k == "replace" and v.endswith(f" -> {out / 'face'}")
    )
    work = str(work_dir(out / "face"))
    flushed = {v.replace(work, str(out / "face"), 1) for k, v in events[:final] if k == "fsync"}
    files = {str(p) for p in (out / "face").rglob("*") if p.is_file()}
    assert files and files <= flushed
    assert ("fsync", str(out)) in events[final:]


# -- item 12: one image's failure never stops the others --------------------------------------


def test_cli_unexpected_errors_are_reported_per_image_and_the_rest_run(
    photo, tmp_path, capsys, monkeypatch
):
    import sym3d.app.pipeline as pipeline

    names = ["full.png", "memory.png", "ok.png"]
    for n in names:
        (tmp_path / n).write_bytes(photo[0].read_bytes())
    cams = _cameras(tmp_path, names, photo[1])
    real = pipeline.process_photo

    def flaky(image, out_dir, **kw):
        if Path(image).name == "full.png":
            raise OSError(errno.ENOSPC, "No space left on device", str(Path(out_dir) / "latent.pt"))
        if Path(image).name == "memory.png":
            raise MemoryError
        return real(image, out_dir, **kw)

    monkeypatch.setattr(pipeline, "process_photo", flaky)
    out = tmp_path / "OUT"
    code = main(
        [
            "invert",
            *(str(tmp_path / n) for n in names),
            "-o",
            str(out),
            "--cameras",
            str(cams),
            *CLI_QUICK,
        ]
    )
    err = capsys.readouterr().err
    assert code == 1, err
    assert (out / "ok" / "latent.pt").is_file()
    assert "1 done, 2 failed" in err
    assert "latent.pt: the disk is full. Fix: free disk space" in err
    assert "memory.png: out of memory" in err
    assert "Traceback" not in err and "failed: OSError" not in err


def test_cli_name_too_long_is_one_image_failure(photo, tmp_path, capsys):
    long_name = "x" * 250 + ".png"
    for n in (long_name, "ok.png"):
        (tmp_path / n).write_bytes(photo[0].read_bytes())
    cams = _cameras(tmp_path, [long_name, "ok.png"], photo[1])
    out = tmp_path / "OUT"
    code = main(
        [
            "invert",
            str(tmp_path / long_name),
            str(tmp_path / "ok.png"),
            "-o",
            str(out),
            "--cameras",
            str(cams),
            *CLI_QUICK,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert "bytes long; at most" in err and "1 done, 1 failed" in err
    assert (out / "ok" / "latent.pt").is_file()


def test_batch_worker_failures_are_one_line_with_the_fix(photo, tmp_path, monkeypatch):
    """Not `failed: OSError` / `RuntimeError: ...`: the file, what happened and what to do."""
    import sym3d.app.pipeline as pipeline
    from sym3d.app.batch.tasks import JobSpec, Placement, Task
    from sym3d.app.batch.worker import Worker

    worker = Worker(JobSpec(generator="tiny", pose=None, overrides=QUICK, export=()), Placement())
    task = Task(
        key="face", image=str(photo[0]), out_dir=str(tmp_path / "face"), camera=photo[1].tolist()
    )
    failures = {
        "disk": (
            OSError(errno.ENOSPC, "No space left on device", "x/latent.pt"),
            "x/latent.pt: the disk is full. Fix: free disk space",
        ),
        "bug": (
            RuntimeError("boom"),
            f"{photo[0]}: unexpected RuntimeError: boom. This is a bug; please report it (the manifest's detail",
        ),
    }
    for exc, expected in failures.values():

        def fail(*a, exc=exc, **k):
            raise exc

        monkeypatch.setattr(pipeline, "process_photo", fail)
        result = worker.run(task)
        assert not result.ok and result.error.startswith(expected), result.error
        assert "\n" not in result.error and result.detail  # the traceback is kept apart
