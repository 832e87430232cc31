"""Extract a triangle mesh from the generator's density by marching cubes, and save it.

The density (``Generator3D.sample_density``, after the renderer's activation, in inverse world
units) is evaluated on a regular grid over ``bounds`` in chunks of points, the grid's border is
zeroed as EG3D's ``gen_samples.py`` does (a margin of ``30/256`` of the grid on every side: it
removes the floaters the tri-planes leave near the box faces and closes the surface where the
head leaves the box, e.g. at the neck), and ``skimage.measure.marching_cubes`` extracts the
iso-surface at ``level``. Vertices are in world coordinates (EG3D frame: +y up, the face looks
toward +z), faces wind counter-clockwise seen from outside (outward normals).

Iso-level (``level=None``):

* ``eg3d``: EG3D extracts at raw sigma 10; after the renderer's activation ``softplus(sigma - 1)``
  that is a density of ``softplus(9) = 9.0001`` (:data:`EG3D_DENSITY_LEVEL`).
* a generator declaring ``info.mesh_level`` (:class:`sym3d.protocols.GeneratorInfo`): that value.
* otherwise half the largest density on the grid. For ``symheads`` and the ``tiny`` test
  generator (``density = scale * sigmoid(-sdf / eps)``) that is exactly the ``sdf = 0`` surface.

Requires the ``export`` extra (trimesh, scikit-image).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from sym3d.app.export._common import ExportError, atomic_write_bytes, require
from sym3d.app.export.views import generator_device, render_views
from sym3d.camera import CameraLabels, look_at, project_points
from sym3d.checks import check_shape
from sym3d.errors import UserInputError
from sym3d.image import from_model_range
from sym3d.protocols import Generator3D

if TYPE_CHECKING:  # pragma: no cover
    import trimesh

__all__ = [
    "extract_mesh",
    "save_mesh",
    "density_grid",
    "default_level",
    "default_color_cameras",
    "EG3D_DENSITY_LEVEL",
    "EG3D_BORDER",
]

EG3D_DENSITY_LEVEL: float = math.log1p(math.exp(9.0))
"""EG3D's iso-level (raw sigma 10) after its activation ``softplus(sigma - 1)``."""
EG3D_BORDER: float = 30.0 / 256.0
"""Fraction of the grid zeroed on every side (EG3D: 30 voxels of 256)."""

Bounds = tuple[Sequence[float], Sequence[float]]


def _resolution(resolution: int | Sequence[int]) -> tuple[int, int, int]:
    res = (resolution,) * 3 if isinstance(resolution, int) else tuple(int(r) for r in resolution)
    if len(res) != 3 or min(res) < 4:
        raise UserInputError(
            f"resolution: expected an int or 3 ints, each >= 4, got {resolution!r}."
        )
    return res  # type: ignore[return-value]


def _bounds(bounds: Bounds) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = (np.asarray(b, dtype=np.float64) for b in bounds)
    if lo.shape != (3,) or hi.shape != (3,) or not np.all(hi > lo):
        raise UserInputError(
            f"bounds: expected ((x0, y0, z0), (x1, y1, z1)) with x1 > x0 etc., got {bounds!r}."
        )
    return lo, hi


def density_grid(
    generator: Generator3D,
    ws: torch.Tensor,
    *,
    resolution: int | Sequence[int] = 128,
    bounds: Bounds = ((-0.5, -0.5, -0.5), (0.5, 0.5, 0.5)),
    chunk: int = 2**19,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Density on a regular grid over ``bounds``: ``float32 [nx, ny, nz]``.

    Index ``[i, j, k]`` is the world point ``lo + (i, j, k) * (hi - lo) / (n - 1)`` (the grid
    includes both bounds).

    Points are generated and evaluated ``chunk`` at a time (one ``sample_density`` call each,
    without gradients), so memory stays bounded at any resolution.

    Args:
        generator: the (tuned) generator.
        ws: ``[1, num_ws, w_dim]``.
        resolution: grid points per axis (an int or ``(nx, ny, nz)``).
        bounds: ``((x0, y0, z0), (x1, y1, z1))`` world box.
        chunk: points per ``sample_density`` call.
        progress: ``progress(done_chunks, total_chunks)``.

    Raises:
        sym3d.errors.ShapeError: ``ws`` is not ``[1, num_ws, w_dim]``.
        sym3d.errors.UserInputError: bad ``resolution``, ``bounds`` or ``chunk``.
    """
    check_shape(ws, [1, generator.num_ws, generator.w_dim], "ws")
    nx, ny, nz = _resolution(resolution)
    lo, hi = _bounds(bounds)
    if chunk < 1:
        raise UserInputError(f"chunk: expected a positive number of points, got {chunk}.")
    device = generator_device(generator)
    ws_d = ws.to(device)
    axes = [
        torch.linspace(float(lo[a]), float(hi[a]), n, dtype=ws_d.dtype, device=device)
        for a, n in enumerate((nx, ny, nz))
    ]
    total = nx * ny * nz
    out = np.empty(total, dtype=np.float32)
    n_chunks = math.ceil(total / chunk)
    with torch.no_grad():
        for c, start in enumerate(range(0, total, chunk)):
            idx = torch.arange(start, min(start + chunk, total), device=device)
            pts = torch.stack(
                [axes[0][idx // (ny * nz)], axes[1][(idx // nz) % ny], axes[2][idx % nz]], dim=-1
            )
            sigma = generator.sample_density(ws_d, pts[None])[0]
            out[start : start + idx.numel()] = sigma.float().cpu().numpy()
            if progress is not None:
                progress(c + 1, n_chunks)
    return out.reshape(nx, ny, nz)


def default_level(generator: Generator3D, grid: np.ndarray) -> float:
    """The iso-level used when ``level=None`` (see the module docstring)."""
    from sym3d.protocols import generator_info

    custom = generator_info(generator).mesh_level
    if custom is not None:
        return float(custom)
    if getattr(generator, "name", None) == "eg3d":
        return EG3D_DENSITY_LEVEL
    return 0.5 * float(np.max(grid))


def default_color_cameras(extra: torch.Tensor | None = None) -> torch.Tensor:
    """Cameras ``[K, 25]`` used to colour vertices.

    Five level yaws (-1 ... 1 rad), a view from above and one from below the front; ``extra``
    cameras ``[E, 25]`` (e.g. the input view) are appended.
    """
    yaw = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0, 0.0, 0.0])
    pitch = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.5, -0.5])
    cams = look_at(yaw, pitch)
    return cams if extra is None else torch.cat([cams, extra.reshape(-1, 25).to(cams)], 0)


def _vertex_colors(
    generator: Generator3D,
    ws: torch.Tensor,
    vertices: np.ndarray,
    normals: np.ndarray,
    cameras: torch.Tensor,
    tolerance: float,
) -> np.ndarray:
    """Vertex colours ``uint8 [N, 4]`` from rendered views.

    Each vertex blends the views that see it (depth test against the rendered camera z),
    weighted by ``cos^2`` of the angle between its normal and the view; the vertices no view
    sees take the colour of the nearest coloured vertex.
    """
    out = render_views(generator, ws, cameras)
    img = from_model_range(out.image[0].float(), clamp=True)  # [K, 3, H, W]
    dz, op = out.depth_z[0].float(), out.opacity[0].float()  # [K, 1, h, w]
    k = cameras.shape[0]
    pts = torch.from_numpy(vertices).float()
    nrm = torch.from_numpy(normals).float()
    cams = cameras.float().cpu()
    uv, z = project_points(pts[None].expand(k, -1, -1), cams)  # [K, N, 2], [K, N]
    grid = (uv * 2.0 - 1.0)[:, None]  # [K, 1, N, 2]
    colour = F.grid_sample(img, grid, mode="bilinear", align_corners=False)[:, :, 0]  # [K, 3, N]
    surf = F.grid_sample(dz, grid, mode="nearest", align_corners=False)[:, 0, 0]  # [K, N]
    opa = F.grid_sample(op, grid, mode="nearest", align_corners=False)[:, 0, 0]
    inside = (uv >= 0).all(-1) & (uv <= 1).all(-1) & (z > 0)
    visible = inside & (z - surf <= tolerance) & (opa > 0.5)
    to_cam = F.normalize(CameraLabels(cams).position[:, None, :] - pts[None], dim=-1)  # [K, N, 3]
    facing = (to_cam * nrm[None]).sum(-1).clamp_min(0.0)
    w = visible.float() * facing.square()
    total = w.sum(0)  # [N]
    rgb = (w[:, None, :] * colour).sum(0) / total.clamp_min(1e-8)  # [3, N]
    rgb = rgb.t().numpy()
    seen = total.numpy() > 1e-6
    if seen.any() and not seen.all():
        spatial = require("scipy.spatial", "mesh vertex colours", package="scipy")
        _, nearest = spatial.cKDTree(vertices[seen]).query(vertices[~seen])
        rgb[~seen] = rgb[seen][nearest]
    elif not seen.any():
        rgb[:] = 0.7
    rgba = np.concatenate([rgb, np.ones((rgb.shape[0], 1))], axis=1)
    return (np.clip(rgba, 0, 1) * 255).round().astype(np.uint8)


def extract_mesh(
    generator: Generator3D,
    ws: torch.Tensor,
    *,
    resolution: int | Sequence[int] = 128,
    bounds: Bounds = ((-0.5, -0.5, -0.5), (0.5, 0.5, 0.5)),
    level: float | None = None,
    chunk: int = 2**19,
    border: float = EG3D_BORDER,
    largest_component: bool = False,
    colors: bool = False,
    color_cameras: torch.Tensor | None = None,
    visibility_tolerance: float = 0.03,
    progress: Callable[[int, int], None] | None = None,
) -> trimesh.Trimesh:
    """Marching-cubes mesh of the density of ``ws`` (see the module docstring).

    Args:
        generator: the (tuned) generator.
        ws: ``[1, num_ws, w_dim]``.
        resolution: grid points per axis (SPI uses 512 on a GPU; 128 takes seconds on a CPU).
        bounds: world box ``((x0, y0, z0), (x1, y1, z1))`` (EG3D's ``box_warp = 1`` cube).
        level: iso-level in density units; ``None`` picks :func:`default_level`.
        chunk: points per ``sample_density`` call.
        border: fraction of the grid zeroed on each side (EG3D: 30/256). At least one layer is
            always zeroed, so the surface is closed.
        largest_component: keep only the connected component with the most faces (drops
            floaters).
        colors: colour the vertices from rendered views (see ``color_cameras``); otherwise the
            mesh is uncoloured.
        color_cameras: ``[K, 25]`` views to colour from (default :func:`default_color_cameras`).
        visibility_tolerance: a vertex counts as seen by a view when it is at most this far
            (world units) behind the rendered camera-z surface.
        progress: ``progress(done_chunks, total_chunks)`` of the density evaluation.

    Returns:
        A ``trimesh.Trimesh`` in world coordinates (RGBA ``visual.vertex_colors`` when
        ``colors``). ``mesh.metadata["sym3d"]`` records the level, resolution, bounds and border.

    Raises:
        sym3d.errors.MissingDependencyError: trimesh or scikit-image is missing.
        ExportError: the density never crosses ``level`` inside the box (empty mesh).
        sym3d.errors.UserInputError, sym3d.errors.ShapeError: bad arguments.
    """
    trimesh = require("trimesh", "mesh export")
    measure = require("skimage.measure", "mesh export", package="scikit-image")
    if not 0.0 <= border < 0.5:
        raise UserInputError(f"border: expected a fraction in [0, 0.5), got {border}.")
    grid = density_grid(
        generator, ws, resolution=resolution, bounds=bounds, chunk=chunk, progress=progress
    )
    if not np.isfinite(grid).all():
        raise ExportError(
            f"the generator's density holds {int((~np.isfinite(grid)).sum())} NaN/inf values inside the box."
        )
    lo, hi = _bounds(bounds)
    shape = np.array(grid.shape)
    pads = np.maximum(1, (border * shape).astype(int))
    grid[: pads[0]] = 0
    grid[-pads[0] :] = 0
    grid[:, : pads[1]] = 0
    grid[:, -pads[1] :] = 0
    grid[:, :, : pads[2]] = 0
    grid[:, :, -pads[2] :] = 0
    iso = default_level(generator, grid) if level is None else float(level)
    gmax = float(grid.max())
    if not (0.0 < iso < gmax):
        raise ExportError(
            f"no surface: the density inside the box (border removed) is in [0, {gmax:.4g}] and never crosses level {iso:.4g}.",
            hint="pass a level inside that range, enlarge bounds, or reduce border.",
        )
    spacing = tuple(float(s) for s in (hi - lo) / (shape - 1))
    verts, faces, _normals, _values = measure.marching_cubes(
        grid, level=iso, spacing=spacing, allow_degenerate=False
    )
    verts = verts + lo[None, :]
    mesh = trimesh.Trimesh(vertices=verts, faces=faces, process=True)
    if largest_component and len(mesh.faces):
        parts = mesh.split(only_watertight=False)
        if len(parts) > 1:
            mesh = max(parts, key=lambda m: len(m.faces))
    if mesh.volume < 0:
        mesh.invert()
    if len(mesh.faces) == 0:
        raise ExportError(f"marching cubes found no triangles at level {iso:.4g}.")
    if colors:
        cams = default_color_cameras() if color_cameras is None else color_cameras.reshape(-1, 25)
        mesh.visual.vertex_colors = _vertex_colors(
            generator,
            ws,
            np.array(mesh.vertices, dtype=np.float32),
            np.array(mesh.vertex_normals, dtype=np.float32),
            cams,
            visibility_tolerance,
        )
    mesh.metadata["sym3d"] = {
        "level": iso,
        "resolution": [int(s) for s in shape],
        "bounds": [lo.tolist(), hi.tolist()],
        "border_voxels": [int(p) for p in pads],
        "generator": getattr(generator, "name", type(generator).__name__),
    }
    return mesh


def save_mesh(mesh: Any, path: str | os.PathLike) -> Path:
    """Write a mesh atomically; the suffix picks the format.

    ``.ply`` is binary PLY with vertex colours; ``.obj``, ``.glb``, ``.stl``, ... anything
    trimesh exports also works.

    Raises:
        sym3d.errors.MissingDependencyError: trimesh is missing.
        sym3d.errors.UserInputError: no or unknown suffix.
    """
    require("trimesh", "mesh export")
    p = Path(path)
    file_type = p.suffix.lower().lstrip(".")
    if not file_type:
        raise UserInputError(
            f"{p}: expected a mesh file suffix such as .ply, .obj or .glb, got none."
        )
    try:
        data = mesh.export(file_type=file_type)
    except (ValueError, NotImplementedError) as exc:
        raise UserInputError(
            f"{p}: trimesh cannot write {p.suffix!r} files ({exc}).", hint="use .ply, .obj or .glb."
        ) from None
    return atomic_write_bytes(p, data if isinstance(data, bytes) else data.encode())
