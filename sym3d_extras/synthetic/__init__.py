"""SymHeads: a synthetic ground-truth world of 3D heads and the built-in ``symheads`` generator.

Public API:

* :class:`SymHeadsGenerator` / :func:`build_symheads` - the :class:`sym3d.protocols.Generator3D`.
* :class:`SymHeadsScene` / :class:`AsymmetryConfig` / :class:`SceneRender` - ground-truth heads.
* :data:`ROWS` - the latent row layout; :class:`RenderSettings`, :class:`ResidualConfig`.

Importing this package is light (its entry module :mod:`~sym3d_extras.synthetic.plugin` is
loaded by every ``sym3d`` command): the names below load their modules on first use. See
``docs/symheads.md``.
"""

from __future__ import annotations

from typing import Any

from sym3d.lazy import lazy_getattr

_LAZY = {
    "AsymmetryConfig": "detail",
    "LatentLayout": "layout",
    "NUM_WS": "layout",
    "ROWS": "layout",
    "RenderSettings": "render",
    "ResidualConfig": "residual",
    "SceneRender": "scene",
    "SymHeadsGenerator": "generator",
    "SymHeadsScene": "scene",
    "attribute_names": "layout",
    "build_symheads": "generator",
}
__all__ = sorted(_LAZY)


_load = lazy_getattr(__name__, {name: f".{module}" for name, module in _LAZY.items()})


def __getattr__(name: str) -> Any:
    return _load(name)


def __dir__() -> list[str]:
    return sorted(__all__)
