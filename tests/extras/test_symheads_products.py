"""SymHeads products: the demo, the quality benchmark (tiny settings) and camera refinement."""

from __future__ import annotations

import csv
import json
import math

import pytest

import sym3d
from sym3d.camera import look_at, yaw_pitch_roll
from sym3d_extras.benchmarks.demo import run_demo
from sym3d_extras.benchmarks.quality import (
    FIELDS,
    QualitySettings,
    group_of,
    mirror_left_out,
    run_quality,
    stage1_render_asymmetry,
    summarize,
    write_summary,
)

QUICK = ["latent.steps=3", "tune.steps=3", "tune.aux_every=1", "tune.num_views=1"]


def test_demo_writes_figure_and_metrics(tmp_path):
    paths = run_demo(tmp_path, overrides=QUICK)
    assert paths["figure"].exists()
    table = json.loads(paths["metrics_json"].read_text())
    assert set(table) == {"pti", "spi"}
    assert {"psnr_near", "psnr_far", "depth_mae_far", "ghost_err", "mole_err"} <= set(table["spi"])
    assert (tmp_path / "spi" / "latent.pt").exists()


def test_groups():
    assert (
        group_of(45, -45) == "mirror"
        and group_of(45, 30) == "near"
        and group_of(45, 0) == "far"
        and group_of(0, 0) == "near"
    )


def test_quality_benchmark_rows_summary_and_resume(tmp_path):
    s = QualitySettings(
        heads=(100,),
        source_yaws=(30.0,),
        target_yaws=(-30.0, 0.0, 30.0),
        methods=("w+", "pti", "spi"),
        overrides=tuple(QUICK),
        lpips=False,
        size=48,
    )
    ran: list[str] = []
    rows = run_quality(s, tmp_path, progress=lambda label, done, total: ran.append(label))
    assert len(ran) == 3  # one inversion per method
    with open(rows) as f:
        data = list(csv.DictReader(f))
    assert len(data) == 3 * 3
    assert {r["group"] for r in data} == {"mirror", "far", "near"}
    left_out = {r["method"]: float(r["mirror_left_out"]) for r in data}
    assert math.isnan(left_out["w+"]) and math.isnan(left_out["pti"])  # no gated mirror
    assert 0.0 <= left_out["spi"] <= 1.0  # spi's stage 1 fits the light and gates the mirror
    probed = {r["method"]: float(r["render_asymmetry"]) for r in data}
    assert math.isnan(probed["w+"]) and math.isnan(probed["pti"])  # no light probe
    assert 0.0 <= probed["spi"] < 5.0  # spi's stage 1 probed the light once
    before = rows.stat()
    content = rows.read_bytes()
    assert run_quality(s, tmp_path, progress=lambda label, done, total: ran.append(label)) == rows
    assert len(ran) == 3  # resumed: nothing left to invert
    after = rows.stat()  # not rewritten: same file, same bytes, never written to
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert rows.read_bytes() == content
    paths = write_summary(rows, tmp_path)
    text = paths["summary_md"].read_text()
    assert "### Claims" in text and "ghost_err: spi / pti" in text
    assert paths["plot_psnr"].exists()
    summary = summarize(rows)
    assert len(summary) == 9 and all(r["heads"] == 1 for r in summary)  # 3 groups x 3 methods
    assert rows.read_bytes() == content  # the summary only reads the rows


def test_quality_benchmark_appends_to_rows_without_the_gate_column(tmp_path):
    """A ``rows.csv`` from before the gate columns keeps its header when a run resumes it."""
    s = QualitySettings(
        heads=(100,),
        source_yaws=(30.0,),
        target_yaws=(0.0,),
        methods=("w+",),
        overrides=tuple(QUICK),
        lpips=False,
        size=48,
    )
    old = [f for f in FIELDS if f not in ("mirror_left_out", "render_asymmetry")]
    rows = tmp_path / "rows.csv"
    rows.write_text(",".join(old) + "\n")
    run_quality(s, tmp_path)
    with open(rows, newline="") as f:
        data = list(csv.reader(f))
    assert data[0] == old and len(data) == 2 and len(data[1]) == len(old)
    assert summarize(rows)[0]["heads"] == 1


def test_mirror_left_out_reads_stage_one_gate_flags():
    history = [
        {"stage": "latent", "step": 0, "mirror_view/_left_out": 1.0},
        {"stage": "latent", "step": 1, "mirror_view/_left_out": 0.0},
        {"stage": "latent", "step": 2, "mirror_view/_left_out": 1.0},
        {"stage": "latent", "step": 3},  # the term did not run
        {"stage": "generator", "step": 0, "mirror_view/_left_out": 0.0},
    ]
    assert mirror_left_out(history) == pytest.approx(2.0 / 3.0)
    assert math.isnan(mirror_left_out([{"stage": "latent", "step": 0}]))


def test_stage1_render_asymmetry_reads_the_first_probe_entry():
    history = [
        {"stage": "latent", "step": 0},
        {"stage": "latent", "step": 1, "mirror_view/_render_asymmetry": 0.31},
        {"stage": "latent", "step": 2, "mirror_view/_render_asymmetry": 0.31},
        {"stage": "generator", "step": 0, "mirror_regions/_render_asymmetry": 0.2},
    ]
    assert stage1_render_asymmetry(history) == pytest.approx(0.31)
    only_stage2 = [{"stage": "generator", "step": 0, "mirror_view/_render_asymmetry": 0.2}]
    assert math.isnan(stage1_render_asymmetry(only_stage2))


def test_camera_refinement_recovers_a_perturbed_yaw():
    """SymHeads seen at yaw 30 degrees but labelled 22 degrees: refining the camera moves the label toward the truth."""
    from sym3d_extras.synthetic import SymHeadsScene, build_symheads

    world = build_symheads(img_resolution=48, neural_resolution=48)
    scene = SymHeadsScene(101, world=world, resolution=48)
    true = look_at(math.radians(30), 0.0)[None]
    obs = scene.face_observation(true)
    wrong = look_at(math.radians(22), 0.0)[None]
    over = [
        "perceptual=mse",
        "perceptual_resize=0",
        "latent.steps=60",
        "latent.lr=0.03",
        "tune.steps=0",
        "latent.camera_lr=0.01",
    ]
    results = {}
    for refine in (False, True):
        r = sym3d.invert(
            obs.image,
            wrong,
            generator=world,
            preset="w+",
            overrides=[*over, f"latent.refine_camera={str(refine).lower()}"],
        )
        results[refine] = (
            math.degrees(float(yaw_pitch_roll(r.camera)[0])),
            r.history[-1]["reconstruction/perceptual"],
        )
    true_yaw = math.degrees(
        float(yaw_pitch_roll(true)[0])
    )  # viewing-direction yaw (not the orbit angle)
    err_fixed = abs(results[False][0] - true_yaw)
    err_refined = abs(results[True][0] - true_yaw)
    assert err_fixed == pytest.approx(
        abs(math.degrees(float(yaw_pitch_roll(wrong)[0])) - true_yaw), abs=1e-3
    )
    assert err_refined < 0.5 * err_fixed, results
    assert (
        results[True][1] < results[False][1]
    )  # the image is explained better with the refined camera


@pytest.mark.parametrize(
    ("a", "b", "shared"),
    [
        ("w+", "pti", True),  # same stage 1, different stage 2
        ("spi", "spi-no-warp", True),
        ("pti", "spi", False),  # the mirror view in stage 1
        ("spi", "spi-no-relight", False),  # only options of the stage-1 mirror term differ
        ("spi", "spi-no-anchor", True),  # a stage-2 term only
    ],
)
def test_methods_share_a_pivot_only_with_equal_stage1_settings(a, b, shared):
    from sym3d.engine import resolve_config
    from sym3d_extras.benchmarks.quality import _stage1_key

    ka, kb = (_stage1_key(resolve_config(m, None, tuple(QUICK))) for m in (a, b))
    assert (ka == kb) is shared
