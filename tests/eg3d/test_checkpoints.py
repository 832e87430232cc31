"""Safe loading of official EG3D pickles, conversion to safetensors + JSON, and hostile pickles."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import pickletools
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sym3d.errors import CheckpointError, ConfigError, ResultExistsError, UnsafeCheckpointError
from sym3d_eg3d import checkpoints as ck
from sym3d_eg3d.safe_pickle import (
    ALLOWED_GLOBALS,
    RestrictedUnpickler,
    TensorRecord,
    decode_storage_blob,
    unpickle_official,
)


def _networks_ready() -> bool:
    try:
        from sym3d_eg3d.networks import build_generator  # noqa: F401
    except ImportError:
        return False
    return True


needs_networks = pytest.mark.skipif(
    not _networks_ready(), reason="sym3d_eg3d.networks.build_generator is not available yet"
)


@pytest.fixture(scope="module")
def official(eg3d_small_pkl: Path) -> ck.OfficialCheckpoint:
    return ck.read_official_pickle(eg3d_small_pkl)


# --------------------------------------------------------------------------------------------
# Hand-assembled pickles (so that nothing hostile ever exists as a Python object in the test)
# --------------------------------------------------------------------------------------------


def _str(s: str) -> bytes:
    raw = s.encode()
    return (
        b"\x8c" + bytes([len(raw)]) + raw
        if len(raw) < 256
        else b"X" + struct.pack("<I", len(raw)) + raw
    )


def _global(module: str, name: str) -> bytes:
    return _str(module) + _str(name) + b"\x93"  # STACK_GLOBAL


def _body(obj: object) -> bytes:
    """Opcodes that push ``obj``, without PROTO, FRAME and STOP (small objects: one frame at most)."""
    data = pickle.dumps(obj, protocol=4)
    assert data[:2] == b"\x80\x04" and data[-1:] == b"."
    body = data[11:-1] if data[2:3] == b"\x95" else data[2:-1]
    assert b"\x95" not in {
        op.code.encode("latin-1") for op, _, _ in pickletools.genops(data[:2] + body + b".")
    }
    return body


def _call(func: bytes, *args: object) -> bytes:
    return func + b"(" + b"".join(_body(a) for a in args) + b"tR"  # MARK args TUPLE REDUCE


def _snapshot(g_ema: bytes) -> bytes:
    return b"\x80\x04}" + _str("G_ema") + g_ema + b"s."  # PROTO 4, {'G_ema': ...}


def _persistent(meta: dict) -> bytes:
    return _call(_global("torch_utils.persistence", "_reconstruct_persistent_obj"), meta)


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _generator_meta(module_src: str = "# source omitted", **state: object) -> dict:
    base = {
        "training": False,
        "_parameters": {},
        "_buffers": {},
        "_non_persistent_buffers_set": set(),
        "_modules": {},
    }
    base.update(
        {"rendering_kwargs": {"c_scale": 1.0}, "_init_args": (), "_init_kwargs": {"z_dim": 4}}
    )
    base.update(state)
    return {
        "type": "class",
        "version": 6,
        "module_src": module_src,
        "class_name": "TriPlaneGenerator",
        "state": base,
    }


# --------------------------------------------------------------------------------------------
# Reading the official-format fixture
# --------------------------------------------------------------------------------------------


def test_fixture_state_dict_is_bit_identical_and_ordered(
    official: ck.OfficialCheckpoint, eg3d_small: dict
) -> None:
    expected = eg3d_small["state_dict"]
    assert len(official.state_dict) == 178
    assert list(official.state_dict) == list(expected)
    assert next(iter(official.state_dict)) == "dataset_label_std"
    for key, ref in expected.items():
        got = official.state_dict[key]
        assert got.dtype == ref.dtype and got.shape == ref.shape, key
        assert torch.equal(got.view(torch.int32), ref.view(torch.int32)), key  # bit-identical
        assert not got.requires_grad
    assert sum(official.state_dict[k].numel() for k in official.parameter_names) == 1_953_224
    assert len(official.parameter_names) == 132


def test_fixture_kwargs_and_runtime_attributes(
    official: ck.OfficialCheckpoint, eg3d_small: dict
) -> None:
    assert official.init_kwargs == eg3d_small["init_kwargs"]
    assert json.dumps(official.init_kwargs) == json.dumps(
        eg3d_small["init_kwargs"]
    )  # same key order too
    assert type(official.init_kwargs["mapping_kwargs"]) is dict  # EasyDict -> dict
    assert type(official.init_kwargs["sr_kwargs"]) is dict
    assert official.rendering_kwargs == eg3d_small["rendering_kwargs_attr"]
    assert official.neural_rendering_resolution == 32
    assert torch.equal(official.plane_axes, eg3d_small["plane_axes"])
    assert official.plane_axes_mode == "released"
    assert official.class_name == "TriPlaneGenerator"
    assert official.top_level_keys == ("training_set_kwargs", "G", "D", "G_ema", "augment_pipe")
    digest = hashlib.sha256(official.path.read_bytes()).hexdigest()
    assert official.sha256 == digest and official.size_bytes == official.path.stat().st_size
    placeholder = hashlib.sha256(b"# source omitted").hexdigest()
    assert official.module_src_sha256["TriPlaneGenerator"] == placeholder
    assert {"SynthesisLayer", "MappingNetwork", "SuperresolutionHybrid2X"} <= set(
        official.module_src_sha256
    )


def test_reading_is_frozen(official: ck.OfficialCheckpoint) -> None:
    with pytest.raises(AttributeError):
        official.neural_rendering_resolution = 64  # type: ignore[misc]


def test_fixture_names_only_allowed_globals(eg3d_small_pkl: Path) -> None:
    seen: list[tuple[str, str]] = []

    class Recording(RestrictedUnpickler):
        def find_class(self, module: str, name: str):
            seen.append((module, name))
            return super().find_class(module, name)

    with eg3d_small_pkl.open("rb") as f:
        Recording(f, source=str(eg3d_small_pkl)).load()
    assert len(seen) == len(set(seen)) == 14  # each global once, later uses come from the memo
    assert set(seen) <= set(ALLOWED_GLOBALS)
    assert ("training.augment", "AugmentPipe") not in ALLOWED_GLOBALS


def test_storage_decoder_matches_torch_for_various_tensors() -> None:
    tensors = {
        "f32_transposed": torch.arange(6.0).reshape(2, 3).t(),
        "f16": torch.linspace(-2, 2, 7, dtype=torch.float16),
        "i64_view": torch.arange(10)[3:8],
        "bool": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 3),
        "param": torch.nn.Parameter(torch.randn(3, 2)),
    }
    data = pickle.dumps(tensors, protocol=4)
    restored = RestrictedUnpickler(io.BytesIO(data), source="<test>").load()
    for name, ref in tensors.items():
        assert isinstance(restored[name], TensorRecord), name  # never a live tensor in the stream
        got = restored[name].tensor()
        assert type(got) is torch.Tensor and got.dtype == ref.dtype and got.shape == ref.shape, name
        assert got.stride() == ref.stride() and torch.equal(got, ref.detach()), name


def test_storage_decoder_refuses_malformed_blobs() -> None:
    blob = next(
        a
        for o, a, _ in pickletools.genops(pickle.dumps(torch.ones(4)))
        if o.name.endswith("BINBYTES")
    )
    assert decode_storage_blob(blob).numel == 4
    with pytest.raises(CheckpointError, match="truncated"):
        decode_storage_blob(blob[:-3])
    with pytest.raises(CheckpointError):
        decode_storage_blob(b"\x80\x02K\x01." * 5)
    with pytest.raises(CheckpointError, match="expected bytes"):
        decode_storage_blob("not bytes")  # type: ignore[arg-type]


def test_tensor_outside_its_storage_is_refused() -> None:
    blob = next(
        a
        for o, a, _ in pickletools.genops(pickle.dumps(torch.ones(4)))
        if o.name.endswith("BINBYTES")
    )
    tensor = _call(_global("torch._utils", "_rebuild_tensor_v2"))[:-2]  # func + MARK, args follow
    data = (
        b"\x80\x04"
        + tensor
        + _call(_global("torch.storage", "_load_from_bytes"), blob)
        + _body(2)
        + _body((4,))
        + _body((1,))
        + _body(False)
        + _body({})
        + b"tR."
    )
    with pytest.raises(CheckpointError, match="reaches element 5 of a storage holding 4"):
        unpickle_official(io.BytesIO(data), source="oob.pkl")


# --------------------------------------------------------------------------------------------
# Hostile and broken files
# --------------------------------------------------------------------------------------------


class _RunsCode:
    """Pickles as a call to ``func(*args)``; only ever pickled, never unpickled unsafely."""

    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple:
        return (self.func, self.args)


@pytest.mark.parametrize(
    ("make_payload", "qualified"),
    [
        (lambda m: _RunsCode(os.system, f"touch {m}"), f"{os.system.__module__}.system"),
        (lambda m: _RunsCode(subprocess.call, ["touch", str(m)]), "subprocess.call"),
        (lambda m: _RunsCode(exec, f"open({str(m)!r}, 'w').close()"), "builtins.exec"),
        (lambda m: _RunsCode(eval, f"open({str(m)!r}, 'w')"), "builtins.eval"),
    ],
    ids=["os.system", "subprocess.call", "builtins.exec", "builtins.eval"],
)
def test_code_execution_payload_is_refused(tmp_path: Path, make_payload, qualified: str) -> None:
    marker = tmp_path / "pwned"
    snapshot = {"training_set_kwargs": {}, "G_ema": make_payload(marker)}
    path = _write(tmp_path, "evil.pkl", pickle.dumps(snapshot, protocol=4))
    with pytest.raises(UnsafeCheckpointError) as info:
        ck.read_official_pickle(path)
    message = str(info.value)
    assert f"'{qualified}'" in message and str(path) in message
    assert "Nothing from the file was imported or executed" in message
    module, name = qualified.rsplit(".", 1)
    assert (info.value.module, info.value.name) == (module, name)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError):
        ck.load_checkpoint(path)
    assert not marker.exists()


def test_payload_after_legitimate_content_is_refused(tmp_path: Path, eg3d_small_pkl: Path) -> None:
    marker = tmp_path / "pwned"
    tensor = _body(torch.ones(3))  # legitimate globals first
    data = b"\x80\x04" + tensor + b"0" + _call(_global("posix", "system"), f"touch {marker}") + b"."
    with pytest.raises(UnsafeCheckpointError, match=r"'posix\.system'"):
        ck.read_official_pickle(_write(tmp_path, "late.pkl", data))
    assert not marker.exists()


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("training.evil", "Payload"),
        ("builtins", "eval"),
        ("builtins", "getattr"),
        ("builtins", "__import__"),
        ("torch", "load"),
        ("numpy", "load"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("torch._utils", "_rebuild_parameter_with_state"),
        ("torch_utils.persistence", "_src_to_module"),
        ("training.augment", "AugmentPipe"),
        ("copyreg", "_reconstructor"),
        ("torch_utils.persistence", "_reconstruct_persistent_obj.__globals__"),
        ("collections", "OrderedDict.fromkeys"),
        ("training.triplane", "TriPlaneGenerator"),
    ],
)
def test_unlisted_globals_are_refused(tmp_path: Path, module: str, name: str) -> None:
    data = _snapshot(_global(module, name) + b")\x81")  # STACK_GLOBAL, EMPTY_TUPLE, NEWOBJ
    with pytest.raises(UnsafeCheckpointError) as info:
        ck.read_official_pickle(_write(tmp_path, "x.pkl", data))
    assert f"'{module}.{name}'" in str(info.value)


def test_getattr_eval_gadget_via_stack_global_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    # getattr(builtins-module-object, 'eval')("open(marker,'w')") assembled with STACK_GLOBAL.
    gadget = (
        _global("builtins", "getattr")
        + b"("
        + _global("importlib", "import_module")
        + b"("
        + _body("builtins")
        + b"tR"
        + _body("eval")
        + b"tR("
        + _body(f"open({str(marker)!r}, 'w')")
        + b"tR"
    )
    with pytest.raises(UnsafeCheckpointError, match=r"'builtins\.getattr'"):
        ck.read_official_pickle(_write(tmp_path, "gadget.pkl", _snapshot(gadget)))
    assert not marker.exists()


def test_protocol0_global_opcode_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    data = (
        b"\x80\x02cbuiltins\nexec\n(X"
        + struct.pack("<I", 40)
        + f"open({str(marker)!r},'w')".ljust(40).encode()
        + b"tR."
    )
    with pytest.raises(UnsafeCheckpointError, match=r"'builtins\.exec'"):
        ck.read_official_pickle(_write(tmp_path, "p0.pkl", data))
    assert not marker.exists()


def test_payload_hidden_in_a_storage_blob_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    blob = pickle.dumps(_RunsCode(os.system, f"touch {marker}"), protocol=2)
    data = _snapshot(_call(_global("torch.storage", "_load_from_bytes"), blob))
    with pytest.raises(UnsafeCheckpointError, match="system"):
        ck.read_official_pickle(_write(tmp_path, "blob.pkl", data))
    assert not marker.exists()


def test_object_dtype_scalar_gadget_is_refused(tmp_path: Path) -> None:
    dtype = (
        _call(_global("numpy", "dtype"), "O", False, True)
        + _body((3, "|", None, None, None, -1, -1, 63))
        + b"b"
    )
    scalar = _global("numpy.core.multiarray", "scalar") + b"(" + dtype + _body(b"\x00" * 8) + b"tR"
    with pytest.raises(CheckpointError, match="not a plain numeric type"):
        ck.read_official_pickle(_write(tmp_path, "dtype.pkl", _snapshot(scalar)))


def test_module_src_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    src = f"import os\nopen({str(marker)!r}, 'w').write('exec ran')\nos.system('touch {marker}')\n"
    path = _write(tmp_path, "src.pkl", _snapshot(_persistent(_generator_meta(module_src=src))))
    ckpt = ck.read_official_pickle(path)
    assert not marker.exists()
    assert ckpt.state_dict == {} and ckpt.init_kwargs == {"z_dim": 4}
    assert ckpt.neural_rendering_resolution == 64  # absent attribute: a fresh generator's value
    assert ckpt.module_src_sha256 == {"TriPlaneGenerator": hashlib.sha256(src.encode()).hexdigest()}


def test_persistent_meta_with_wrong_version_is_refused(tmp_path: Path) -> None:
    meta = _generator_meta()
    meta["version"] = 5
    with pytest.raises(CheckpointError, match="persistence version 5; expected 6"):
        ck.read_official_pickle(_write(tmp_path, "v5.pkl", _snapshot(_persistent(meta))))


def test_truncated_fixture_is_refused(tmp_path: Path, eg3d_small_pkl: Path) -> None:
    data = eg3d_small_pkl.read_bytes()
    for cut in (len(data) // 2, len(data) - 1, 3):
        path = _write(tmp_path, f"cut{cut}.pkl", data[:cut])
        with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
            ck.read_official_pickle(path)
        assert str(path) in str(info.value)
        assert not isinstance(info.value, UnsafeCheckpointError)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.pkl", b"", "the file is empty"),
        ("face.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "PNG image"),
        ("notes.pkl", b"just some text\n", "does not start with a pickle header"),
        ("model.pt", b"PK\x03\x04" + b"\x00" * 64, "zip archive"),
    ],
)
def test_non_pickles_are_refused(tmp_path: Path, name: str, content: bytes, expected: str) -> None:
    path = _write(tmp_path, name, content)
    with pytest.raises(CheckpointError, match=expected) as info:
        ck.read_official_pickle(path)
    assert str(path) in str(info.value)
    with pytest.raises(CheckpointError, match=expected):
        ck.load_checkpoint(path)


def test_missing_g_ema_and_wrong_class_are_refused(tmp_path: Path) -> None:
    no_g_ema = b"\x80\x04}" + _str("G") + _body(None) + b"s."
    with pytest.raises(CheckpointError, match=r"no 'G_ema' entry \(found keys: 'G'\)"):
        ck.read_official_pickle(_write(tmp_path, "nog.pkl", no_g_ema))
    meta = _generator_meta()
    meta["class_name"] = "Generator"
    with pytest.raises(
        CheckpointError, match="'G_ema' is a Generator; expected an EG3D TriPlaneGenerator"
    ):
        ck.read_official_pickle(_write(tmp_path, "sg2.pkl", _snapshot(_persistent(meta))))
    with pytest.raises(CheckpointError, match="holds a list"):
        ck.read_official_pickle(_write(tmp_path, "list.pkl", pickle.dumps([1, 2])))
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        ck.read_official_pickle(tmp_path / "missing.pkl")


# --------------------------------------------------------------------------------------------
# Converted format
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(
    not Path("/proc/self/fd").is_dir(), reason="needs /proc to name file descriptors"
)
def test_convert_writes_through_the_one_atomic_writer(
    tmp_path: Path, eg3d_small_pkl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each file: one fsync of the temporary file, the rename, one fsync of the folder."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        events.append(("replace", os.path.basename(os.fspath(dst))))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    out = ck.convert_checkpoint(eg3d_small_pkl, tmp_path / "conv", verify=False)
    assert [k for k, _ in events] == ["fsync", "replace", "fsync"] * 2, events
    assert [v for k, v in events if k == "replace"] == ["generator.safetensors", "generator.json"]
    assert {v for k, v in events[2::3]} == {str(out.resolve())}


def test_convert_without_networks_round_trips_bit_identical(
    tmp_path: Path, eg3d_small_pkl: Path, official
) -> None:
    out = ck.convert_checkpoint(eg3d_small_pkl, tmp_path / "conv", verify=False)
    assert out == tmp_path / "conv"
    assert sorted(p.name for p in out.iterdir()) == [
        "generator.json",
        "generator.safetensors",
    ]  # no temp files left
    config = json.loads((out / "generator.json").read_text())
    assert config["format"] == "sym3d-eg3d-generator" and config["format_version"] == 1
    assert config["init_kwargs"] == official.init_kwargs
    assert config["rendering_kwargs"] == official.rendering_kwargs
    assert config["neural_rendering_resolution"] == 32 and config["plane_axes"] == "released"
    assert config["source"] == {
        "kind": "official_pickle",
        "file_name": eg3d_small_pkl.name,
        "sha256": official.sha256,
        "size_bytes": official.size_bytes,
    }
    assert config["sym3d_version"] and config["num_parameters"] == 1_953_224
    assert (
        config["weights_sha256"]
        == hashlib.sha256((out / "generator.safetensors").read_bytes()).hexdigest()
    )
    for source in (out, out / "generator.safetensors", out / "generator.json"):
        conv = ck.read_converted(source)
        assert list(conv.state_dict) == list(official.state_dict)
        for key, ref in official.state_dict.items():
            assert torch.equal(conv.state_dict[key].view(torch.int32), ref.view(torch.int32)), key


def test_lone_safetensors_uses_embedded_config(
    tmp_path: Path, eg3d_small_pkl: Path, official
) -> None:
    out = ck.convert_checkpoint(eg3d_small_pkl, tmp_path / "conv", verify=False)
    lone = tmp_path / "copied.safetensors"
    shutil.copy(out / "generator.safetensors", lone)
    conv = ck.read_converted(lone)
    assert conv.config_path is None and conv.config["init_kwargs"] == official.init_kwargs
    assert list(conv.state_dict) == list(official.state_dict)


def test_overwrite_is_refused_unless_asked(tmp_path: Path, eg3d_small_pkl: Path) -> None:
    out = ck.convert_checkpoint(eg3d_small_pkl, tmp_path / "conv", verify=False)
    before = (out / "generator.json").read_bytes()
    with pytest.raises(ResultExistsError, match="refusing to overwrite") as info:
        ck.convert_checkpoint(eg3d_small_pkl, out, verify=False)
    assert "--overwrite" in str(info.value)
    assert (out / "generator.json").read_bytes() == before
    ck.convert_checkpoint(eg3d_small_pkl, out, overwrite=True, verify=False)
    assert (out / "generator.json").read_bytes() == before  # deterministic output


def test_mismatched_or_corrupt_conversion_is_refused(tmp_path: Path, eg3d_small_pkl: Path) -> None:
    out = ck.convert_checkpoint(eg3d_small_pkl, tmp_path / "conv", verify=False)
    weights = (out / "generator.safetensors").read_bytes()
    tampered = bytearray(weights)
    tampered[-1] ^= 0xFF
    (out / "generator.safetensors").write_bytes(bytes(tampered))
    with pytest.raises(CheckpointError, match="does not match generator.json"):
        ck.read_converted(out)
    (out / "generator.safetensors").write_bytes(weights)
    config = json.loads((out / "generator.json").read_text())
    config["format_version"] = 99
    config["plane_axes"] = "yz"
    (out / "generator.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError) as info:
        ck.read_converted(out)
    assert (
        "format_version" in str(info.value)
        and "plane_axes" in str(info.value)
        and "upgrade sym3d" in str(info.value)
    )
    (out / "generator.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        ck.read_converted(out)


def test_load_checkpoint_dispatch_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such file or folder"):
        ck.load_checkpoint(tmp_path / "nothing")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(CheckpointError, match="folder has no generator.safetensors"):
        ck.load_checkpoint(tmp_path / "empty_dir")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        ck.load_checkpoint(_write(tmp_path, "junk.safetensors", b"junk"))


def test_cli_module_is_import_light() -> None:
    code = "import sys, sym3d_eg3d.cli; assert 'torch' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_cli_convert(tmp_path: Path, eg3d_small_pkl: Path) -> None:
    from typer.testing import CliRunner

    from sym3d_eg3d.cli import app

    args = ["convert", str(eg3d_small_pkl), str(tmp_path / "out")]
    if not _networks_ready():
        args.append("--no-verify")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "178 tensors, 1,953,224 parameters" in result.output
    assert str(tmp_path / "out" / "generator.safetensors") in result.output
    again = CliRunner().invoke(app, args)
    assert isinstance(again.exception, ResultExistsError)
    assert CliRunner().invoke(app, [*args, "--overwrite"]).exit_code == 0


# --------------------------------------------------------------------------------------------
# End to end with the sym3d networks (parity with the official outputs)
# --------------------------------------------------------------------------------------------


def _synthesize(G, fixture: dict) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        ws = G.mapping(fixture["z"], fixture["c"])
        out = G.synthesis(ws, fixture["c"], noise_mode="const", random="midpoint")
    return {"ws": ws, "image": out["image"], "image_depth": out["image_depth"]}


def _assert_parity(G, fixture: dict) -> dict[str, torch.Tensor]:
    outputs = _synthesize(G, fixture)
    for key, got in outputs.items():
        ref = fixture[key]
        assert got.shape == ref.shape, key
        err = (got - ref).abs().max().item()
        assert err <= 1e-4, f"{key}: max abs diff {err:.3g}"
    return outputs


@needs_networks
def test_load_official_pickle_reproduces_parity_outputs(
    eg3d_small_pkl: Path, eg3d_small: dict
) -> None:
    G = ck.load_checkpoint(eg3d_small_pkl)
    assert not G.training
    assert G.neural_rendering_resolution == 32
    assert G.rendering_kwargs == eg3d_small["rendering_kwargs_attr"]
    state = G.state_dict()
    assert list(state) == list(eg3d_small["state_dict"])
    assert all(torch.equal(state[k], v) for k, v in eg3d_small["state_dict"].items())
    _assert_parity(G, eg3d_small)


@needs_networks
def test_convert_then_load_gives_same_generator(
    tmp_path: Path, eg3d_small_pkl: Path, eg3d_small: dict
) -> None:
    out = ck.convert_checkpoint(
        eg3d_small_pkl, tmp_path / "conv"
    )  # verify=True builds the networks
    for source in (out, out / "generator.safetensors"):
        G = ck.load_checkpoint(source)
        assert not G.training and G.neural_rendering_resolution == 32
        state = G.state_dict()
        assert list(state) == list(eg3d_small["state_dict"])
        assert all(torch.equal(state[k], v) for k, v in eg3d_small["state_dict"].items())
    _assert_parity(G, eg3d_small)


@needs_networks
def test_save_generator_round_trip(tmp_path: Path, eg3d_small_pkl: Path) -> None:
    G = ck.load_checkpoint(eg3d_small_pkl)
    with torch.no_grad():
        G.backbone.mapping.w_avg.add_(1.0)  # a "tuned" generator
    G.neural_rendering_resolution = 64
    out = ck.save_generator(G, tmp_path / "tuned", source={"note": "test"})
    config = json.loads((out / "generator.json").read_text())
    assert config["source"] == {"kind": "module", "note": "test"}
    assert config["neural_rendering_resolution"] == 64
    H = ck.load_checkpoint(out)
    assert H.neural_rendering_resolution == 64
    assert all(
        torch.equal(a, b)
        for a, b in zip(G.state_dict().values(), H.state_dict().values(), strict=True)
    )
    with pytest.raises(ResultExistsError):
        ck.save_generator(G, out)


@needs_networks
def test_strict_load_lists_missing_and_unexpected_keys(
    tmp_path: Path, eg3d_small_pkl: Path
) -> None:
    out = ck.convert_checkpoint(eg3d_small_pkl, tmp_path / "conv")
    conv = ck.read_converted(out)
    state = dict(conv.state_dict)
    state.pop("decoder.net.0.weight")
    state["decoder.extra"] = torch.zeros(1)
    state["backbone.mapping.w_avg"] = torch.zeros(7)
    config = {k: v for k, v in conv.config.items() if k != "weights_sha256"}
    config["tensor_names"] = list(state)
    ck._write_converted(tmp_path / "broken", state, config, overwrite=False)
    with pytest.raises(CheckpointError) as info:
        ck.load_checkpoint(tmp_path / "broken")
    message = str(info.value)
    assert "1 missing (decoder.net.0.weight)" in message
    assert "1 unexpected (decoder.extra)" in message
    assert "backbone.mapping.w_avg (file [7], model [512])" in message


def test_plane_axes_modes(official: ck.OfficialCheckpoint) -> None:
    import attrs

    corrected = official.plane_axes.clone()
    corrected[2] = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    assert attrs.evolve(official, plane_axes=corrected).plane_axes_mode == "corrected"
    assert attrs.evolve(official, plane_axes=None).plane_axes_mode == "released"
    custom = attrs.evolve(official, plane_axes=torch.eye(3).expand(3, 3, 3).clone())
    assert custom.plane_axes_mode == "custom"
    with pytest.raises(CheckpointError, match="neither EG3D's released planes"):
        ck._supported_plane_order(custom)


@needs_networks
def test_plane_axes_constants_match_the_networks() -> None:
    from sym3d_eg3d.networks.rendering import plane_axes_matrices

    for mode in ck.PLANE_ORDERS:
        assert torch.equal(torch.tensor(ck._PLANE_AXES[mode]), plane_axes_matrices(mode))


def test_storage_payload_error_names_the_global(tmp_path: Path) -> None:
    blob = pickle.dumps(_RunsCode(os.system, "true"), protocol=2)
    path = _write(
        tmp_path, "blob2.pkl", _snapshot(_call(_global("torch.storage", "_load_from_bytes"), blob))
    )
    with pytest.raises(UnsafeCheckpointError) as info:
        ck.read_official_pickle(path)
    assert str(info.value).startswith(str(path))
    assert (info.value.module, info.value.name) == (os.system.__module__, "system")


def test_expanded_tensor_and_oversized_storage_are_refused() -> None:
    blob = next(
        a
        for o, a, _ in pickletools.genops(pickle.dumps(torch.ones(4)))
        if o.name.endswith("BINBYTES")
    )
    expanded = (
        b"\x80\x04"
        + _call(_global("torch._utils", "_rebuild_tensor_v2"))[:-2]
        + _call(_global("torch.storage", "_load_from_bytes"), blob)
        + b"".join(_body(v) for v in (0, (1 << 40, 4), (0, 1), False, {}))
        + b"tR."
    )
    with pytest.raises(CheckpointError, match="more elements than its storage"):
        unpickle_official(io.BytesIO(expanded), source="x.pkl")
    count_at = len(blob) - 16 - 8
    assert int.from_bytes(blob[count_at : count_at + 8], "little") == 4
    with pytest.raises(CheckpointError, match="wrong element count"):
        decode_storage_blob(
            blob[:count_at] + (1 << 50).to_bytes(8, "little") + blob[count_at + 8 :]
        )


def test_storage_blob_claiming_huge_size_is_refused_before_allocating() -> None:
    numel = 1 << 45  # 128 TiB of float32 if it were allocated
    header = (
        b"\x80\x02(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpu"
        + b"\x8a\x08"
        + numel.to_bytes(8, "little")
        + b"NtQ."
    )
    sys_info = {
        "protocol_version": 1001,
        "little_endian": True,
        "type_sizes": {"short": 2, "int": 4, "long": 4},
    }
    blob = (
        pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
        + pickle.dumps(1001, protocol=2)
        + pickle.dumps(sys_info, protocol=2)
        + header
        + pickle.dumps(["0"], protocol=2)
        + numel.to_bytes(8, "little")
        + b"\x00" * 16
    )
    with pytest.raises(CheckpointError, match="declares 140737488355328 data bytes but holds 16"):
        decode_storage_blob(blob)
