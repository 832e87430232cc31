"""Load official EG3D checkpoints without running their code, and convert them to safetensors + JSON.

Three kinds of input are accepted by :func:`load_checkpoint`:

* an official EG3D snapshot (``*.pkl``), read by :func:`read_official_pickle` through the restricted
  unpickler of :mod:`sym3d_eg3d.safe_pickle` (nothing from the file is imported or executed);
* a converted folder holding ``generator.safetensors`` and ``generator.json``
  (written by :func:`convert_checkpoint`, :func:`save_generator` or ``sym3d eg3d convert``);
* the ``generator.safetensors`` (or ``generator.json``) file of such a folder.

The converted format is the state dict under the official EG3D names (safetensors) plus a JSON
document with the constructor kwargs and the runtime attributes that official pickles carry
outside the constructor (``rendering_kwargs``, ``neural_rendering_resolution``).
"""

from __future__ import annotations

import hashlib
import json
import os
import types
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import attrs
import torch
from torch.overrides import TorchFunctionMode

from sym3d._version import __version__ as _SYM3D_VERSION
from sym3d.atomic import atomic_write_bytes
from sym3d.errors import CheckpointError, ConfigError, ResultExistsError
from sym3d.files import open_regular, read_text
from sym3d_eg3d.safe_pickle import (
    PersistentRecord,
    PlainObjectRecord,
    TensorRecord,
    unpickle_official,
)

if TYPE_CHECKING:
    from sym3d_eg3d.networks import TriPlaneGenerator

__all__ = [
    "CONFIG_FILE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "PLANE_ORDERS",
    "WEIGHTS_FILE",
    "ConvertedCheckpoint",
    "OfficialCheckpoint",
    "convert_checkpoint",
    "load_checkpoint",
    "read_converted",
    "read_official_pickle",
    "save_generator",
]

FORMAT_NAME = "sym3d-eg3d-generator"
FORMAT_VERSION = 1
WEIGHTS_FILE = "generator.safetensors"
CONFIG_FILE = "generator.json"
PLANE_ORDERS = ("released", "corrected")
"""Plane-axes modes (``plane_order`` of :func:`sym3d_eg3d.networks.build_generator`): ``"released"``
is EG3D's fixed planes XY, XZ and the quirky ZX, which every official model uses; ``"corrected"``
is XY, XZ, YZ."""

# The renderer's ``plane_axes`` constant for each mode: three 3x3 matrices whose rows are axes.
_PLANE_AXES: Mapping[str, tuple[tuple[tuple[float, ...], ...], ...]] = types.MappingProxyType(
    {
        "released": (
            ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
            ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
            ((0.0, 0.0, 1.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
        ),
        "corrected": (
            ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
            ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
            ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 0.0, 0.0)),
        ),
    }
)
# Positional parameters of the official TriPlaneGenerator constructor, in order.
_TRIPLANE_POSITIONAL = (
    "z_dim", "c_dim", "w_dim", "img_resolution", "img_channels",
    "sr_num_fp16_res", "mapping_kwargs", "rendering_kwargs", "sr_kwargs",
)  # fmt: skip
_GENERATOR_CLASS = "TriPlaneGenerator"
_DEFAULT_NEURAL_RENDERING_RESOLUTION = 64  # what a freshly constructed official generator holds
MAX_CHECKPOINT_BYTES = 4 << 30
"""Largest checkpoint file read (official EG3D snapshots are under 1 GB); stops sparse files too."""
_MAX_MODULE_DEPTH = 64
_MAX_CONFIG_BYTES = 16 << 20  # generator.json of ffhq512-128 is about 20 kB
_MAX_MODULES = 20_000  # G_ema of ffhq512-128 has a few hundred modules
_MAX_PLAIN_VALUES = 100_000  # its kwargs and rendering_kwargs hold about a hundred values
_PICKLE_HINT = "pass an official EG3D network snapshot such as ffhq512-128.pkl, or a folder written by `sym3d eg3d convert`."


# --------------------------------------------------------------------------------------------
# Official pickles
# --------------------------------------------------------------------------------------------


@attrs.frozen
class OfficialCheckpoint:
    """The EMA generator (``G_ema``) of an official EG3D snapshot, read without executing code.

    Attributes:
        path: the file that was read.
        sha256: sha256 of the whole file (provenance).
        size_bytes: file size.
        class_name: the generator class recorded in the file (always ``'TriPlaneGenerator'``).
        state_dict: tensors under the official names, in ``G_ema.state_dict()`` order, bit-identical
            (includes the ``dataset_label_std`` buffer).
        parameter_names: the keys of ``state_dict`` that are parameters (the rest are buffers).
        init_kwargs: the constructor kwargs as plain JSON-able data (EasyDicts become dicts).
        rendering_kwargs: the live ``G_ema.rendering_kwargs`` attribute; prefer it over
            ``init_kwargs['rendering_kwargs']`` (the training loop updates it).
        neural_rendering_resolution: the live attribute (e.g. 128 for ffhq512-128).
        plane_axes: the renderer's ``plane_axes`` tensor ``[3,3,3]``, or None if absent.
        module_src_sha256: class name -> sha256 of the embedded module source (never executed).
        top_level_keys: the keys of the snapshot dict (``'G'``, ``'D'``, ``'G_ema'``, ...).

    """

    path: Path
    sha256: str
    size_bytes: int
    class_name: str
    state_dict: dict[str, torch.Tensor] = attrs.field(repr=False)
    parameter_names: frozenset[str] = attrs.field(repr=False)
    init_kwargs: dict[str, Any] = attrs.field(repr=False)
    rendering_kwargs: dict[str, Any] = attrs.field(repr=False)
    neural_rendering_resolution: int
    plane_axes: torch.Tensor | None = attrs.field(repr=False)
    module_src_sha256: dict[str, str] = attrs.field(repr=False)
    top_level_keys: tuple[str, ...]

    @property
    def plane_axes_mode(self) -> str:
        """``'released'`` (EG3D's planes, also assumed when absent), ``'corrected'``, or ``'custom'``."""
        if self.plane_axes is None:
            return "released"
        for mode, axes in _PLANE_AXES.items():
            reference = torch.tensor(axes, dtype=self.plane_axes.dtype)
            if self.plane_axes.shape == reference.shape and torch.equal(self.plane_axes, reference):
                return mode
        return "custom"


def read_official_pickle(path: str | os.PathLike[str]) -> OfficialCheckpoint:
    """Read ``G_ema`` from an official EG3D ``.pkl`` with the restricted unpickler.

    Nothing in the file is imported or executed: the embedded module sources are only hashed.
    Keys other than ``'G_ema'`` (``G``, ``D``, ``augment_pipe``, ...) are optional and ignored.

    Args:
        path: the ``.pkl`` file.

    Returns:
        The generator's state dict, constructor kwargs, runtime attributes and provenance.

    Raises:
        UnsafeCheckpointError: the pickle names a global outside the allow-list.
        CheckpointError: the file is missing, empty, truncated, not a pickle, has no ``G_ema``,
            or its ``G_ema`` is not a ``TriPlaneGenerator``.

    """
    path = Path(path)
    _require_file(path)
    kind = _sniff(path)
    if kind != "pickle":
        raise CheckpointError(
            f"{path}: not an EG3D checkpoint pickle: {_describe_kind(kind, path)}.",
            hint=_PICKLE_HINT,
        )
    with _open(path) as f:
        sha256, size = _sha256_of_stream(f)
        f.seek(0)
        top = unpickle_official(f, source=str(path))
    if not isinstance(top, dict):
        raise CheckpointError(
            f"{path}: the pickle holds a {type(top).__name__}; expected the snapshot dict of an EG3D training run "
            "(keys 'G', 'D', 'G_ema', ...).",
            hint=_PICKLE_HINT,
        )
    if "G_ema" not in top:
        keys = ", ".join(repr(k) for k in list(top)[:10]) or "none"
        raise CheckpointError(
            f"{path}: the snapshot dict has no 'G_ema' entry (found keys: {keys}); expected an EG3D training snapshot.",
            hint=_PICKLE_HINT,
        )
    g_ema = top["G_ema"]
    found = (
        g_ema.class_name
        if isinstance(g_ema, (PersistentRecord, PlainObjectRecord))
        else type(g_ema).__name__
    )
    if not isinstance(g_ema, PersistentRecord) or g_ema.class_name != _GENERATOR_CLASS:
        raise CheckpointError(
            f"{path}: 'G_ema' is a {found}; expected an EG3D {_GENERATOR_CLASS}.",
            hint="sym3d_eg3d loads EG3D tri-plane generators only (StyleGAN2/3 snapshots are not supported).",
        )
    modules = _walk_modules(g_ema, str(path))
    state_dict, parameter_names = _collect_state_dict(modules, str(path))
    _check_total_bytes(state_dict, size, str(path))
    root = g_ema.state
    init_kwargs = _init_kwargs(root, str(path))
    rendering_kwargs = root.get("rendering_kwargs", init_kwargs.get("rendering_kwargs"))
    if not isinstance(rendering_kwargs, dict):
        raise CheckpointError(
            f"{path}: G_ema has no rendering_kwargs dict (got {type(rendering_kwargs).__name__})."
        )
    resolution = root.get("neural_rendering_resolution", _DEFAULT_NEURAL_RENDERING_RESOLUTION)
    if type(resolution) is not int or resolution <= 0:
        raise CheckpointError(
            f"{path}: G_ema.neural_rendering_resolution is {resolution!r}; expected a positive int."
        )
    return OfficialCheckpoint(
        path=path,
        sha256=sha256,
        size_bytes=size,
        class_name=g_ema.class_name,
        state_dict=state_dict,
        parameter_names=frozenset(parameter_names),
        init_kwargs=init_kwargs,
        rendering_kwargs=_plain(rendering_kwargs, "G_ema.rendering_kwargs", str(path)),
        neural_rendering_resolution=resolution,
        plane_axes=_plane_axes(root, str(path)),
        module_src_sha256={
            n.class_name: n.module_src_sha256 for _, n in modules if isinstance(n, PersistentRecord)
        },
        top_level_keys=tuple(str(k) for k in top),
    )


def _module_state(node: Any, where: str, source: str) -> dict[str, Any]:
    if not isinstance(node, (PersistentRecord, PlainObjectRecord)):
        raise CheckpointError(
            f"{source}: {where or 'G_ema'} is a {type(node).__name__}; expected a network module."
        )
    return node.state


def _walk_modules(root: Any, source: str) -> list[tuple[str, Any]]:
    """``(prefix, module record)`` for ``root`` and its descendants, in ``state_dict`` order.

    Each module object is visited once: one reached under two names (shared through the pickle
    memo) is refused, because official EG3D generators share no module and a shared chain of
    depth ``d`` would otherwise give ``2**d`` paths to walk. The walk is iterative and bounded
    by :data:`_MAX_MODULES` and :data:`_MAX_MODULE_DEPTH`.
    """
    seen: dict[int, str] = {}
    out: list[tuple[str, Any]] = []
    stack: list[tuple[str, Any, int]] = [("", root, 0)]
    while stack:
        prefix, node, depth = stack.pop()
        where = prefix.rstrip(".") or "G_ema"
        if id(node) in seen:
            raise CheckpointError(
                f"{source}: the module {_short(where)} is the same object as "
                f"{_short(seen[id(node)])}; official EG3D generators share no module, so the file "
                "was crafted or damaged.",
                hint=_PICKLE_HINT,
            )
        if depth > _MAX_MODULE_DEPTH or len(out) >= _MAX_MODULES:
            raise CheckpointError(
                f"{source}: the module tree under G_ema is deeper than {_MAX_MODULE_DEPTH} levels "
                f"or holds more than {_MAX_MODULES:,} modules; an EG3D generator has a few "
                "hundred.",
                hint=_PICKLE_HINT,
            )
        seen[id(node)] = where
        state = _module_state(node, prefix.rstrip("."), source)
        out.append((prefix, node))
        children = state.get("_modules", {})
        if not isinstance(children, dict):
            raise CheckpointError(
                f"{source}: {prefix or 'G_ema.'}_modules is a {type(children).__name__}; expected a dict."
            )
        named = [
            (f"{prefix}{name}.", child) for name, child in children.items() if child is not None
        ]
        stack.extend((p, child, depth + 1) for p, child in reversed(named))
    return out


def _collect_state_dict(
    modules: list[tuple[str, Any]], source: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rebuild ``state_dict()`` from the records: per module its parameters, buffers, then children."""
    out: dict[str, torch.Tensor] = {}
    parameter_names: list[str] = []
    for prefix, node in modules:
        state = node.state
        params = state.get("_parameters", {})
        buffers = state.get("_buffers", {})
        skip = state.get("_non_persistent_buffers_set", set())
        if (
            not isinstance(params, dict)
            or not isinstance(buffers, dict)
            or not isinstance(skip, (set, frozenset))
        ):
            raise CheckpointError(
                f"{source}: module {prefix or 'G_ema.'} has malformed _parameters/_buffers entries."
            )
        entries = [(n, t, True) for n, t in params.items()] + [
            (n, t, False) for n, t in buffers.items() if n not in skip
        ]
        for name, tensor, is_param in entries:
            if tensor is None:
                continue
            key = f"{prefix}{name}"
            if not isinstance(tensor, TensorRecord):
                raise CheckpointError(
                    f"{source}: {key} is a {type(tensor).__name__}; expected a tensor."
                )
            out[key] = tensor.tensor()  # a fresh tensor object: no grad flag, no hooks
            if is_param:
                parameter_names.append(key)
    return out, parameter_names


def _check_total_bytes(state_dict: Mapping[str, torch.Tensor], file_size: int, source: str) -> None:
    """Refuse tensors that together view more bytes than the file could hold twice over.

    Views of one storage cost nothing to read but each is written out in full; official
    snapshots store every tensor once.
    """
    total = sum(t.numel() * t.element_size() for t in state_dict.values())
    if total > 2 * file_size + (1 << 20):
        raise CheckpointError(
            f"{source}: its {len(state_dict)} tensors view {total:,} bytes, but the file holds "
            f"only {file_size:,}; tensors share storage far more than any EG3D snapshot does.",
            hint=_PICKLE_HINT,
        )


def _init_kwargs(root: dict[str, Any], source: str) -> dict[str, Any]:
    args = root.get("_init_args", ())
    kwargs = root.get("_init_kwargs", {})
    if (
        not isinstance(args, (tuple, list))
        or not isinstance(kwargs, dict)
        or len(args) > len(_TRIPLANE_POSITIONAL)
    ):
        raise CheckpointError(
            f"{source}: G_ema has malformed constructor arguments (_init_args/_init_kwargs)."
        )
    merged = dict(zip(_TRIPLANE_POSITIONAL, args, strict=False))
    for key, value in kwargs.items():
        if key in merged:
            raise CheckpointError(f"{source}: G_ema's constructor argument {key!r} is given twice.")
        merged[key] = value
    return _plain(merged, "G_ema._init_kwargs", source)  # type: ignore[no-any-return]


def _plain(
    value: Any, where: str, source: str, depth: int = 0, budget: list[int] | None = None
) -> Any:
    """Deep-convert to JSON-able data: dict subclasses -> dict, tuples -> lists; refuse anything else.

    JSON cannot share, so a container reached many times through the pickle memo is copied each
    time; ``budget`` (a one-element counter shared by the recursion) caps the values produced at
    :data:`_MAX_PLAIN_VALUES`, which a doubling chain of shared lists exceeds after a few steps.
    """
    budget = [_MAX_PLAIN_VALUES] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0:
        raise CheckpointError(
            f"{source}: {_short(where)} expands to more than {_MAX_PLAIN_VALUES:,} values "
            "(containers shared through the pickle memo); EG3D settings hold a few hundred.",
            hint=_PICKLE_HINT,
        )
    if depth > _MAX_MODULE_DEPTH:
        raise CheckpointError(
            f"{source}: {where} is nested more than {_MAX_MODULE_DEPTH} levels deep."
        )
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise CheckpointError(f"{source}: {where} has non-string keys.")
        return {k: _plain(v, f"{where}.{k}", source, depth + 1, budget) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]", source, depth + 1, budget) for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise CheckpointError(
        f"{source}: {where} holds a {type(value).__name__}; expected plain data (numbers, strings, lists, dicts)."
    )


def _plane_axes(root: dict[str, Any], source: str) -> torch.Tensor | None:
    renderer = root.get("_modules", {}).get("renderer")
    if not isinstance(renderer, (PersistentRecord, PlainObjectRecord)):
        return None
    axes = renderer.state.get("plane_axes")
    if axes is None:
        return None
    if not isinstance(axes, TensorRecord):
        raise CheckpointError(
            f"{source}: renderer.plane_axes is a {type(axes).__name__}; expected a tensor."
        )
    return axes.tensor()


# --------------------------------------------------------------------------------------------
# Converted folders (safetensors + JSON)
# --------------------------------------------------------------------------------------------


@attrs.frozen
class ConvertedCheckpoint:
    """A converted generator: the JSON config and the state dict (official names, official order).

    Attributes:
        config_path: the ``generator.json`` read (None if the config came from the weights file).
        weights_path: the ``generator.safetensors`` read.
        config: the parsed and validated JSON document.
        state_dict: the tensors, ordered as recorded in the config.
        weights_sha256: sha256 of the weights file.

    """

    config_path: Path | None
    weights_path: Path
    config: dict[str, Any] = attrs.field(repr=False)
    state_dict: dict[str, torch.Tensor] = attrs.field(repr=False)
    weights_sha256: str = ""


def read_converted(path: str | os.PathLike[str]) -> ConvertedCheckpoint:
    """Read a converted folder, or its ``generator.safetensors`` / ``generator.json`` file.

    A lone ``.safetensors`` file without its JSON sidecar also works: the config is embedded in
    its metadata (without the weights checksum).

    Raises:
        CheckpointError: files missing or unreadable, or weights that do not match the config.
        ConfigError: the JSON document is not a valid sym3d EG3D generator config.

    """
    path = Path(path)
    if path.is_dir():
        config_path, weights_path = path / CONFIG_FILE, path / WEIGHTS_FILE
    elif path.suffix == ".json":
        config_path, weights_path = path, path.with_suffix(".safetensors")
    else:
        config_path, weights_path = path.with_suffix(".json"), path
    _require_file(weights_path, what="converted weights file")
    import safetensors.torch

    with _open(weights_path, "the converted weights file") as f:
        payload = f.read()
    header, embedded = _safetensors_header(payload, weights_path)
    actual = hashlib.sha256(payload).hexdigest()
    if config_path.exists():  # a FIFO or device here is refused by read_text, not skipped
        config = _parse_config_file(config_path)
        expected = config.get("weights_sha256")
        if expected is not None and expected != actual:
            raise CheckpointError(
                f"{weights_path}: sha256 {actual[:16]}... does not match {config_path.name} ({str(expected)[:16]}...); "
                "the folder mixes files from different conversions or a file is corrupt.",
                hint="convert the original .pkl again with `sym3d eg3d convert --overwrite`.",
            )
        used_config_path: Path | None = config_path
    elif "sym3d_config" in embedded:
        config = _parse_config_text(embedded["sym3d_config"], f"{weights_path} (embedded config)")
        used_config_path = None
    else:
        raise CheckpointError(
            f"{weights_path}: no {config_path.name} next to it and no embedded sym3d config; "
            "expected a file written by `sym3d eg3d convert`.",
            hint=f"put the {CONFIG_FILE} from the same conversion next to the weights.",
        )
    order = config["tensor_names"]
    if set(order) != set(header):
        missing = sorted(set(order) - set(header))
        extra = sorted(set(header) - set(order))
        raise CheckpointError(
            f"{weights_path}: the tensors do not match the config's tensor_names "
            f"(missing {len(missing)}: {_few(missing)}; unexpected {len(extra)}: {_few(extra)})."
        )
    try:
        tensors = safetensors.torch.load(payload)
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(
            f"{weights_path}: not a readable safetensors file ({type(exc).__name__}: {exc}).",
            hint="convert the original .pkl again with `sym3d eg3d convert --overwrite`.",
        ) from None
    return ConvertedCheckpoint(
        used_config_path, weights_path, config, {k: tensors[k] for k in order}, actual
    )


_MAX_SAFETENSORS_HEADER = 100 << 20  # the safetensors library's own limit


def _safetensors_header(
    payload: bytes, path: Path
) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Tensor names -> shapes and the metadata, from a safetensors header (no tensor data is read).

    Raises:
        CheckpointError: the header is missing, oversized or not the documented JSON layout.
    """

    def bad(reason: str) -> CheckpointError:
        return CheckpointError(
            f"{path}: not a readable safetensors file ({reason}).",
            hint="convert the original .pkl again with `sym3d eg3d convert --overwrite`.",
        )

    if len(payload) < 8:
        raise bad(f"{len(payload)} bytes, shorter than the 8-byte header length")
    n = int.from_bytes(payload[:8], "little")
    if n > min(len(payload) - 8, _MAX_SAFETENSORS_HEADER):
        raise bad(
            f"the header claims {n:,} bytes; the file holds {len(payload) - 8:,} after the length"
        )
    try:
        header = json.loads(payload[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(f"the header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise bad("__metadata__ is not a map of strings")
    shapes: dict[str, tuple[int, ...]] = {}
    for name, info in header.items():
        shape = info.get("shape") if isinstance(info, dict) else None
        if (
            not isinstance(shape, list)
            or len(shape) > 8
            or not all(type(d) is int and d >= 0 for d in shape)
        ):
            raise bad(f"tensor {name!r} has no valid shape")
        shapes[name] = tuple(shape)
    return shapes, metadata


def _parse_config_file(path: Path) -> dict[str, Any]:
    return _parse_config_text(
        read_text(path, "the generator config", max_bytes=_MAX_CONFIG_BYTES), str(path)
    )


def _parse_config_text(text: str, where: str) -> dict[str, Any]:
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not valid JSON ({exc}).") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(config).__name__}.")
    problems: list[str] = []
    if config.get("format") != FORMAT_NAME:
        problems.append(f"{where}: format: expected {FORMAT_NAME!r}, got {config.get('format')!r}")
    version = config.get("format_version")
    if type(version) is not int or version > FORMAT_VERSION:
        problems.append(
            f"{where}: format_version: expected an int <= {FORMAT_VERSION}, got {version!r}"
        )
    if config.get("class_name") != _GENERATOR_CLASS:
        problems.append(
            f"{where}: class_name: expected {_GENERATOR_CLASS!r}, got {config.get('class_name')!r}"
        )
    for key in ("init_kwargs", "rendering_kwargs"):
        if not isinstance(config.get(key), dict):
            problems.append(
                f"{where}: {key}: expected an object, got {type(config.get(key)).__name__}"
            )
    resolution = config.get("neural_rendering_resolution")
    if type(resolution) is not int or resolution <= 0:
        problems.append(
            f"{where}: neural_rendering_resolution: expected a positive int, got {resolution!r}"
        )
    if config.get("plane_axes") not in PLANE_ORDERS:
        problems.append(
            f"{where}: plane_axes: expected one of {', '.join(PLANE_ORDERS)}, got {config.get('plane_axes')!r}"
        )
    names = config.get("tensor_names")
    if (
        not isinstance(names, list)
        or not all(isinstance(n, str) for n in names)
        or len(set(names)) != len(names)
    ):
        problems.append(f"{where}: tensor_names: expected a list of distinct strings")
    if isinstance(config.get("init_kwargs"), dict) and isinstance(
        config.get("rendering_kwargs"), dict
    ):
        # Bound every size field now: weights_sha256 covers the weights only, not this document.
        from sym3d_eg3d.networks.factory import check_sizes

        try:
            check_sizes(
                {**config["init_kwargs"], "rendering_kwargs": config["rendering_kwargs"]},
                resolution,
            )
        except ConfigError as exc:
            problems += [f"{where}: {m}" for m in exc.messages]
    if problems:
        hint = (
            "upgrade sym3d"
            if type(version) is int and version > FORMAT_VERSION
            else "convert the original .pkl again"
        )
        raise ConfigError(problems, hint=hint)
    return config


def _short(where: str, limit: int = 60) -> str:
    """A long dotted path cut in the middle, so that an error stays one readable line."""
    return where if len(where) <= limit else f"{where[:24]}...{where[-24:]}"


def _few(names: list[str], n: int = 3) -> str:
    if not names:
        return "none"
    return ", ".join(names[:n]) + (f", ... (+{len(names) - n} more)" if len(names) > n else "")


def _build_config(
    *,
    init_kwargs: Mapping[str, Any],
    rendering_kwargs: Mapping[str, Any],
    neural_rendering_resolution: int,
    plane_order: str,
    state_dict: Mapping[str, torch.Tensor],
    parameter_names: frozenset[str],
    source: dict[str, Any],
) -> dict[str, Any]:
    num_parameters = sum(t.numel() for k, t in state_dict.items() if k in parameter_names)
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "class_name": _GENERATOR_CLASS,
        "init_kwargs": dict(init_kwargs),
        "rendering_kwargs": dict(rendering_kwargs),
        "neural_rendering_resolution": neural_rendering_resolution,
        "plane_axes": plane_order,
        "num_parameters": num_parameters,
        "num_buffer_elements": sum(t.numel() for t in state_dict.values()) - num_parameters,
        "tensor_names": list(state_dict),
        "parameter_names": [k for k in state_dict if k in parameter_names],
        "source": source,
        "sym3d_version": _SYM3D_VERSION,
        "weights_file": WEIGHTS_FILE,
    }


def _write_converted(
    out_dir: Path,
    state_dict: Mapping[str, torch.Tensor],
    config: dict[str, Any],
    *,
    overwrite: bool,
) -> Path:
    """Write ``generator.safetensors`` then ``generator.json`` into ``out_dir``, each atomically."""
    import safetensors.torch

    weights_path, config_path = out_dir / WEIGHTS_FILE, out_dir / CONFIG_FILE
    _refuse_existing(out_dir, overwrite=overwrite)
    tensors: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for name, tensor in state_dict.items():
        t = tensor.detach().to("cpu").contiguous()
        ptr = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if ptr in seen or t.untyped_storage().nbytes() != t.numel() * t.element_size():
            t = t.clone()  # safetensors refuses tensors that share or over-cover a storage
        seen.add((t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()))
        tensors[name] = t
    # One metadata key only: safetensors writes metadata in hash-map order, and a single key keeps
    # the file byte-for-byte deterministic. The embedded config holds the format name and version.
    metadata = {
        "sym3d_config": json.dumps({k: v for k, v in config.items() if k != "weights_sha256"})
    }
    payload = safetensors.torch.save(tensors, metadata=metadata)
    full_config = {**config, "weights_sha256": hashlib.sha256(payload).hexdigest()}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(weights_path, payload)
        atomic_write_bytes(config_path, (json.dumps(full_config, indent=2) + "\n").encode("utf-8"))
    except OSError as exc:
        raise CheckpointError(
            f"{out_dir}: cannot write the converted generator there "
            f"({exc.strerror or type(exc).__name__}).",
            hint="choose a writable output folder with room for the weights.",
        ) from None
    return out_dir


def _refuse_existing(out_dir: Path, *, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise CheckpointError(
            f"{out_dir}: exists and is not a folder; expected an output folder path."
        )
    if not overwrite and ((out_dir / WEIGHTS_FILE).exists() or (out_dir / CONFIG_FILE).exists()):
        raise ResultExistsError(
            f"{out_dir}: already holds a converted generator ({WEIGHTS_FILE}/{CONFIG_FILE}); refusing to overwrite it.",
            hint="pass overwrite=True (CLI: --overwrite) or choose another output folder.",
        )


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def convert_checkpoint(
    src_pkl: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    verify: bool = True,
) -> Path:
    """Convert an official EG3D ``.pkl`` into ``out_dir/generator.safetensors`` + ``generator.json``.

    Args:
        src_pkl: the official snapshot.
        out_dir: the output folder (created if needed).
        overwrite: replace an existing conversion in ``out_dir``.
        verify: build the sym3d generator from the config and load the weights strictly before
            writing anything, so a folder that would not load is never produced.

    Returns:
        ``out_dir``.

    Raises:
        ResultExistsError: ``out_dir`` already holds a conversion and ``overwrite`` is False.
        CheckpointError / UnsafeCheckpointError: see :func:`read_official_pickle`.

    """
    out = Path(out_dir)
    _refuse_existing(out, overwrite=overwrite)  # fail fast, before reading a large pickle
    ckpt = read_official_pickle(src_pkl)
    plane_order = _supported_plane_order(ckpt)
    _check_sizes(
        ckpt.init_kwargs, ckpt.rendering_kwargs, ckpt.neural_rendering_resolution, str(ckpt.path)
    )
    if verify:
        _build_and_load(
            ckpt.init_kwargs,
            ckpt.rendering_kwargs,
            ckpt.neural_rendering_resolution,
            plane_order,
            ckpt.state_dict,
            str(ckpt.path),
        )
    config = _build_config(
        init_kwargs=ckpt.init_kwargs,
        rendering_kwargs=ckpt.rendering_kwargs,
        neural_rendering_resolution=ckpt.neural_rendering_resolution,
        plane_order=plane_order,
        state_dict=ckpt.state_dict,
        parameter_names=ckpt.parameter_names,
        source={
            "kind": "official_pickle",
            "file_name": ckpt.path.name,
            "sha256": ckpt.sha256,
            "size_bytes": ckpt.size_bytes,
        },
    )
    return _write_converted(out, ckpt.state_dict, config, overwrite=overwrite)


def save_generator(
    G: TriPlaneGenerator,
    out_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    source: Mapping[str, Any] | None = None,
) -> Path:
    """Write a live generator (e.g. a fine-tuned one) in the converted format.

    Args:
        G: a :class:`sym3d_eg3d.networks.TriPlaneGenerator`.
        out_dir: the output folder (created if needed).
        overwrite: replace an existing conversion in ``out_dir``.
        source: JSON-able provenance stored under ``"source"`` (``kind`` defaults to ``"module"``).

    Returns:
        ``out_dir``.

    Raises:
        ResultExistsError: ``out_dir`` already holds a conversion and ``overwrite`` is False.
        CheckpointError: ``G`` does not expose its constructor kwargs.

    """
    init_kwargs = getattr(G, "init_kwargs", None)
    if not isinstance(init_kwargs, Mapping):
        raise CheckpointError(
            f"save_generator: the {type(G).__name__} has no `init_kwargs` mapping, so its constructor "
            "arguments cannot be recorded; expected a generator returned by load_checkpoint().",
            hint="load the generator with sym3d_eg3d.checkpoints.load_checkpoint() before tuning it.",
        )
    where = "save_generator"
    state_dict = G.state_dict()
    config = _build_config(
        init_kwargs=_plain(dict(init_kwargs), "G.init_kwargs", where),
        rendering_kwargs=_plain(dict(G.rendering_kwargs), "G.rendering_kwargs", where),
        neural_rendering_resolution=int(G.neural_rendering_resolution),
        plane_order=str(getattr(G.renderer, "plane_order", "released")),
        state_dict=state_dict,
        parameter_names=frozenset(name for name, _ in G.named_parameters()),
        source=_plain({"kind": "module", **(source or {})}, "source", where),
    )
    return _write_converted(Path(out_dir), state_dict, config, overwrite=overwrite)


def load_checkpoint(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> TriPlaneGenerator:
    """Load an EG3D generator from an official ``.pkl`` or a converted folder/file, in eval mode.

    The kind of input is decided from its content (and, for converted files, its name):
    a pickle is read with the restricted unpickler; a folder or a ``.safetensors``/``.json``
    file is read as a conversion. Weights are loaded with ``strict=True``.

    Args:
        path: an official snapshot, a converted folder, or its ``generator.safetensors``.
        device: where to put the module.

    Returns:
        The generator, on ``device``, in eval mode. ``G.checkpoint_sha256`` names the weights:
        the sha256 of the official ``.pkl`` (also for a folder converted from one), otherwise of
        ``generator.safetensors``.

    Raises:
        CheckpointError: unknown or malformed input, or weights that do not fit the config.
        UnsafeCheckpointError: a pickle naming a global outside the allow-list.
        ConfigError: an invalid ``generator.json``.

    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder.", hint=_PICKLE_HINT)
    if path.is_dir() or path.suffix in (".safetensors", ".json"):
        kind = "converted"
    else:
        sniffed = _sniff(path)
        if sniffed == "pickle":
            kind = "pickle"
        elif sniffed == "safetensors":
            kind = "converted"
        else:
            raise CheckpointError(
                f"{path}: not a checkpoint sym3d can load: {_describe_kind(sniffed, path)}.",
                hint=_PICKLE_HINT,
            )
    if kind == "pickle":
        ckpt = read_official_pickle(path)
        plane_order = _supported_plane_order(ckpt)
        G = _build_and_load(
            ckpt.init_kwargs,
            ckpt.rendering_kwargs,
            ckpt.neural_rendering_resolution,
            plane_order,
            ckpt.state_dict,
            str(path),
        )
        G.checkpoint_sha256 = ckpt.sha256
    else:
        if path.is_dir() and not (path / WEIGHTS_FILE).exists():
            raise CheckpointError(
                f"{path}: folder has no {WEIGHTS_FILE}; expected a folder written by `sym3d eg3d convert`.",
                hint=_PICKLE_HINT,
            )
        conv = read_converted(path)
        cfg = conv.config
        G = _build_and_load(
            cfg["init_kwargs"],
            cfg["rendering_kwargs"],
            cfg["neural_rendering_resolution"],
            cfg["plane_axes"],
            conv.state_dict,
            str(conv.weights_path),
        )
        source = cfg.get("source")
        from_pickle = isinstance(source, dict) and source.get("kind") == "official_pickle"
        sha = source.get("sha256") if from_pickle else None
        G.checkpoint_sha256 = sha if isinstance(sha, str) else conv.weights_sha256
    return G.to(device).eval()


def _build_and_load(
    init_kwargs: Mapping[str, Any],
    rendering_kwargs: Mapping[str, Any],
    neural_rendering_resolution: int,
    plane_order: str,
    state_dict: Mapping[str, torch.Tensor],
    source: str,
) -> TriPlaneGenerator:
    """Construct the generator with :func:`sym3d_eg3d.networks.build_generator` and load strictly.

    The plain constructor kwargs are kept on the module as ``G.init_kwargs`` (unless the networks
    already provide that attribute) so that :func:`save_generator` can record them.
    """
    args = (init_kwargs, rendering_kwargs, neural_rendering_resolution, plane_order, source)
    shapes = {k: tuple(t.shape) for k, t in state_dict.items()}
    _check_fits(_construct(*args, shapes_only=True), shapes, source)  # before allocating anything
    G = _construct(*args, shapes_only=False)
    if not isinstance(getattr(G, "init_kwargs", None), Mapping):
        G.init_kwargs = json.loads(json.dumps(dict(init_kwargs)))  # a deep, plain copy
    _check_fits(G, shapes, source)
    G.load_state_dict(dict(state_dict), strict=True)
    return G


# Elementwise ops that construction code applies to fresh weights (``randn(...) / lr_mul``) and
# filters. Their meta kernels are Python decompositions whose first use imports torch._dynamo
# (seconds); the result's shape is the broadcast of the tensor arguments, which is all we need.
_ELEMENTWISE = frozenset(
    {"add", "sub", "mul", "div", "true_divide", "neg", "square", "sqrt", "rsqrt", "abs", "flip"}
    | {f"__{op}__" for op in ("add", "radd", "sub", "rsub", "mul", "rmul", "truediv", "rtruediv")}
    | {f"__{op}__" for op in ("neg", "pow", "rpow")}
    | {"pow", "exp", "log", "clamp", "contiguous", "clone", "detach", "float", "requires_grad_"}
)


def _broadcast(shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    """NumPy broadcasting (``torch.broadcast_shapes`` imports heavy modules on first use)."""
    ndim = max(len(shape) for shape in shapes)
    out = []
    for dims in zip(*((1,) * (ndim - len(shape)) + shape for shape in shapes), strict=True):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            raise ValueError(f"shapes {shapes} do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


class _ShapesOnly(TorchFunctionMode):
    """Inside ``torch.device("meta")``: build a module for its shapes only, quickly.

    * ``.to(device)`` of a meta tensor stays on meta (constant filters are moved to the CPU by
      construction code; meta tensors hold no data to move).
    * ``randn``/``rand``, and elementwise ops and ``outer`` on meta tensors, return an empty meta
      tensor of the right shape directly, so that no Python meta kernel runs (the first one
      imports modules for seconds; see ``_ELEMENTWISE``).
    """

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = dict(kwargs or {})
        if func in (torch.randn, torch.rand):  # random meta kernels are Python decompositions too
            size = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args
            dtype = kwargs.get("dtype") or torch.get_default_dtype()
            return torch.empty(tuple(size), dtype=dtype, device="meta")
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if not tensors or not any(t.is_meta for t in tensors):
            return func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if func is torch.Tensor.to:
            kwargs.pop("device", None)
            args = tuple(a for a in args if not isinstance(a, (str, torch.device)))
            return func(*args, **kwargs)
        if name == "outer" and len(tensors) == 2:
            shape: tuple[int, ...] = (tensors[0].numel(), tensors[1].numel())
        elif name in _ELEMENTWISE:
            shape = _broadcast([tuple(t.shape) for t in tensors])
        else:
            return func(*args, **kwargs)
        dtype = torch.result_type(*tensors) if len(tensors) > 1 else tensors[0].dtype
        if not dtype.is_floating_point and any(isinstance(a, float) for a in args):
            dtype = torch.get_default_dtype()
        return torch.empty(shape, dtype=dtype, device="meta")


def _construct(
    init_kwargs: Mapping[str, Any],
    rendering_kwargs: Mapping[str, Any],
    neural_rendering_resolution: int,
    plane_order: str,
    source: str,
    *,
    shapes_only: bool,
) -> TriPlaneGenerator:
    """Build the generator; ``shapes_only`` builds it on the meta device (no memory, no init)."""
    from sym3d_eg3d.networks import build_generator

    def build() -> TriPlaneGenerator:
        return build_generator(
            dict(init_kwargs),
            rendering_kwargs=dict(rendering_kwargs),
            neural_rendering_resolution=neural_rendering_resolution,
            plane_order=plane_order,  # type: ignore[arg-type]
        )

    try:
        if not shapes_only:
            return build()
        with torch.device("meta"), _ShapesOnly():
            return build()
    except ConfigError as exc:
        raise CheckpointError(
            f"{source}: its constructor kwargs do not build a generator: {exc}"
        ) from exc
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise CheckpointError(
            f"{source}: its constructor kwargs do not build a generator "
            f"({type(exc).__name__}: {exc}).",
            hint="the config was edited or comes from an unsupported EG3D variant; "
            "convert the original .pkl again.",
        ) from None


def _check_fits(G: torch.nn.Module, shapes: Mapping[str, tuple[int, ...]], source: str) -> None:
    """Refuse unless the file's tensor names and shapes are exactly the model's ``state_dict``."""
    expected = {k: tuple(v.shape) for k, v in G.state_dict().items()}
    missing = [k for k in expected if k not in shapes]
    unexpected = [k for k in shapes if k not in expected]
    reshaped = [
        f"{k} (file {list(shapes[k])}, model {list(v)})"
        for k, v in expected.items()
        if k in shapes and shapes[k] != v
    ]
    if missing or unexpected or reshaped:
        raise CheckpointError(
            f"{source}: the weights do not fit the generator built from its config: "
            f"{len(missing)} missing ({_few(missing)}), {len(unexpected)} unexpected ({_few(unexpected)}), "
            f"{len(reshaped)} with another shape ({_few(reshaped)}).",
            hint="the weights and the config come from different models, or the file is from an unsupported EG3D variant.",
        )


def _check_sizes(
    init_kwargs: Mapping[str, Any],
    rendering_kwargs: Mapping[str, Any],
    resolution: int,
    source: str,
) -> None:
    from sym3d_eg3d.networks.factory import check_sizes

    try:
        check_sizes({**init_kwargs, "rendering_kwargs": rendering_kwargs}, resolution)
    except ConfigError as exc:
        raise CheckpointError(f"{source}: its generator settings are out of range: {exc}") from None


def _supported_plane_order(ckpt: OfficialCheckpoint) -> str:
    mode = ckpt.plane_axes_mode
    if mode not in PLANE_ORDERS:
        raise CheckpointError(
            f"{ckpt.path}: renderer.plane_axes are neither EG3D's released planes (XY, XZ, ZX) nor the "
            "corrected ones (XY, XZ, YZ); sym3d's TriPlaneGenerator implements only those two.",
            hint="this checkpoint comes from a modified EG3D; it cannot be loaded faithfully.",
        )
    return mode


# --------------------------------------------------------------------------------------------
# Small file helpers
# --------------------------------------------------------------------------------------------


def _require_file(path: Path, *, what: str = "checkpoint file") -> None:
    if not path.exists():
        raise CheckpointError(f"{path}: no such {what}.", hint=_PICKLE_HINT)
    if path.is_dir():
        raise CheckpointError(
            f"{path}: is a folder, expected a {what}.",
            hint="for a converted folder use load_checkpoint().",
        )


def _open(path: Path, what: str = "a checkpoint") -> BinaryIO:
    """Open a regular file of at most :data:`MAX_CHECKPOINT_BYTES` (FIFOs and devices refused)."""
    return open_regular(path, what, max_bytes=MAX_CHECKPOINT_BYTES)


def _sha256_of_stream(f: BinaryIO) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := f.read(1 << 22):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _sniff(path: Path) -> str:
    """Classify a file by its first bytes: pickle, safetensors, zip, png, jpeg, empty or unknown."""
    with _open(path) as f:
        head = f.read(16)
    if not head:
        return "empty"
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\x89PNG"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(head) > 8 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") < (1 << 27):
        return "safetensors"
    return "unknown"


def _describe_kind(kind: str, path: Path) -> str:
    if kind == "empty":
        return "the file is empty (0 bytes)"
    if kind == "zip":
        return "it is a zip archive (such as a torch.save .pt file), not an EG3D pickle"
    if kind in ("png", "jpeg"):
        return f"it is a {kind.upper()} image"
    if kind == "safetensors":
        return "it is a safetensors file (load it with load_checkpoint, it is already converted)"
    with _open(path) as f:
        head = f.read(8)
    return f"it does not start with a pickle header (first bytes: {head.hex(' ')})"
