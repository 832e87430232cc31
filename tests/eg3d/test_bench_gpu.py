"""`sym3d bench gpu`: the smoke run on the CPU writes the JSON and the markdown table it promises.

The CUDA-only parts and rows must be present as ``skipped`` with a reason, never missing and
never passing silently; the numbers themselves are measured, not asserted (a loaded machine can
stall any call).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from sym3d.cli import main
from sym3d_eg3d.bench_gpu import PARTS, SCHEMA, markdown_report


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[dict, str, str]:
    out = tmp_path_factory.mktemp("bench_gpu")
    torch.manual_seed(0)
    code = main(["bench", "gpu", "--device", "cpu", "--smoke", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "bench_gpu.json").read_text(encoding="utf-8"))
    return report, (out / "bench_gpu.md").read_text(encoding="utf-8"), str(out)


@pytest.mark.slow
def test_smoke_json_has_every_part_with_a_status(smoke) -> None:
    report, _, _ = smoke
    assert report["schema"] == SCHEMA
    assert report["settings"]["smoke"] is True and report["device"]["type"] == "cpu"
    assert list(report["parts"]) == list(PARTS)
    for name, part in report["parts"].items():
        assert part["status"] in ("ok", "skipped", "extrapolated"), (name, part)
        assert part["elapsed_s"] >= 0
        if part["status"] == "skipped":
            assert part["reason"], name
    # the kernels only run on CUDA: skipped, with the reason
    assert report["parts"]["kernels"]["status"] == "skipped"
    assert "CUDA" in report["parts"]["kernels"]["reason"]


@pytest.mark.slow
def test_smoke_synthesis_engine_and_inversion_rows(smoke) -> None:
    report, _, _ = smoke
    synthesis = report["parts"]["synthesis"]
    assert [(r["impl"], r["views"]) for r in synthesis["rows"]] == [("ref", 1), ("ref", 2)]
    for r in synthesis["rows"]:
        assert r["forward_ms"] > 0 and r["forward_backward_ms"] > 0 and r["peak_backward_mb"] >= 0
    assert [r["impl"] for r in synthesis["skipped_rows"]] == ["cuda"]
    assert "ref: 2 views / 1 view (fwd+bwd)" in synthesis["ratios"]

    engine = report["parts"]["engine"]
    rows = {r["preset"]: r for r in engine["rows"]}
    assert set(rows) == {"pti", "spi"}
    assert rows["pti"]["stage1_views"] == 1 and rows["spi"]["stage1_views"] == 2
    for r in rows.values():
        for key in ("stage1_ms", "stage2_plain_ms", "stage2_aux_ms"):
            assert r[key] > 0 and not math.isnan(r[key]), (r["preset"], key)
    mirror = engine["ratios"]["stage 1 with mirror / one view (spi / pti)"]
    assert mirror == pytest.approx(rows["spi"]["stage1_ms"] / rows["pti"]["stage1_ms"])
    assert report["targets"]["stage-1 mirror cost / one view"]["limit"] == 1.6

    inversion = report["parts"]["inversion"]
    assert inversion["status"] == "extrapolated" and "smoke" in inversion["reason"]
    spi = rows["spi"]
    expected = (
        500 * spi["stage1_ms"] + 250 * spi["stage2_aux_ms"] + 750 * spi["stage2_plain_ms"]
    ) / 1000
    assert inversion["seconds"] == pytest.approx(expected)


@pytest.mark.slow
def test_smoke_options_baseline_and_skips(smoke) -> None:
    report, _, _ = smoke
    options = {r["option"]: r for r in report["parts"]["options"]["rows"]}
    base = options["baseline (model precision, TF32 off)"]
    assert base["status"] == "ok" and base["max_abs_image_diff"] == 0.0
    for name in ("TF32 matmul + cuDNN", "channels-last synthesis blocks"):
        assert options[name]["status"] == "skipped" and options[name]["reason"]
    assert report["parts"]["options"]["sync"]["status"] == "skipped"


@pytest.mark.slow
def test_smoke_markdown_is_the_json_as_tables(smoke) -> None:
    report, markdown, out = smoke
    assert markdown == markdown_report(report)
    assert markdown.startswith("# sym3d bench gpu (smoke, ")
    assert f"`sym3d bench gpu --device cpu --smoke --out {out}`" in markdown
    for heading in (
        "## Parts",
        "## Synthesis",
        "## Engine steps",
        "## Ratios",
        "## Whole spi inversion",
        "## Options against the baseline",
    ):
        assert heading in markdown
    parts_table = markdown.split("## Parts")[1].split("\n\n")[1].splitlines()
    assert parts_table[0] == "| part | status | elapsed s | note |"
    assert [ln.split(" | ")[0].lstrip("| ") for ln in parts_table[2:]] == list(PARTS)
    assert "| cuda | - | skipped | custom CUDA kernels need a CUDA device |" in markdown


def test_full_run_on_the_cpu_is_a_user_error(capsys, tmp_path) -> None:
    assert main(["bench", "gpu", "--device", "cpu", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--smoke" in err and "Traceback" not in err
    assert not (tmp_path / "bench_gpu.json").exists()


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the message on a machine without CUDA"
)
def test_cuda_without_a_device_is_a_user_error(capsys, tmp_path) -> None:
    assert main(["bench", "gpu", "--device", "cuda", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "needs a CUDA device" in err and "Traceback" not in err
