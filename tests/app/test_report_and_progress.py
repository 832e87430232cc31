"""A photo run's report (title, photo, angles, notes) and the progress of render/edit/bench.

SymHeads with a known camera label and two steps per stage: no pose estimator, a few seconds of
work (the result is made once per module).
"""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from sym3d.app.pipeline import process_photo
from sym3d.camera import look_at
from sym3d.cli import main
from sym3d.cli.progress import make_progress
from sym3d.cli.stage_progress import StageProgress, make_stage_progress
from sym3d.image import save_image
from sym3d_extras.synthetic import SymHeadsGenerator, SymHeadsScene
from tests.app.batch.conftest import FAST_OVERRIDES
from tests.app.export._html import parse


@pytest.fixture(scope="module")
def anna(tmp_path_factory) -> Path:
    """A finished result folder ``.../out/anna`` of the photo ``Anna Smith.png``."""
    root = tmp_path_factory.mktemp("anna")
    world = SymHeadsGenerator()
    cam = look_at(math.radians(-15.0), 0.0)
    photo = root / "Anna Smith.png"
    with torch.no_grad():
        save_image(SymHeadsScene(0, world=world).render(cam[None], resolution=32).image, photo)
    out = root / "out" / "anna"
    outcome = process_photo(
        photo,
        out,
        generator=world,
        camera=cam,
        overrides=FAST_OVERRIDES,
        export=("views", "metrics", "report"),
        export_options={"lpips": False},
        device="cpu",
    )
    assert outcome.out_dir == str(out)
    return out


def test_report_title_photo_angles_and_notes(anna):
    page = parse(anna / "report.html")
    raw = (anna / "report.html").read_text()
    assert re.search(r"<title>(.*?)</title>", raw).group(1) == "sym3d: anna"  # not "anna.partial"
    assert re.search(r"<h1>(.*?)</h1>", raw).group(1) == "sym3d: anna"
    assert ".partial" not in raw
    photo_tags = [a for t, a in page.tags if t == "img" and a.get("data-file") == "views/photo.jpg"]
    assert len(photo_tags) == 1 and photo_tags[0]["src"].startswith("data:image/jpeg;base64,")
    assert (anna / "views" / "photo.jpg").is_file()
    text = "\x00".join(page.text)
    assert "Photo and pose" in text and "Anna Smith.png" in text
    assert "camera label given; no pose estimation" in text  # FaceObservation.notes, via pose.json
    i = page.text.index("yaw")
    assert float(page.text[i + 1].rstrip("°")) < -5.0  # the label orbits the origin at -15 degrees


# --------------------------------------------------------------------------------------------
# progress of work that is not an optimisation
# --------------------------------------------------------------------------------------------


def test_stage_progress_plain_lines_are_thinned_and_closed():
    stream = io.StringIO()
    with StageProgress(make_progress("plain", prefix="anna", stream=stream)) as bar:
        for done in range(0, 121, 8):
            bar("video", done, 120)
        bar("mesh", 1, 3)
        bar("mesh", 2, 3)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "anna: video: 120 steps"
    video_steps = [ln for ln in lines if ln.startswith("anna:   video ")]
    assert 5 <= len(video_steps) <= 10 and video_steps[-1].strip().endswith("video 120/120")
    assert lines[len(video_steps) + 1].startswith("anna: video done: 120 steps in ")
    assert "anna: mesh: 3 steps" in lines
    mesh = [ln.strip() for ln in lines if "  mesh " in ln]
    assert mesh == ["anna:   mesh 1/3", "anna:   mesh 2/3"]
    assert lines[-1].startswith("anna: mesh done: 2 steps in ")  # closed on exit, as far as it got


def test_stage_progress_json_and_off():
    stream = io.StringIO()
    with make_stage_progress("json", prefix="x", stream=stream) as bar:
        bar("views", 0, 4)
        bar("views", 4, 4)
    events = [json.loads(ln) for ln in stream.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["StageStarted", "StepFinished", "StageFinished"]
    assert events[1]["step"] == 3 and events[1]["num_steps"] == 4 and events[0]["item"] == "x"
    with make_stage_progress("off") as bar:
        bar("views", 1, 4)  # nothing to see, nothing raised


def test_render_shows_plain_progress(anna, tmp_path, capsys):
    code = main(
        [
            "render",
            str(anna),
            "--out",
            str(tmp_path / "r"),
            "--views",
            "3",
            "--video-frames",
            "4",
            "--mesh-resolution",
            "0",
            "--progress",
            "plain",
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    for stage in ("render", "views", "depth", "video"):
        assert any(ln.startswith(f"anna: {stage}: ") for ln in err), (stage, err)
        assert any(ln.startswith(f"anna: {stage} done: ") for ln in err), (stage, err)
    assert "anna:   video 4/4" in [ln.rstrip() for ln in err]
    assert "novel_grid: " in captured.out  # the written files, on stdout


def test_render_json_progress_keeps_stdout_parseable(anna, tmp_path, capsys):
    code = main(
        [
            "render",
            str(anna),
            "--out",
            str(tmp_path / "r"),
            "--views",
            "2",
            "--video-frames",
            "0",
            "--mesh-resolution",
            "0",
            "--progress",
            "json",
        ]
    )
    assert code == 0
    records = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    started = {r.get("stage") for r in records if r.get("event") == "StageStarted"}
    assert started == {"render", "views", "depth"}
    assert Path(records[-1]["written"]["novel_grid"]).is_file()


def test_render_refuses_a_bad_progress_kind(anna, tmp_path, capsys):
    assert main(["render", str(anna), "--out", str(tmp_path / "r"), "--progress", "loud"]) == 2
    assert "loud" in capsys.readouterr().err


def test_edit_shows_plain_progress(anna, tmp_path, capsys):
    direction = tmp_path / "d.npy"
    w_dim = torch.load(anna / "latent.pt", weights_only=True)["ws"].shape[-1]
    np.save(direction, np.random.default_rng(0).standard_normal(w_dim).astype(np.float32))
    code = main(
        [
            "edit",
            str(anna),
            "--direction",
            str(direction),
            "--strength",
            "1",
            "--strength",
            "2",
            "--views",
            "2",
            "--out",
            str(tmp_path / "e"),
            "--progress",
            "plain",
        ]
    )
    assert code == 0
    err = [ln.rstrip() for ln in capsys.readouterr().err.splitlines()]
    assert err[0] == "anna: edit: 3 steps"
    steps = [ln for ln in err if ln.startswith("anna:   edit")]
    assert steps == [f"anna:   edit {i}/3" for i in (1, 2, 3)]


def test_edit_json_progress_keeps_stdout_parseable(anna, tmp_path, capsys):
    direction = tmp_path / "d.npy"
    w_dim = torch.load(anna / "latent.pt", weights_only=True)["ws"].shape[-1]
    np.save(direction, np.ones(w_dim, np.float32))
    code = main(
        [
            "edit",
            str(anna),
            "--direction",
            str(direction),
            "--strength",
            "1",
            "--views",
            "2",
            "--out",
            str(tmp_path / "e"),
            "--progress",
            "json",
        ]
    )
    assert code == 0
    records = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    events = [r["event"] for r in records[:-1]]
    assert events == ["StageStarted", "StepFinished", "StepFinished", "StageFinished"]
    assert records[-1]["row_strengths"] == [0.0, 1.0] and Path(records[-1]["grid"]).is_file()


def test_bench_engine_shows_plain_progress(capsys):
    code = main(
        [
            "bench",
            "engine",
            "--presets",
            "pti",
            "--latent-steps",
            "2",
            "--tune-steps",
            "2",
            "--threads",
            "1",
            "--set",
            "perceptual=mse",
            "--set",
            "latent.mean_samples=16",
            "--progress",
            "plain",
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    for label in ("warm-up", "pti"):
        assert f"{label}: stage 1 latent: 2 steps" in err, err
        assert any(ln.startswith(f"{label}: stage 2 tune done: 2 steps in ") for ln in err), err
    assert "engine ms/step" in captured.out and "warm-up" not in captured.out


def test_edit_help_shows_all_three_direction_shapes(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # one line per option
    assert main(["edit", "--help"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "--direction" in ln)
    for shape in ("[w_dim]", "[num_ws, w_dim]", "[1, num_ws, w_dim]"):
        assert shape in line, line
