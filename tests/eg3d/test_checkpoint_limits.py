"""Bounded work on hostile EG3D checkpoints: shared objects, BUILD on tensors, size bombs.

Each hostile file is assembled opcode by opcode (``hostile_pickles``). Where the old code would
spin or allocate without end, the test counts the steps of the walk (or replaces the generator
class by a sentinel) and fails after a fixed number of steps instead, so it fails fast on the old
code and asserts the refusal, never a time.
"""

from __future__ import annotations

import io
import json
import math
import struct
from pathlib import Path

import pytest
import torch

from sym3d.errors import CheckpointError, ConfigError
from sym3d_eg3d import checkpoints as ck
from sym3d_eg3d import safe_pickle
from sym3d_eg3d.configs import SMALL
from sym3d_eg3d.networks import build_generator
from sym3d_eg3d.networks import factory as factory_module
from tests.eg3d import hostile_pickles as h


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


class _StepLimit:
    """Wraps a function; fails the test once it has been called more than ``limit`` times."""

    def __init__(self, func, limit: int) -> None:
        self.func, self.limit, self.calls = func, limit, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls > self.limit:
            raise AssertionError(f"more than {self.limit} steps: the walk is not bounded")
        return self.func(*args, **kwargs)


class _NotBuilt:
    """Stands in for TriPlaneGenerator where a test asserts that no model is constructed."""

    def __init__(self, *args, **kwargs) -> None:
        raise AssertionError("a generator was constructed from an unchecked config")


# --------------------------------------------------------------------------------------------
# Sharing through the memo (item 7)
# --------------------------------------------------------------------------------------------


def test_memo_index_out_of_sequence_is_refused_before_unpickling() -> None:
    # CPython sizes its memo table by the largest PUT index: 1 << 24 costs 128 MB, 0x7fffffff 32 GB.
    data = b"\x80\x04K\x01r" + struct.pack("<I", 1 << 24) + b"."
    with pytest.raises(CheckpointError, match="stores memo entry 16777216 after only 0 entries"):
        safe_pickle.unpickle_official(io.BytesIO(data), source="memo.pkl")
    with pytest.raises(CheckpointError, match="stores memo entry"):  # the public class scans too
        safe_pickle.RestrictedUnpickler(io.BytesIO(data), source="memo.pkl").load()


def test_shared_module_graph_is_refused_after_few_steps(tmp_path: Path, monkeypatch) -> None:
    # 41 modules, 2**41 paths from G_ema: the old walk never ends.
    path = _write(tmp_path, "diamond.pkl", h.snapshot(modules=h.diamond_modules(40)))
    assert path.stat().st_size < 10_000
    counter = _StepLimit(ck._module_state, limit=1_000)
    monkeypatch.setattr(ck, "_module_state", counter)
    with pytest.raises(CheckpointError, match="is the same object as .*share no module"):
        ck.read_official_pickle(path)
    assert counter.calls <= 43  # each module once, then the second path to the deepest one


def test_shared_list_graph_in_kwargs_is_refused_within_the_value_budget(
    tmp_path: Path, monkeypatch
) -> None:
    # [0] doubled 40 times through the memo: 2**40 values as JSON, 1.6 KB as a pickle.
    path = _write(
        tmp_path, "lists.pkl", h.snapshot(init_kwargs=h.dict_ops([("z_dim", h.doubling_list(40))]))
    )
    assert path.stat().st_size < 2_000
    counter = _StepLimit(ck._plain, limit=3 * ck._MAX_PLAIN_VALUES)
    monkeypatch.setattr(ck, "_plain", counter)
    with pytest.raises(
        CheckpointError, match=r"G_ema\._init_kwargs\.z_dim.* expands to more than 100,000 values"
    ):
        ck.read_official_pickle(path)
    assert counter.calls <= ck._MAX_PLAIN_VALUES + 1


def test_one_storage_blob_shared_by_many_tensors_is_decoded_once_and_refused(
    tmp_path: Path, monkeypatch
) -> None:
    path = _write(
        tmp_path, "blobs.pkl", h.snapshot(buffers=h.shared_blob_buffers(count=300, numel=1 << 14))
    )
    size = path.stat().st_size
    decoder = _StepLimit(safe_pickle.decode_storage_blob, limit=10)
    monkeypatch.setattr(safe_pickle, "decode_storage_blob", decoder)
    with pytest.raises(
        CheckpointError,
        match=f"300 tensors view 19,660,800 bytes, but the file holds only {size:,}",
    ):
        ck.read_official_pickle(path)
    assert decoder.calls == 1


def test_container_constructors_with_arguments_are_refused() -> None:
    # OrderedDict(shared_list) would copy a memoised container once per call.
    call = h._global("collections", "OrderedDict") + b"(" + h._body([("a", 1)]) + b"tR"
    with pytest.raises(CheckpointError, match="calls collections.OrderedDict with arguments"):
        safe_pickle.unpickle_official(io.BytesIO(b"\x80\x04" + call + b"."), source="od.pkl")
    call = h._global("dnnlib.util", "EasyDict") + b"(" + h._body({"a": 1}) + b"tR"
    with pytest.raises(CheckpointError, match="calls dnnlib.util.EasyDict with arguments"):
        safe_pickle.unpickle_official(io.BytesIO(b"\x80\x04" + call + b"."), source="ed.pkl")


def test_official_fixture_passes_the_opcode_scan(eg3d_small_pkl: Path) -> None:
    with eg3d_small_pkl.open("rb") as f:
        count = safe_pickle.check_opcodes(f, source=str(eg3d_small_pkl))
    assert 10_000 < count < safe_pickle.MAX_OPCODES


# --------------------------------------------------------------------------------------------
# BUILD on tensors and storages (item 10)
# --------------------------------------------------------------------------------------------


def test_build_on_a_tensor_is_refused(tmp_path: Path) -> None:
    # Tensor.__setstate__ -> set_(itself, 0, (65536,), (1,)) would grow the empty storage into
    # 256 KB of uninitialised memory, which `convert --no-verify` then wrote out.
    path = _write(tmp_path, "leak.pkl", h.snapshot(buffers=h.build_on_empty_tensor(1 << 16)))
    with pytest.raises(
        CheckpointError, match=r"sets the internal state of a tensor \(a BUILD opcode\)"
    ):
        ck.read_official_pickle(path)
    with pytest.raises(CheckpointError, match="BUILD"):
        ck.convert_checkpoint(path, tmp_path / "out", verify=False)
    assert not (tmp_path / "out").exists()


def test_build_on_a_storage_is_refused() -> None:
    # Without __setstate__, BUILD would set the slot `numel` and defeat the view bounds check.
    blob = h.storage_blob(torch.ones(4))
    storage = h._global("torch.storage", "_load_from_bytes") + b"(" + h._body(blob) + b"tR"
    state = (
        b"(N" + h._body({}) + b"}" + h._str("numel") + h._body(1 << 20) + b"st"
    )  # (None, {'numel': ...})
    with pytest.raises(CheckpointError, match="sets the internal state of a tensor storage"):
        safe_pickle.unpickle_official(
            io.BytesIO(b"\x80\x04" + storage + state + b"b."), source="st.pkl"
        )


def test_tensor_record_refuses_a_storage_that_changed_size() -> None:
    data = (
        b"\x80\x04"
        + h.tensor_ops(
            b"B"
            + struct.pack("<I", len(h.storage_blob(torch.ones(0))))
            + h.storage_blob(torch.ones(0)),
            (0,),
        )
        + b"."
    )
    record = safe_pickle.unpickle_official(io.BytesIO(data), source="t.pkl")
    assert record.tensor().numel() == 0
    record._tensor.set_(record._tensor, 0, (16,), (1,))  # what a BUILD used to do
    with pytest.raises(CheckpointError, match="storage changed size"):
        record.tensor()


# --------------------------------------------------------------------------------------------
# Size bombs in configs (item 8)
# --------------------------------------------------------------------------------------------


def _small_with(**changes) -> dict:
    kwargs = json.loads(json.dumps(SMALL))
    for dotted, value in changes.items():
        node = kwargs
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return kwargs


@pytest.mark.parametrize(
    ("changes", "nrr", "expected"),
    [
        (
            {"mapping_kwargs__num_layers": 100_000},
            None,
            r"mapping_kwargs\.num_layers: expected an integer in \[0, 32\], got 100000",
        ),
        ({"channel_max": 1 << 20}, None, r"channel_max: expected an integer in \[1, 2048\]"),
        ({"z_dim": 10**9}, None, r"z_dim: expected an integer in \[1, 2048\]"),
        (
            {"rendering_kwargs__depth_resolution": 10**6},
            None,
            r"rendering_kwargs\.depth_resolution: expected an integer",
        ),
        (
            {"rendering_kwargs__depth_resolution_importance": -1},
            None,
            r"depth_resolution_importance: expected an integer",
        ),
        (
            {},
            10**6,
            r"neural_rendering_resolution: expected an integer in \[1, 1024\], got 1000000",
        ),
        (
            {"rendering_kwargs__ray_start": math.inf},
            None,
            r"ray_start/ray_end: expected finite numbers",
        ),
        (
            {"rendering_kwargs__ray_end": math.nan},
            None,
            r"ray_start/ray_end: expected finite numbers",
        ),
        (
            {"rendering_kwargs__ray_start": 4.0},
            None,
            r"expected 0 <= ray_start < ray_end, got 4.0, 3.3",
        ),
        (
            {"rendering_kwargs__box_warp": math.inf},
            None,
            r"rendering_kwargs\.box_warp: expected a finite number",
        ),
        ({"img_resolution": True}, None, r"img_resolution: expected an integer"),
    ],
    ids=[
        "num_layers",
        "channel_max",
        "z_dim",
        "depth_res",
        "depth_res_importance",
        "nrr",
        "ray_start_inf",
        "ray_end_nan",
        "ray_order",
        "box_warp",
        "bool_resolution",
    ],
)
def test_size_fields_are_bounded_before_construction(
    monkeypatch, changes: dict, nrr, expected: str
) -> None:
    monkeypatch.setattr(factory_module, "TriPlaneGenerator", _NotBuilt)
    with pytest.raises(ConfigError, match=expected):
        build_generator(_small_with(**changes), neural_rendering_resolution=nrr)


def test_released_configs_are_within_bounds() -> None:
    from sym3d_eg3d.configs import CONFIGS

    for config in CONFIGS.values():
        factory_module.check_sizes(config, 128)
    factory_module.check_sizes(
        {
            **SMALL,
            "rendering_kwargs": {
                **SMALL["rendering_kwargs"],
                "ray_start": "auto",
                "ray_end": "auto",
            },
        }
    )


def test_num_layers_bomb_in_a_pickle_is_refused_before_building(
    tmp_path: Path, monkeypatch
) -> None:
    path = _write(
        tmp_path,
        "layers.pkl",
        h.snapshot(init_kwargs=h.init_kwargs_with(mapping_kwargs={"num_layers": 100_000})),
    )
    monkeypatch.setattr(factory_module, "TriPlaneGenerator", _NotBuilt)
    with pytest.raises(
        CheckpointError, match=r"layers\.pkl: its generator settings are out of range: .*num_layers"
    ):
        ck.convert_checkpoint(path, tmp_path / "out", verify=False)
    with pytest.raises(CheckpointError, match="num_layers"):
        ck.load_checkpoint(path)
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def converted(tmp_path_factory, eg3d_small_pkl: Path) -> Path:
    return ck.convert_checkpoint(
        eg3d_small_pkl, tmp_path_factory.mktemp("conv") / "small", verify=False
    )


def _tampered_copy(tmp_path: Path, converted: Path, **changes) -> Path:
    out = tmp_path / "tampered"
    out.mkdir()
    (out / ck.WEIGHTS_FILE).write_bytes((converted / ck.WEIGHTS_FILE).read_bytes())
    config = json.loads((converted / ck.CONFIG_FILE).read_text())
    for dotted, value in changes.items():
        node = config
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node[part]
        node[leaf] = value
    (out / ck.CONFIG_FILE).write_text(
        json.dumps(config)
    )  # weights_sha256 still matches the weights
    return out


def test_size_bomb_in_generator_json_is_refused_before_building(
    tmp_path: Path, converted: Path, monkeypatch
) -> None:
    out = _tampered_copy(
        tmp_path,
        converted,
        init_kwargs__mapping_kwargs__num_layers=100_000,
        rendering_kwargs__depth_resolution=10**7,
        rendering_kwargs__ray_start=math.nan,
        neural_rendering_resolution=1 << 20,
    )
    monkeypatch.setattr(factory_module, "TriPlaneGenerator", _NotBuilt)
    with pytest.raises(ConfigError) as info:
        ck.load_checkpoint(out)
    message = str(info.value)
    for field in (
        "num_layers",
        "depth_resolution",
        "ray_start",
        "neural_rendering_resolution: expected an integer",
    ):
        assert field in message, field


def test_config_that_does_not_fit_the_weights_is_refused_without_a_real_build(
    tmp_path: Path, converted: Path, monkeypatch
) -> None:
    out = _tampered_copy(
        tmp_path, converted, init_kwargs__mapping_kwargs__num_layers=8
    )  # in bounds, but 2 in the file
    devices: list[str] = []
    real = factory_module.TriPlaneGenerator

    def recording(*args, **kwargs):
        devices.append(torch.get_default_device().type)
        return real(*args, **kwargs)

    monkeypatch.setattr(factory_module, "TriPlaneGenerator", recording)
    with pytest.raises(
        CheckpointError, match=r"do not fit .* 12 missing \(backbone\.mapping\.fc2\.weight"
    ):
        ck.load_checkpoint(out)
    assert devices == ["meta"]  # only the shape-only build ran


def test_load_checkpoint_records_the_checkpoint_sha256(
    converted: Path, eg3d_small_pkl: Path
) -> None:
    official = ck.read_official_pickle(eg3d_small_pkl)
    G = ck.load_checkpoint(converted)
    assert G.checkpoint_sha256 == official.sha256  # a conversion names the .pkl it came from


def test_special_files_are_refused_as_checkpoints(tmp_path: Path) -> None:
    import os

    from sym3d.errors import InputFileError

    fifo = tmp_path / "g.pkl"
    os.mkfifo(fifo)
    with pytest.raises(InputFileError, match="FIFO"):
        ck.read_official_pickle(fifo)
    folder = tmp_path / "conv"
    folder.mkdir()
    (folder / ck.WEIGHTS_FILE).symlink_to("/dev/zero")
    with pytest.raises(InputFileError, match="character device"):
        ck.load_checkpoint(folder)


def test_special_generator_json_is_refused_not_skipped(tmp_path: Path, converted: Path) -> None:
    import os

    from sym3d.errors import InputFileError

    out = _tampered_copy(tmp_path, converted)
    (out / ck.CONFIG_FILE).unlink()
    os.mkfifo(out / ck.CONFIG_FILE)  # not silently replaced by the config embedded in the weights
    with pytest.raises(InputFileError, match=r"generator\.json: is a FIFO"):
        ck.read_converted(out)


# --------------------------------------------------------------------------------------------
# Messages: one line naming the file, exit code 2
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("diamond.pkl", h.snapshot(modules=h.diamond_modules(40)), "share no module"),
        ("leak.pkl", h.snapshot(buffers=h.build_on_empty_tensor(1 << 16)), "BUILD"),
        (
            "layers.pkl",
            h.snapshot(init_kwargs=h.init_kwargs_with(mapping_kwargs={"num_layers": 100_000})),
            "num_layers",
        ),
        ("memo.pkl", b"\x80\x04K\x01r" + struct.pack("<I", 1 << 24) + b".", "memo entry"),
    ],
    ids=["shared_modules", "build_tensor", "num_layers", "memo_index"],
)
def test_cli_convert_refuses_with_one_line(
    tmp_path: Path, capsys, name: str, data: bytes, expected: str
) -> None:
    from sym3d.cli import main

    path = _write(tmp_path, name, data)
    code = main(["eg3d", "convert", str(path), str(tmp_path / "out"), "--no-verify"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and expected in err and str(path) in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "weights_only" not in err
    assert not (tmp_path / "out").exists()


def test_convert_into_an_unwritable_place_names_the_folder(
    tmp_path: Path, eg3d_small_pkl: Path
) -> None:
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(
        CheckpointError,
        match=r"a_file/out: cannot write the converted generator there \(Not a directory\)",
    ):
        ck.convert_checkpoint(eg3d_small_pkl, tmp_path / "a_file" / "out", verify=False)


# --------------------------------------------------------------------------------------------
# The shape-only build used before the real one
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["small", "sr512", "ffhq512"])
def test_shape_only_build_has_the_real_state_dict_shapes(name: str) -> None:
    from sym3d_eg3d.configs import CONFIGS

    cfg = CONFIGS[name]
    G = ck._construct(cfg, cfg["rendering_kwargs"], 128, "released", name, shapes_only=True)
    shapes = {k: (tuple(v.shape), v.dtype) for k, v in G.state_dict().items()}
    assert {v.device.type for v in G.state_dict().values()} == {"meta"}  # nothing allocated
    real = build_generator(cfg, neural_rendering_resolution=128)
    assert shapes == {k: (tuple(v.shape), v.dtype) for k, v in real.state_dict().items()}


def test_shape_only_build_runs_no_python_meta_kernel() -> None:
    # Python meta kernels import torch._dynamo on first use (seconds per process); the shape-only
    # mode answers every op of the construction itself.
    import subprocess
    import sys

    code = (
        "import sys; from sym3d_eg3d.checkpoints import _construct; "
        "from sym3d_eg3d.configs import FFHQ512_128 as c; "
        "_construct(c, c['rendering_kwargs'], 128, 'released', 'x', shapes_only=True); "
        "print('torch._dynamo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"
