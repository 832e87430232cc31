"""Reading a result folder: special files, damaged latent.pt, and stored generator options.

A result folder may have been copied from elsewhere or edited: every file in it is data, read
as a regular file within a size limit, and its generator options never choose a file to open.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from sym3d.app.result_options import check_network_matches, check_stored_options
from sym3d.camera import look_at
from sym3d.cli import main
from sym3d.engine.result import RESULT_FORMAT, InversionResult
from sym3d.errors import CheckpointError, InputFileError, UserInputError

_ROOT = Path(__file__).resolve().parents[2]
RENDER_FAST = ["--views", "2", "--video-frames", "0", "--mesh-resolution", "0"]


def _save(
    directory: Path,
    *,
    generator: str = "tiny",
    options: dict | None = None,
    num_ws: int = 4,
    w_dim: int = 8,
) -> Path:
    result = InversionResult(
        ws=torch.zeros(1, num_ws, w_dim),
        camera=look_at(torch.tensor([0.0]), 0.0).reshape(1, 25),
        generator_name=generator,
        generator_options=options or {},
        history=({"stage": "latent", "step": 0, "loss": 1.0},),
        summary={"steps": 1},
        tuned={"dummy": torch.ones(2)} if generator == "tiny" else {},
    )
    return result.save(directory)


def _edit_latent(directory: Path, **changes) -> None:
    meta = torch.load(directory / "latent.pt", weights_only=True)
    meta.update(changes)
    torch.save(meta, directory / "latent.pt")


# --------------------------------------------------------------------------------------------
# Item 6: only regular files, each within a size limit
# --------------------------------------------------------------------------------------------

_SPECIAL_FILES_SCRIPT = """
import json, os, shutil, sys
from pathlib import Path
from sym3d.engine.result import InversionResult
base, work = Path(sys.argv[1]), Path(sys.argv[2])
cases = {
    "history_dev_zero": ("history.json", "zero"),
    "toml_dev_zero": ("config.resolved.toml", "zero"),
    "summary_fifo": ("summary.json", "fifo"),
    "latent_fifo": ("latent.pt", "fifo"),
    "tuned_dev_zero": ("tuned.safetensors", "zero"),
}
out = {}
for case, (name, kind) in cases.items():
    d = work / case
    shutil.copytree(base, d)
    (d / name).unlink()
    if kind == "zero":
        (d / name).symlink_to("/dev/zero")
    else:
        os.mkfifo(d / name)
    try:
        InversionResult.load(d)
        out[case] = "loaded"
    except Exception as exc:
        out[case] = type(exc).__name__ + ": " + str(exc)
print(json.dumps(out))
"""


def test_special_files_in_a_result_folder_are_refused_without_reading(tmp_path: Path) -> None:
    # In a child process with an address-space limit and a timeout: before the fix, /dev/zero was
    # read until memory ran out and a FIFO blocked forever; neither may take this test process down.
    base = _save(tmp_path / "base")
    limit = 8 << 30

    def limit_memory() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = {**os.environ, "PYTHONPATH": str(_ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(_SPECIAL_FILES_SCRIPT),
            str(base),
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        preexec_fn=limit_memory,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = {
        "history_dev_zero": "history.json: is a character device",
        "toml_dev_zero": "config.resolved.toml: is a character device",
        "summary_fifo": "summary.json: is a FIFO (named pipe)",
        "latent_fifo": "latent.pt: is a FIFO (named pipe)",
        "tuned_dev_zero": "tuned.safetensors: is a character device",
    }
    for case, text in expected.items():
        assert results[case].startswith("InputFileError: ") and text in results[case], (
            case,
            results[case],
        )


def test_oversized_history_is_refused(tmp_path: Path, monkeypatch) -> None:
    import sym3d.engine.result_files as result_files

    d = _save(tmp_path / "r")
    monkeypatch.setattr(result_files, "MAX_JSON_BYTES", 16)
    with pytest.raises(
        InputFileError, match=r"history\.json: is \d+ bytes; history\.json may be at most 16 bytes"
    ):
        InversionResult.load(d)


def test_latent_with_a_foreign_global_is_refused_without_torch_advice(tmp_path: Path) -> None:
    import argparse

    d = _save(tmp_path / "r")
    meta = torch.load(d / "latent.pt", weights_only=True)
    meta["extra"] = argparse.Namespace(a=1)
    torch.save(meta, d / "latent.pt")
    with pytest.raises(CheckpointError) as info:
        InversionResult.load(d)
    message = str(info.value)
    assert "latent.pt: refused: it holds the global 'argparse.Namespace'" in message
    assert "weights_only" not in message and "\n" not in message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"ws": torch.full((1, 4, 8), float("nan"))}, r"ws: expected a finite float tensor"),
        ({"ws": torch.zeros(4, 8)}, r"ws: expected .* got a torch\.float32 tensor \[4, 8\]"),
        ({"ws": torch.zeros(1, 100_000, 8)}, r"ws: expected .*num_ws <= 64"),
        ({"camera": torch.zeros(1, 24)}, r"camera: expected a finite tensor \[1, 25\]"),
        ({"generator": "../../evil"}, r"generator: expected a short name"),
        ({"generator": 7}, r"generator: expected a short name"),
        (
            {"generator_options": "[" * 100_000},
            r"generator_options: expected a JSON text of at most",
        ),
        (
            {"generator_options": "[" * 60_000 + "]" * 60_000},
            r"generator_options: expected a JSON text",
        ),
        (
            {"generator_options": "[" * 30_000 + "]" * 30_000},
            r"generator_options: maximum recursion depth|expected a JSON object",
        ),
        ({"generator_options": "[1, 2]"}, r"generator_options: expected a JSON object, got list"),
        ({"format": "other/9"}, r"unknown result format 'other/9'"),
    ],
    ids=[
        "ws_nan",
        "ws_2d",
        "ws_huge",
        "camera_shape",
        "generator_path",
        "generator_int",
        "options_long",
        "options_deep_long",
        "options_deep",
        "options_list",
        "format",
    ],
)
def test_damaged_latent_fields_are_refused(tmp_path: Path, changes: dict, expected: str) -> None:
    d = _save(tmp_path / "r")
    _edit_latent(d, **changes)
    with pytest.raises(CheckpointError, match=expected) as info:
        InversionResult.load(d)
    assert str(info.value).startswith(str(d / "latent.pt"))


def test_damaged_tuned_and_history_name_the_file(tmp_path: Path) -> None:
    d = _save(tmp_path / "r")
    (d / "tuned.safetensors").write_bytes(b"junk\n")
    with pytest.raises(
        CheckpointError, match=r"tuned\.safetensors: not a readable safetensors file"
    ):
        InversionResult.load(d)
    d = _save(tmp_path / "r2")
    (d / "history.json").write_text('{"not": "a list"}')
    with pytest.raises(CheckpointError, match=r"history\.json: expected a JSON list, got dict"):
        InversionResult.load(d)


def test_a_saved_result_loads_back(tmp_path: Path) -> None:
    d = _save(tmp_path / "r", options={"resolution": 16})
    loaded = InversionResult.load(d)
    assert loaded.generator_name == "tiny" and loaded.generator_options == {"resolution": 16}
    assert loaded.ws.shape == (1, 4, 8) and torch.equal(loaded.tuned["dummy"], torch.ones(2))
    assert loaded.history[0]["loss"] == 1.0 and loaded.summary == {"steps": 1}


# --------------------------------------------------------------------------------------------
# Item 9: stored generator options are checked, a stored network is never opened
# --------------------------------------------------------------------------------------------


def test_render_never_opens_a_network_the_result_names(tmp_path: Path, monkeypatch, capsys) -> None:
    import sym3d_eg3d.checkpoints as ck

    opened: list[str] = []
    monkeypatch.setattr(ck, "load_checkpoint", lambda path, **kw: opened.append(str(path)))
    target = tmp_path / "somewhere" / "other.pkl"
    d = _save(
        tmp_path / "r",
        generator="eg3d",
        options={"network": str(target), "network_sha256": "ab" * 32},
        num_ws=14,
        w_dim=512,
    )
    code = main(["render", str(d), "--out", str(tmp_path / "out"), *RENDER_FAST])
    err = capsys.readouterr().err
    assert code == 2 and opened == []
    assert f"checkpoint '{target}' (sha256 {'ab' * 32})" in err and "pass --network PATH" in err
    assert not (tmp_path / "out").exists()


def test_out_of_range_stored_options_are_refused_before_building(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    import sym3d.testing.tiny as tiny

    def never(*args, **kwargs):
        raise AssertionError("the generator was built from unchecked options")

    monkeypatch.setattr(tiny.TinyGenerator3D, "__init__", never)
    d = _save(tmp_path / "r")
    _edit_latent(d, generator_options=json.dumps({"resolution": 30_000, "num_samples": 4096}))
    code = main(["render", str(d), "--out", str(tmp_path / "out"), *RENDER_FAST])
    err = capsys.readouterr().err
    assert code == 2
    assert "generator_options.resolution: expected an integer in [1, 512], got 30000" in err
    assert "generator_options.num_samples: expected an integer in [1, 512], got 4096" in err


@pytest.mark.parametrize(
    ("generator", "options", "expected"),
    [
        ("tiny", {"evil": 1}, "generator_options.evil: not an option of this generator"),
        ("tiny", {"near": "x"}, "generator_options.near: expected a number"),
        ("eg3d", {"impl": "exec"}, "generator_options.impl: expected one of auto, ref, cuda"),
        (
            "eg3d",
            {"neural_resolution": 1 << 20},
            "generator_options.neural_resolution: expected an integer in [1, 1024]",
        ),
        ("eg3d", {"init_kwargs": [1]}, "generator_options.init_kwargs: expected an object"),
        (
            "symheads",
            {"residual": {"resolution": 100_000}},
            "generator_options.residual.resolution: expected an integer",
        ),
        (
            "symheads",
            {"render_settings": {"num_coarse": 10**9}},
            "render_settings.num_coarse: expected an integer",
        ),
        (
            "plugin-x",
            {"size": "x" * 5000},
            "generator_options.size: a string of more than 1024 characters",
        ),
        ("plugin-x", {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}, "nested more than 4 levels"),
        ("plugin-x", {"n": float("inf")}, "generator_options.n: not a finite number"),
    ],
)
def test_stored_options_schema(generator: str, options: dict, expected: str) -> None:
    with pytest.raises(CheckpointError, match="damaged or edited") as info:
        check_stored_options(generator, options, result_dir="R", network_given=False)
    assert expected in str(info.value)


def test_valid_stored_options_pass_and_the_network_is_dropped() -> None:
    options = {"network": "/x.pkl", "network_sha256": "ab", "neural_resolution": 64, "impl": "auto"}
    assert check_stored_options("eg3d", options, result_dir="R", network_given=True) == {
        "neural_resolution": 64,
        "impl": "auto",
    }
    with pytest.raises(UserInputError, match="pass --network PATH"):
        check_stored_options("eg3d", options, result_dir="R", network_given=False)
    assert check_stored_options("plugin-x", {"size": 3}, result_dir="R", network_given=False) == {
        "size": 3
    }


def test_network_with_another_sha256_is_refused() -> None:
    stored = {"network": "/x.pkl", "network_sha256": "aa" * 32}
    same = SimpleNamespace(build_options={"network": "/y", "network_sha256": "aa" * 32})
    other = SimpleNamespace(build_options={"network": "/y", "network_sha256": "bb" * 32})
    check_network_matches(stored, same, result_dir="R")
    check_network_matches(
        {"network": "/x.pkl"}, other, result_dir="R"
    )  # nothing recorded: nothing to compare
    with pytest.raises(UserInputError, match=f"--network has sha256 {'bb' * 32}"):
        check_network_matches(stored, other, result_dir="R")


def test_eg3d_result_renders_with_the_recorded_checkpoint_only(tmp_path: Path) -> None:
    from sym3d.app.commands import _load_result
    from sym3d_eg3d import checkpoints as ck
    from tests.conftest import eg3d_fixture_dir

    pkl = eg3d_fixture_dir() / "eg3d_small_persistence_like.pkl"
    if not pkl.exists():
        pytest.skip(f"EG3D fixture {pkl} not found (set SYM3D_EG3D_FIXTURES)")
    sha = ck.read_official_pickle(pkl).sha256
    d = _save(
        tmp_path / "r",
        generator="eg3d",
        options={"network": "/moved/away.pkl", "network_sha256": sha},
        num_ws=14,
        w_dim=512,
    )
    meta = torch.load(d / "latent.pt", weights_only=True)
    assert meta["format"] == RESULT_FORMAT
    result, gen = _load_result(d, pkl, "cpu")  # the same checkpoint under another path: accepted
    assert gen.build_options["network_sha256"] == sha and result.generator_name == "eg3d"
    G = ck.load_checkpoint(pkl)
    retuned = ck.save_generator(G, tmp_path / "retuned")  # other weights: another sha256
    with pytest.raises(UserInputError, match="its tuned weights apply only to the checkpoint"):
        _load_result(d, retuned, "cpu")
    from sym3d_eg3d.adapter import build_eg3d

    with pytest.raises(UserInputError, match=f"has sha256 {sha}, not the expected {'00' * 32}"):
        build_eg3d(pkl, network_sha256="00" * 32)  # options replayed from a result are checked too


def test_schemas_list_exactly_the_options_of_the_built_in_generators() -> None:
    # A new constructor option must be added to the schema, or results using it would be refused.
    import inspect

    import attrs

    from sym3d.app.result_options import _SCHEMAS, NETWORK_KEYS
    from sym3d.testing.tiny import TinyGenerator3D
    from sym3d_eg3d.adapter import build_eg3d
    from sym3d_extras.synthetic.generator import SymHeadsGenerator
    from sym3d_extras.synthetic.render import RenderSettings
    from sym3d_extras.synthetic.residual import ResidualConfig

    for factory, name, not_stored in (
        (TinyGenerator3D, "tiny", ()),
        (SymHeadsGenerator, "symheads", ()),
        (build_eg3d, "eg3d", (*NETWORK_KEYS, "device")),
    ):
        params = set(inspect.signature(factory).parameters) - {"self", *not_stored}
        assert params == set(_SCHEMAS[name]), name
    for cls, key in ((RenderSettings, "render_settings"), (ResidualConfig, "residual")):
        assert {f.name for f in attrs.fields(cls)} == set(_SCHEMAS["symheads"][key][1]), key
