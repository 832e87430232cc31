"""Reading a result folder safely: every file through :mod:`sym3d.files`, every field validated.

Used by :meth:`sym3d.engine.result.InversionResult.load`; nothing from the folder is executed.
The paths come from there (file names: :class:`sym3d.engine.result.ResultFiles`); messages name
the file by its path.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from sym3d.errors import CheckpointError
from sym3d.files import open_regular, read_bytes, read_text

__all__ = ["RESULT_FORMAT", "read_latent", "read_tuned", "read_json", "MAX_JSON_BYTES"]

RESULT_FORMAT = "sym3d-result/1"

_MAX_LATENT_BYTES = 64 << 20  # ws [1, 14, 512] and a camera: a few tens of kB
_MAX_TUNED_BYTES = 4 << 30  # every parameter of EG3D ffhq512: about 130 MB
MAX_JSON_BYTES = 64 << 20
_MAX_OPTIONS_CHARS = 64 << 10
_NAME = re.compile(r"[A-Za-z0-9_.:+-]{1,64}")
_FIX = "re-run `sym3d invert` for this image, or restore the folder from a copy."


def read_latent(path: Path) -> dict[str, Any]:
    """``latent.pt`` -> its validated dict (tensors and plain data only; nothing is run)."""
    import pickle

    data = read_bytes(path, path.name, max_bytes=_MAX_LATENT_BYTES)
    try:
        meta = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f"the global '{found.group(1)}'" if found else "an object torch refuses to load"
        raise CheckpointError(
            f"{path}: refused: it holds {what}, but a sym3d {path.name} holds only tensors and "
            "plain data. Nothing from it was run.",
            hint=_FIX,
        ) from None
    except Exception as exc:  # a damaged zip or pickle: torch raises several types
        raise CheckpointError(
            f"{path}: unreadable ({type(exc).__name__}); the file is damaged or not a {path.name}.",
            hint=_FIX,
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != RESULT_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(
            f"{path}: unknown result format {found!r}; expected {RESULT_FORMAT!r}.", hint=_FIX
        )
    problems = []
    ws, camera = meta.get("ws"), meta.get("camera")
    if not (
        isinstance(ws, torch.Tensor)
        and ws.is_floating_point()
        and ws.dim() == 3
        and ws.shape[0] == 1
        and 1 <= ws.shape[1] <= 64
        and 1 <= ws.shape[2] <= 4096
        and bool(torch.isfinite(ws).all())
    ):
        problems.append(
            "ws: expected a finite float tensor [1, num_ws <= 64, w_dim <= 4096], "
            f"got {_describe(ws)}"
        )
    finite_camera = isinstance(camera, torch.Tensor) and bool(torch.isfinite(camera).all())
    if not (finite_camera and camera.shape == (1, 25)):
        problems.append(f"camera: expected a finite tensor [1, 25], got {_describe(camera)}")
    for key in ("generator", "scope"):
        value = meta.get(key) if key == "generator" else meta.get(key, "all")
        if not isinstance(value, str) or not _NAME.fullmatch(value):
            problems.append(
                f"{key}: expected a short name (letters, digits, _.:+-), got {_describe(value)}"
            )
    options = meta.get("generator_options", "{}")
    try:
        if not isinstance(options, str) or len(options) > _MAX_OPTIONS_CHARS:
            raise ValueError(f"expected a JSON text of at most {_MAX_OPTIONS_CHARS:,} characters")
        options = json.loads(options)
        if not isinstance(options, dict) and options is not None:  # null: cannot be rebuilt
            raise ValueError(f"expected a JSON object, got {type(options).__name__}")
    except (ValueError, RecursionError) as exc:
        problems.append(f"generator_options: {exc}")
    note = meta.get("generator_note", "")
    if not isinstance(note, str) or len(note) > _MAX_OPTIONS_CHARS:
        problems.append(f"generator_note: expected a short text, got {_describe(note)}")
    given = meta.get("input_camera")
    if given is not None and not (
        isinstance(given, torch.Tensor)
        and given.shape == (1, 25)
        and bool(torch.isfinite(given).all())
    ):
        problems.append(f"input_camera: expected a finite tensor [1, 25], got {_describe(given)}")
    if problems:
        raise CheckpointError(f"{path}: damaged or edited: " + "; ".join(problems) + ".", hint=_FIX)
    return {**meta, "generator_options": options}


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor {list(value.shape)}"
    return f"{value!r}"[:80] if isinstance(value, (str, int, float)) else type(value).__name__


def read_tuned(path: Path) -> dict[str, torch.Tensor]:
    """``tuned.safetensors`` -> parameter name -> tensor (size-limited, never executed)."""
    from safetensors.torch import load as st_load

    # Not read_bytes: it asks for max_bytes + 1 bytes at once, and the buffer is allocated upfront.
    with open_regular(path, path.name, max_bytes=_MAX_TUNED_BYTES) as f:
        data = f.read(os.fstat(f.fileno()).st_size)
    try:
        return st_load(data)
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({exc}).", hint=_FIX
        ) from None


def read_json(path: Path, kind: type) -> Any:
    """A size-limited JSON file whose top level must be of type ``kind``."""
    try:
        value = json.loads(read_text(path, path.name, max_bytes=MAX_JSON_BYTES))
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc}).", hint=_FIX) from None
    if not isinstance(value, kind):
        raise CheckpointError(
            f"{path}: expected a JSON {kind.__name__}, got {type(value).__name__}.", hint=_FIX
        )
    return value
