"""Port of the EG3D generator networks; ``state_dict`` keys match the official implementation 1:1.

Entry points:

* :func:`build_generator` builds a :class:`TriPlaneGenerator` from official init kwargs;
* :class:`TriPlaneGenerator` exposes ``mapping``, ``backbone_planes``, ``render_planes``,
  ``synthesis``, ``sample_mixed`` and ``sample_planes``;
* the renderer's random draws are chosen with ``random=`` (see :mod:`.randomness`).
"""

from __future__ import annotations

from sym3d_eg3d.networks.factory import build_generator
from sym3d_eg3d.networks.randomness import (
    CallableRandom,
    MidpointRandom,
    RandomLike,
    RandomSource,
    ReplayRandom,
    TorchRandom,
    as_random_source,
)
from sym3d_eg3d.networks.superresolution import (
    SUPERRESOLUTION_MODULES,
    resolve_superresolution_class,
)
from sym3d_eg3d.networks.triplane import OSGDecoder, TriPlaneGenerator

__all__ = [
    "TriPlaneGenerator",
    "OSGDecoder",
    "build_generator",
    "SUPERRESOLUTION_MODULES",
    "resolve_superresolution_class",
    "RandomLike",
    "RandomSource",
    "TorchRandom",
    "MidpointRandom",
    "CallableRandom",
    "ReplayRandom",
    "as_random_source",
]
