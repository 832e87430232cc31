"""SymHeads: a synthetic ground-truth world of 3D heads and the built-in ``symheads`` generator.

Public API:

* :class:`SymHeadsGenerator` / :func:`build_symheads` - the :class:`sym3d.protocols.Generator3D`.
* :class:`SymHeadsScene` / :class:`AsymmetryConfig` / :class:`SceneRender` - ground-truth heads.
* :data:`ROWS` - the latent row layout; :class:`RenderSettings`, :class:`ResidualConfig`.

See ``docs/symheads.md``.
"""

from __future__ import annotations

from sym3d_extras.synthetic.detail import AsymmetryConfig
from sym3d_extras.synthetic.generator import SymHeadsGenerator, build_symheads
from sym3d_extras.synthetic.layout import NUM_WS, ROWS, LatentLayout, attribute_names
from sym3d_extras.synthetic.render import RenderSettings
from sym3d_extras.synthetic.residual import ResidualConfig
from sym3d_extras.synthetic.scene import SceneRender, SymHeadsScene

__all__ = [
    "AsymmetryConfig",
    "LatentLayout",
    "NUM_WS",
    "ROWS",
    "RenderSettings",
    "ResidualConfig",
    "SceneRender",
    "SymHeadsGenerator",
    "SymHeadsScene",
    "attribute_names",
    "build_symheads",
]
