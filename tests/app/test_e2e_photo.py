"""End to end: a real photo through `sym3d invert` with the small EG3D checkpoint writes every output.

The photo is scikit-image's astronaut (public domain, ships in the package); the generator is the
fixture pickle made by the official EG3D code with seeded random weights (loaded through the safe
unpickler). Few steps: this checks the plumbing, not the quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sym3d.cli import main
from tests.conftest import eg3d_fixture_dir

from ._browser import CHROMIUM_MISSING, chromium, screenshot

pytestmark = pytest.mark.faces

FAST = [
    "--steps",
    "2",
    "--set",
    "perceptual=lpips-alex",
    "--set",
    "perceptual_resize=128",
    "--set",
    "tune.aux_every=1",
    "--set",
    "tune.num_views=1",
    "--set",
    "tune.terms.mirror_regions.crop_size=32",
    "--set",
    "latent.mean_samples=16",
    "--video-frames",
    "6",
    "--mesh-resolution",
    "32",
    "--mesh-level",
    "0.4",  # random weights: density ~0.1-0.7, far below EG3D's trained sigma 10
    "--progress",
    "plain",
]


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory) -> Path:
    pytest.importorskip("mediapipe", reason="the faces extra is not installed")
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    path = tmp_path_factory.mktemp("photos") / "astronaut.jpg"
    Image.fromarray(skdata.astronaut()).save(path, quality=95)
    return path


@pytest.fixture(scope="module")
def small_pkl() -> Path:
    path = eg3d_fixture_dir() / "eg3d_small_persistence_like.pkl"
    if not path.exists():
        pytest.skip(f"EG3D fixture {path} not found (set SYM3D_EG3D_FIXTURES)")
    return path


def _invert(photo: Path, network: Path, out: Path) -> int:
    """``sym3d invert photo`` with the small EG3D fixture into ``out``; the exit code."""
    cmd = ["invert", str(photo), "--generator", "eg3d", "--network", str(network)]
    return main([*cmd, "--out", str(out), *FAST])


@pytest.fixture(scope="module")
def inverted(astronaut, small_pkl, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out")
    code = _invert(astronaut, small_pkl, out)
    assert code == 0
    return out / "astronaut"


def test_every_output_is_written(inverted):
    expected = [
        "latent.pt",
        "tuned.safetensors",
        "config.resolved.toml",
        "history.json",
        "input.png",
        "pose.json",
        "run.json",
        "views/aligned.png",
        "views/input.png",
        "views/reconstruction.png",
        "views/mirror.png",
        "views/novel_grid.png",
        "depth.png",
        "depth.npy",
        "mesh.ply",
        "loss.png",
        "metrics.json",
        "report.html",
    ]
    missing = [f for f in expected if not (inverted / f).exists()]
    assert not missing, missing
    assert any((inverted / f).exists() for f in ("orbit.mp4", "orbit.gif"))
    assert not (inverted.parent / ".work" / "astronaut").exists()  # assembled there, then renamed
    pose = json.loads((inverted / "pose.json").read_text())
    assert len(pose["camera"]) == 25 and set(pose["angles_degrees"]) == {"yaw", "pitch", "roll"}
    metrics = json.loads((inverted / "metrics.json").read_text())
    assert {"reconstruction", "mesh"} <= set(metrics) and metrics["mesh"]["watertight"]


def test_rerun_refuses_to_overwrite_then_overwrites(
    inverted, astronaut, small_pkl, capsys, monkeypatch
):
    monkeypatch.setenv(
        "COLUMNS", "40"
    )  # messages must not be hard-wrapped in narrow terminals or CI logs
    out = inverted.parent
    code = _invert(astronaut, small_pkl, out)
    assert code == 2
    assert "already there" in capsys.readouterr().err


def test_render_and_edit_from_saved_result(inverted, small_pkl, tmp_path):
    # The result records its checkpoint's path and sha256; --network names the weights again.
    no_media = ["--video-frames", "0", "--mesh-resolution", "0"]
    assert main(["render", str(inverted), "--out", str(tmp_path / "r0"), *no_media]) == 2
    net = ["--network", str(small_pkl)]
    out = ["--out", str(tmp_path / "r")]
    code = main(["render", str(inverted), *net, *out, "--views", "3", *no_media])
    assert code == 0 and (tmp_path / "r" / "views" / "novel_grid.png").exists()
    direction = tmp_path / "d.npy"
    np.save(direction, np.random.default_rng(0).standard_normal(512).astype(np.float32))
    edit_args = ["--direction", str(direction), "--strength", "1", "--views", "2"]
    code = main(["edit", str(inverted), *net, *edit_args, "--out", str(tmp_path / "e")])
    assert code == 0 and (tmp_path / "e" / "grid.png").exists()
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros(7, np.float32))
    out = ["--out", str(tmp_path / "e2")]
    code = main(["edit", str(inverted), *net, "--direction", str(bad), *out])
    assert code == 2


@pytest.mark.browser
@pytest.mark.skipif(chromium() is None, reason=CHROMIUM_MISSING)
def test_report_opens_in_headless_chromium(inverted, tmp_path):
    img = screenshot(inverted / "report.html", tmp_path / "shot.png", width=1100, height=1500)
    assert img.std() > 10  # not a blank page
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 500  # the embedded pictures are drawn
