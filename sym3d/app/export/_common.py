"""Helpers shared by the exporters: atomic writes, optional imports, image conversion, errors."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sym3d.atomic import atomic_path, atomic_write_bytes  # noqa: F401  (re-exported for the writers)
from sym3d.checks import check_range, check_shape
from sym3d.errors import MissingDependencyError, ShapeError, Sym3DError, Sym3DWarning

__all__ = [
    "ExportError",
    "ExportWarning",
    "Progress",
    "atomic_path",
    "atomic_write_bytes",
    "require",
    "images_to_uint8",
    "call_progress",
    "save_png",
]

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: called as an export advances (``done`` out of ``total`` units)."""


class ExportError(Sym3DError):
    """An output could not be produced (e.g. the density never crosses the iso-level)."""


class ExportWarning(Sym3DWarning):
    """An export fell back to a lesser format (GIF instead of MP4) or skipped an optional part."""


def require(module: str, what: str, *, package: str | None = None, extra: str = "export") -> Any:
    """Import an optional dependency or raise :class:`~sym3d.errors.MissingDependencyError`.

    Args:
        module: importable module name (``"trimesh"``, ``"skimage.measure"``).
        what: the feature that needs it, for the message (``"mesh export"``).
        package: the pip package name when it differs from the module.
        extra: the sym3d extra that installs it.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(what, extra, package=package or module.split(".")[0]) from None


def images_to_uint8(images: torch.Tensor | np.ndarray, name: str = "frames") -> np.ndarray:
    """``[N, 3, H, W]`` float in ``[0, 1]`` (tensor) or ``uint8 [N, H, W, 3]`` -> ``uint8 [N, H, W, 3]``.

    Raises:
        sym3d.errors.ShapeError, sym3d.errors.RangeError: wrong layout, or values far outside
            ``[0, 1]`` (e.g. generator output in ``[-1, 1]`` not converted).
    """
    if isinstance(images, np.ndarray):
        if images.dtype == np.uint8:
            if images.ndim != 4 or images.shape[-1] != 3:
                raise ShapeError(name, "[N, H, W, 3] (uint8)", images.shape)
            return np.ascontiguousarray(images)
        images = torch.from_numpy(images)
    check_shape(images, ["N", 3, "H", "W"], name)
    check_range(
        images,
        0.0,
        1.0,
        name,
        tol=0.05,
        hint="convert generator output with sym3d.image.from_model_range().",
    )
    arr = images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1)
    return np.ascontiguousarray(arr.cpu().numpy())


def call_progress(progress: Progress | None, stage: str, done: int, total: int) -> None:
    """Call ``progress`` if given."""
    if progress is not None:
        progress(stage, done, total)


def save_png(image: torch.Tensor, path: str | os.PathLike) -> Path:
    """Write ``[3, H, W]`` or ``[1, 3, H, W]`` in ``[0, 1]`` as an 8-bit RGB PNG, atomically.

    Like :func:`sym3d.image.save_image` (same range check), but the file gets the usual
    permissions (umask) instead of ``mkstemp``'s 0600.

    Raises:
        sym3d.errors.RangeError: values far outside ``[0, 1]`` (e.g. unconverted model output).
    """
    from PIL import Image

    from sym3d.image import to_uint8

    check_range(
        image,
        0.0,
        1.0,
        "image",
        tol=0.05,
        hint="convert model output with sym3d.image.from_model_range().",
    )
    p = Path(path)
    arr = to_uint8(image)
    with atomic_path(p) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")
    return p
