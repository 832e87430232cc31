"""EG3D for sym3d: a faithful port of the EG3D generator, safe checkpoint loading and CUDA kernels.

Public API (imported lazily so that plugin discovery stays light):

* :func:`load_checkpoint` — an official ``.pkl`` (read without executing it) or a converted folder.
* :func:`convert_checkpoint` — ``.pkl`` -> ``generator.safetensors`` + ``generator.json``.
* :func:`build_eg3d` / :class:`EG3DGenerator` — the :class:`sym3d.protocols.Generator3D` adapter.
"""

from __future__ import annotations

from typing import Any

from sym3d.lazy import lazy_getattr

__all__ = ["load_checkpoint", "convert_checkpoint", "save_generator", "build_eg3d", "EG3DGenerator"]

_LAZY = {
    "load_checkpoint": "sym3d_eg3d.checkpoints",
    "convert_checkpoint": "sym3d_eg3d.checkpoints",
    "save_generator": "sym3d_eg3d.checkpoints",
    "build_eg3d": "sym3d_eg3d.adapter",
    "EG3DGenerator": "sym3d_eg3d.adapter",
}

_load = lazy_getattr(__name__, _LAZY)


def __getattr__(name: str) -> Any:
    return _load(name)
