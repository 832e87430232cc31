"""Exports of an inversion: novel views, orbit video, depth, mesh, loss plots and an HTML report.

Importing this package is light: the functions below are loaded on first use, and the heavy
dependencies (Matplotlib, trimesh, scikit-image, imageio-ffmpeg) only inside the functions
that need them.

* :func:`export_result` — the whole output folder of one inversion (``folder``); its settings
  are the fields of :class:`ExportOptions`.
* :func:`render_views`, :func:`novel_view_grid`, :func:`yaw_labels` — many views, labelled grids (``views``).
* :func:`orbit_cameras`, :func:`write_video`, :func:`ffmpeg_status` — SPI's orbit, MP4/GIF (``video``).
* :func:`depth_to_image`, :func:`save_depth_image`, :func:`save_depth`, :func:`load_depth` — depth (``depth``).
* :func:`extract_mesh`, :func:`save_mesh` — marching cubes, PLY (``mesh``; the ``export`` extra).
* :func:`plot_history` — loss curves (``plots``).
* :func:`write_report` — the self-contained ``report.html`` (``report``).

Example:
    >>> result = sym3d.invert("face.png", camera)
    >>> base = sym3d.load_generator("symheads")
    >>> files = export_result(result, result.apply(base), "out/")
    >>> files["report"]
    PosixPath('out/report.html')
"""

from __future__ import annotations

from typing import Any

from sym3d.lazy import lazy_getattr

__all__ = [
    "export_result",
    "ALL_OUTPUTS",
    "ExportOptions",
    "render_views",
    "novel_view_grid",
    "yaw_labels",
    "orbit_cameras",
    "write_video",
    "ffmpeg_status",
    "depth_to_image",
    "save_depth_image",
    "save_depth",
    "load_depth",
    "extract_mesh",
    "save_mesh",
    "plot_history",
    "write_report",
    "ExportError",
    "ExportWarning",
]

_LAZY = {
    "export_result": "folder",
    "ALL_OUTPUTS": "folder",
    "ExportOptions": "folder",
    "render_views": "views",
    "novel_view_grid": "views",
    "yaw_labels": "views",
    "orbit_cameras": "video",
    "write_video": "video",
    "ffmpeg_status": "video",
    "depth_to_image": "depth",
    "save_depth_image": "depth",
    "save_depth": "depth",
    "load_depth": "depth",
    "extract_mesh": "mesh",
    "save_mesh": "mesh",
    "plot_history": "plots",
    "write_report": "report",
    "ExportError": "_common",
    "ExportWarning": "_common",
}


_load = lazy_getattr(__name__, {name: f".{module}" for name, module in _LAZY.items()})


def __getattr__(name: str) -> Any:
    return _load(name)


def __dir__() -> list[str]:
    return sorted(__all__)
