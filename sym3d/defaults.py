"""Default component names shared by the Python API and the command line (imports nothing).

The command line reads them when it declares its options, so this module stays import-free.
"""

from __future__ import annotations

__all__ = ["DEFAULT_GENERATOR"]

DEFAULT_GENERATOR = "symheads"
"""The generator of :func:`sym3d.invert`, :func:`sym3d.load_generator`, ``sym3d invert`` and
``sym3d batch`` when none is named. SymHeads (synthetic heads, CPU-friendly) is installed by
``pip install .`` and needs no weights; EG3D needs NVIDIA's checkpoint
(``generator="eg3d", network=...`` / ``--generator eg3d --network ...``)."""
