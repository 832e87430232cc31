"""Bad inputs to `sym3d invert`, `render` and `edit`: one line, exit code 2, nothing written.

Every refusal here happens before the generator is loaded, so each test takes well under a second
of work (the subprocess tests pay for importing torch). FIFO and device tests carry a timeout:
before the fix they hung or read /dev/zero until memory ran out.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image

from sym3d.camera import look_at
from sym3d.cli import main
from sym3d.cli.main import INTERRUPTED
from sym3d.errors import QualityWarning

FAST = ["--generator", "tiny", "--steps", "1", "--export", "views", "--progress", "off"]


@pytest.fixture
def crop(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "face.png"
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(path)
    return path


def _dataset(path: Path, label, name: str = "face.png") -> Path:
    path.write_text(json.dumps({"labels": [[name, label]]}))
    return path


def _good_label() -> list[float]:
    return look_at(0.2, 0.05).tolist()


def _refused(code: int, err: str, out: Path | None) -> str:
    """Assert a one-line refusal with exit code 2 and no result folder; return the line."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1, lines
    if out is not None:
        assert not out.exists(), sorted(p.name for p in out.rglob("*"))
    return lines[0]


def _invert(capsys, *args: str) -> tuple[int, str]:
    code = main(["invert", *args])
    return code, capsys.readouterr().err


def _label(change) -> list:
    label = _good_label()
    change(label)
    return label


def _set(i, v):
    def change(label):
        label[i] = v

    return change


BAD_LABELS = {
    "infinity": (
        _label(_set(3, math.inf)),
        r"entry 3 \(cam2world\[0\]\[3\]\) is inf; expected a finite number",
    ),
    "boolean": (_label(_set(0, True)), r"entry 0 \(cam2world\[0\]\[0\]\) is true \(a boolean\)"),
    "digit string": (
        _label(_set(5, "1234567890123456789012345")),
        r"entry 5 \(cam2world\[1\]\[1\]\) is the string '1234567890123456789012345'",
    ),
    "null": (_label(_set(7, None)), r"entry 7 \(cam2world\[1\]\[3\]\) is null"),
    "absurd": (_label(_set(11, 1e30)), r"the camera is 1e\+30 units from the world origin"),
    "400-digit integer": (
        _label(_set(11, 10**400)),
        r"entry 11 \(cam2world\[2\]\[3\]\) is not a finite number",
    ),
    "25-digit integer": (
        _label(_set(11, 10**24)),
        r"the camera is 1e\+24 units from the world origin",
    ),
    "all-zero pose": (
        [0.0] * 16 + _good_label()[16:],
        r"rotation cam2world\[:3, :3\] is all zero \(no pose\)",
    ),
    "negative focal": (_label(_set(16, -4.2647)), r"fx = -4.265 is outside"),
    "24 numbers": (
        _good_label()[:24],
        r"the label of .face.png. must be 25 numbers; got 24 values",
    ),
}


@pytest.mark.parametrize("case", list(BAD_LABELS))
def test_bad_camera_labels_are_refused_naming_file_image_and_entry(case, crop, tmp_path, capsys):
    label, expected = BAD_LABELS[case]
    cams = _dataset(tmp_path / "dataset.json", label)
    out = tmp_path / "out"
    code, err = _invert(capsys, str(crop), "--cameras", str(cams), "--out", str(out), *FAST)
    line = _refused(code, err, out)
    assert f"{cams}: the label of 'face.png'" in line
    assert re.search(expected, line), line


def test_camera_looking_away_is_refused(crop, tmp_path, capsys):
    label = _good_label()
    for r in range(3):  # turn the camera around its y axis: a rotation, but facing away
        label[4 * r] *= -1
        label[4 * r + 2] *= -1
    out = tmp_path / "out"
    code, err = _invert(
        capsys,
        str(crop),
        "--cameras",
        str(_dataset(tmp_path / "d.json", label)),
        "--out",
        str(out),
        *FAST,
    )
    assert "the head (the world origin) is behind the camera" in _refused(code, err, out)


def test_missing_label_and_bad_json_are_refused(crop, tmp_path, capsys):
    out = tmp_path / "out"
    other = _dataset(tmp_path / "other.json", _good_label(), name="someone-else.png")
    code, err = _invert(capsys, str(crop), "--cameras", str(other), "--out", str(out), *FAST)
    assert "no camera label for 'face.png'" in _refused(code, err, out)
    broken = tmp_path / "broken.json"
    broken.write_text('{"labels": [["face.png", [1, 2,')
    code, err = _invert(capsys, str(crop), "--cameras", str(broken), "--out", str(out), *FAST)
    assert "broken.json: not valid JSON" in _refused(code, err, out)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("what", ["cameras", "config", "image"])
def test_fifo_inputs_are_refused_without_hanging(what, crop, tmp_path, capsys):
    fifo = tmp_path / ("pipe.png" if what == "image" else "pipe.json")
    os.mkfifo(fifo)
    cams = _dataset(
        tmp_path / "dataset.json", _good_label(), name="pipe.png" if what == "image" else "face.png"
    )
    image = fifo if what == "image" else crop
    args = {
        "cameras": ["--cameras", str(fifo)],
        "config": ["--cameras", str(cams), "--config", str(fifo)],
        "image": ["--cameras", str(cams)],
    }[what]
    out = tmp_path / "out"
    code, err = _invert(capsys, str(image), *args, "--out", str(out), *FAST)
    assert f"{fifo}: is a FIFO (named pipe)" in _refused(code, err, out)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("what", ["cameras", "config"])
def test_dev_zero_is_refused_without_reading_it(what, crop, tmp_path, capsys):
    cams = _dataset(tmp_path / "dataset.json", _good_label())
    args = (
        ["--cameras", "/dev/zero"]
        if what == "cameras"
        else ["--cameras", str(cams), "--config", "/dev/zero"]
    )
    out = tmp_path / "out"
    code, err = _invert(capsys, str(crop), *args, "--out", str(out), *FAST)
    assert "/dev/zero: is a character device" in _refused(code, err, out)


@pytest.mark.timeout(60)
def test_network_fifo_and_fifo_inside_a_network_folder_are_refused(crop, tmp_path, capsys):
    cams = _dataset(tmp_path / "dataset.json", _good_label())
    out = tmp_path / "out"
    fifo = tmp_path / "net.pkl"
    os.mkfifo(fifo)
    code, err = _invert(
        capsys,
        str(crop),
        "--cameras",
        str(cams),
        "--generator",
        "eg3d",
        "--network",
        str(fifo),
        "--out",
        str(out),
    )
    assert f"{fifo}: is a FIFO (named pipe); the --network file must be a regular file" in _refused(
        code, err, out
    )
    folder = tmp_path / "converted"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    os.mkfifo(folder / "weights.safetensors")
    code, err = _invert(
        capsys,
        str(crop),
        "--cameras",
        str(cams),
        "--generator",
        "eg3d",
        "--network",
        str(folder),
        "--out",
        str(out),
    )
    assert (
        "weights.safetensors: is a FIFO (named pipe); every file of the --network folder"
        in _refused(code, err, out)
    )


@pytest.mark.timeout(60)
def test_direction_fifo_is_refused(tmp_path, capsys):
    fifo = tmp_path / "smile.npy"
    os.mkfifo(fifo)
    code = main(
        ["edit", str(tmp_path / "result"), "--direction", str(fifo), "--out", str(tmp_path / "e")]
    )
    line = _refused(code, capsys.readouterr().err, tmp_path / "e")
    assert f"{fifo}: is a FIFO (named pipe); the --direction file must be a regular file" in line


def test_direction_that_is_not_an_array_is_refused(tmp_path, capsys):
    bad = tmp_path / "smile.npy"
    bad.write_text("not numpy")
    code = main(
        ["edit", str(tmp_path / "result"), "--direction", str(bad), "--out", str(tmp_path / "e")]
    )
    assert "smile.npy: not a readable direction" in _refused(
        code, capsys.readouterr().err, tmp_path / "e"
    )


def test_strip_image_is_refused_before_any_work(tmp_path, capsys):
    strip = tmp_path / "strip.png"
    Image.new("L", (2_000_000, 1)).save(strip)
    cams = _dataset(tmp_path / "dataset.json", _good_label(), name="strip.png")
    out = tmp_path / "out"
    code, err = _invert(capsys, str(strip), "--cameras", str(cams), "--out", str(out), *FAST)
    assert "an aspect ratio of 2000000:1; expected at most 20:1" in _refused(code, err, out)


@pytest.mark.parametrize("command", ["invert", "render", "edit"])
def test_missing_cuda_device_is_a_one_line_hint(command, crop, tmp_path, capsys):
    """cuda:99 exists on no machine: the same check as `sym3d batch --device cuda`, exit 2."""
    out = tmp_path / "out"
    cams = _dataset(tmp_path / "dataset.json", _good_label())
    direction = tmp_path / "d.npy"
    np.save(direction, np.zeros(8, np.float32))
    args = {
        "invert": ["invert", str(crop), "--cameras", str(cams), *FAST],
        "render": ["render", str(tmp_path / "result")],
        "edit": ["edit", str(tmp_path / "result"), "--direction", str(direction)],
    }[command]
    code = main([*args, "--device", "cuda:99", "--out", str(out)])
    line = _refused(code, capsys.readouterr().err, out)
    assert line.startswith("error: --device cuda:99: ") and (
        "no CUDA device is visible" in line or "only" in line
    )
    assert "Hint: " in line


def test_output_folder_inside_a_file_is_refused(crop, tmp_path, capsys):
    cams = _dataset(tmp_path / "dataset.json", _good_label())
    code, err = _invert(
        capsys, str(crop), "--cameras", str(cams), "--out", str(crop / "sub"), *FAST
    )
    assert (
        f"--out {crop / 'sub'}: lies inside {crop}, which is a file; expected a folder"
        in _refused(code, err, None)
    )


def _make_read_only(folder: Path) -> bool:
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return True
    chattr = shutil.which("chattr")  # root ignores permissions; an immutable folder stops it
    return (
        chattr is not None
        and subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode == 0
    )


def _undo_read_only(folder: Path) -> None:
    if os.geteuid() != 0:
        folder.chmod(0o755)
    else:
        subprocess.run([shutil.which("chattr") or "chattr", "-i", str(folder)], capture_output=True)


def test_read_only_output_folder_is_refused(crop, tmp_path, capsys):
    cams = _dataset(tmp_path / "dataset.json", _good_label())
    folder = tmp_path / "ro"
    folder.mkdir()
    if not _make_read_only(folder):
        pytest.skip(
            "cannot make a read-only folder here (running as root without a working chattr)"
        )
    try:
        code, err = _invert(capsys, str(crop), "--cameras", str(cams), "--out", str(folder), *FAST)
        line = _refused(code, err, None)
        assert f"--out {folder}: cannot write to {folder} (" in line
        assert list(folder.iterdir()) == []
    finally:
        _undo_read_only(folder)


def test_eg3d_without_network_says_what_is_missing(crop, tmp_path, capsys):
    cams = _dataset(tmp_path / "dataset.json", _good_label())
    out = tmp_path / "out"
    code, err = _invert(
        capsys, str(crop), "--cameras", str(cams), "--generator", "eg3d", "--out", str(out)
    )
    line = _refused(code, err, out)
    assert "neither was given" in line and "not both" not in line


def _app_running(fn):
    app = typer.Typer()

    @app.command()
    def run() -> None:
        fn()

    @app.command()
    def other() -> None:
        pass

    return lambda: app


def test_ctrl_c_exits_130_with_the_resume_line(monkeypatch, capsys):
    def interrupted():
        os.kill(os.getpid(), signal.SIGINT)  # delivered to the main thread at once

    monkeypatch.setattr("sym3d.cli.app.build_app", _app_running(interrupted))
    assert main(["run"]) == 130
    assert (
        capsys.readouterr().err.strip()
        == INTERRUPTED
        == "interrupted; re-run the same command to resume."
    )
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_sym3d_warnings_print_as_one_line(monkeypatch, capsys):
    def warn():
        warnings.warn(
            "photo.gif: an animated image with 3 frames; only the first frame is used.",
            QualityWarning,
            stacklevel=1,
        )

    monkeypatch.setattr("sym3d.cli.app.build_app", _app_running(warn))
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["run"]) == 0
    err = capsys.readouterr().err
    assert (
        err
        == "warning: photo.gif: an animated image with 3 frames; only the first frame is used.\n"
    )


@pytest.mark.timeout(300)
def test_sigint_during_an_inversion_exits_130_with_one_line(crop, tmp_path):
    """A real Ctrl-C, sent once the run has reported its first step (an event, not a clock)."""
    cams = _dataset(tmp_path / "dataset.json", _good_label())
    cmd = [
        sys.executable,
        "-m",
        "sym3d.cli.main",
        "invert",
        str(crop),
        "--cameras",
        str(cams),
        "--generator",
        "tiny",
        "--steps",
        "100000",
        "--export",
        "views",
        "--progress",
        "json",
        "--out",
        str(tmp_path / "out"),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()  # blocks until the engine's first progress event
        assert first.startswith("{"), first + proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == INTERRUPTED


def test_permission_error_is_one_line_exit_2_naming_the_path(monkeypatch, capsys):
    """The fallback for a write refused later on (e.g. `render` into a read-only result folder)."""

    def refused():
        raise PermissionError(13, "Permission denied", "/results/photo/render")

    monkeypatch.setattr("sym3d.cli.app.build_app", _app_running(refused))
    assert main(["run"]) == 2
    line = _refused(2, capsys.readouterr().err, None)
    assert line == (
        "error: /results/photo/render: Permission denied (check the path you passed and its "
        "permissions)."
    )


def test_other_os_errors_stay_exit_1(monkeypatch, capsys):
    def broken():
        raise OSError(5, "Input/output error", "/results/photo/latent.pt")

    monkeypatch.setattr("sym3d.cli.app.build_app", _app_running(broken))
    assert main(["run"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("failed: OSError: ") and "Traceback" not in err


def test_folder_as_image_and_missing_network_are_one_line(crop, tmp_path, capsys):
    cams = _dataset(tmp_path / "dataset.json", _good_label())
    out = tmp_path / "out"
    code, err = _invert(capsys, str(tmp_path), "--cameras", str(cams), "--out", str(out), *FAST)
    line = _refused(code, err, out)
    assert (
        f"{tmp_path}: is a folder; expected an image file. Hint: pass image files, or use" in line
    )
    missing = tmp_path / "nowhere.pkl"
    args = ["--generator", "eg3d", "--network", str(missing), "--out", str(out)]
    code, err = _invert(capsys, str(crop), "--cameras", str(cams), *args)
    assert f"{missing}: no such file or folder; --network expects weights." in _refused(
        code, err, out
    )
