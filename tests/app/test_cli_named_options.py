"""`sym3d invert --prior NAME[:key=value,...]` and `--generator-option key=value`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sym3d
from sym3d.camera import look_at
from sym3d.cli import main
from sym3d.config import PriorSpec

FAST = ["--generator", "tiny", "--steps", "2", "--export", "views", "--progress", "off"]
CHEAP = ["--set", "perceptual=mse", "--set", "perceptual_resize=0"]
CHEAP += ["--set", "contextual_features=filterbank"]
EXAMPLE = "the example plugin (examples/plugin) is not installed"


@pytest.fixture
def inputs(tmp_path) -> list[str]:
    """A 64-px crop and its camera label: the positional image and --cameras."""
    rng = np.random.default_rng(0)
    crop = tmp_path / "face.png"
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(crop)
    cams = tmp_path / "dataset.json"
    cams.write_text(json.dumps({"labels": [["face.png", look_at(0.3, 0.05).tolist()]]}))
    return [str(crop), "--cameras", str(cams)]


def _refused(capsys, out: Path, *args: str) -> str:
    """Run `sym3d invert`; assert exit 2 with one line and nothing written; return the line."""
    code = main(["invert", *args, "--out", str(out)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err and len(lines) == 1, lines
    assert not out.exists()
    return lines[0]


def test_prior_and_generator_option_reach_the_run(inputs, tmp_path, capsys):
    """--prior builds the example's depth-tv with its options; --generator-option reaches tiny."""
    pytest.importorskip("sphere_heads", reason=EXAMPLE)
    toml = tmp_path / "run.toml"
    toml.write_text("[tune]\nnum_views = 2\n")
    out = tmp_path / "out"
    args = [*inputs, *FAST, *CHEAP, "--config", str(toml), "--out", str(out)]
    args += ["--prior", "depth-tv:weight=0.5,every=1", "--generator-option", "resolution=48"]
    assert main(["invert", *args]) == 0, capsys.readouterr().err
    result = sym3d.InversionResult.load(out / "face")
    expected = PriorSpec(name="depth-tv", options={"weight": 0.5, "every": 1})
    assert result.config.priors == (expected,)
    assert result.generator_name == "tiny" and result.generator_options == {"resolution": 48}
    assert result.target.shape[-1] == 48
    first = result.history[0]
    assert first["depth_tv/tv"] == pytest.approx(0.5 * first["depth_tv/_tv"], rel=1e-5)


def test_prior_is_added_to_the_config_files_priors(inputs, tmp_path, capsys):
    """The config file's prior stays and the CLI's is added: the same one twice is refused."""
    pytest.importorskip("sphere_heads", reason=EXAMPLE)
    toml = tmp_path / "run.toml"
    toml.write_text('priors = [{ name = "depth-tv", weight = 0.25 }]\n')
    out = tmp_path / "out"
    # the same prior twice would overwrite its own losses: refused before anything loads
    line = _refused(capsys, out, *inputs, *FAST, "--config", str(toml), "--prior", "depth-tv")
    assert line == (
        "error: priors: 'depth-tv' is given twice; its losses would overwrite each other. "
        "Hint: give each prior once, with the options you want."
    )


@pytest.mark.parametrize(
    ("prior", "phrase"),
    [
        ("depth-tv:weight", "--prior 'depth-tv:weight': 'weight' is not key=value"),
        (":weight=1", "--prior ':weight=1': no valid prior name"),
        ("depth-tv:weight=1,weight=2", "option 'weight' is given twice"),
        ("depth-tvv", "priors[0]: unknown prior 'depth-tvv'"),
    ],
)
def test_bad_prior_is_one_line_exit_2(inputs, tmp_path, capsys, prior, phrase):
    line = _refused(capsys, tmp_path / "out", *inputs, *FAST, "--prior", prior)
    assert phrase in line
    if prior == "depth-tvv" and "depth-tv" in sym3d.plugins.default_registry().names("prior"):
        assert line.endswith("Hint: did you mean 'depth-tv'?")


@pytest.mark.parametrize(
    ("option", "phrase"),
    [
        (
            "resolutoin=48",
            "generator 'tiny' has no option 'resolutoin'; accepted options: far, near, "
            "num_samples, plane_resolution, resolution, seed. Hint: did you mean 'resolution'?",
        ),
        ("resolution", "--generator-option: 'resolution' is not key=value"),
        ("network=x.pkl", "pass the weights with --network"),
    ],
)
def test_bad_generator_option_is_one_line_exit_2(inputs, tmp_path, capsys, option, phrase):
    line = _refused(capsys, tmp_path / "out", *inputs, *FAST, "--generator-option", option)
    assert phrase in line


def test_batch_refuses_an_unknown_prior_in_its_config_before_any_worker(tmp_path, capsys):
    """Checked against the registry before any worker starts (before: `unknown setting`)."""
    (tmp_path / "in").mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "in" / "a.png")
    toml = tmp_path / "run.toml"
    toml.write_text('priors = [{ name = "no-such-prior" }]\n')
    out = tmp_path / "out"
    code = main(["batch", str(tmp_path / "in"), "--out", str(out), "--config", str(toml)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert [line for line in err.splitlines() if line.strip()] == [
        "error: priors[0]: unknown prior 'no-such-prior'; available: "
        f"{', '.join(sym3d.plugins.default_registry().names('prior')) or '(none)'}. "
        "Hint: run `sym3d plugins` to list components."
    ]
    assert not out.exists()
