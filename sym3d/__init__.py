"""sym3d: single-photo 3D face reconstruction by 3D GAN inversion with a facial symmetry prior.

Public API (imported lazily so that ``import sym3d`` stays light):

* :func:`invert` — one photo (with its camera, or posed by a pose estimator) ->
  :class:`InversionResult`.
* :func:`load_generator` — build a registered generator (``"eg3d"``, ``"symheads"``, ...).
* :func:`load_pose_estimator` — build a registered pose estimator (photo -> crop + camera).
* :data:`hookimpl` — decorator for plugin hook implementations.
* the protocols in :mod:`sym3d.protocols` and the configs in :mod:`sym3d.config`.
"""

from __future__ import annotations

from typing import Any

from sym3d._version import __version__
from sym3d.hookspecs import hookimpl
from sym3d.lazy import lazy_getattr

__all__ = [
    "__version__",
    "hookimpl",
    "invert",
    "load_generator",
    "load_pose_estimator",
    "InversionResult",
    "InversionConfig",
]

_load = lazy_getattr(
    __name__,
    {
        "invert": "sym3d.engine.api",
        "load_generator": "sym3d.engine.api",
        "load_pose_estimator": "sym3d.engine.api",
        "InversionResult": "sym3d.engine.result",
        "InversionConfig": "sym3d.config",
    },
)


def __getattr__(name: str) -> Any:
    return _load(name)
