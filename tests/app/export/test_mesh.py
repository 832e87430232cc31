from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from sym3d.app.export._common import ExportError
from sym3d.app.export.mesh import (
    EG3D_DENSITY_LEVEL,
    default_level,
    density_grid,
    extract_mesh,
    save_mesh,
)
from sym3d.errors import MissingDependencyError, UserInputError

pytest.importorskip("trimesh")
pytest.importorskip("skimage")


@pytest.fixture(scope="module")
def tiny_mesh(tiny, tiny_ws):
    return extract_mesh(tiny, tiny_ws, resolution=40)


def test_mesh_is_a_closed_surface_inside_the_box(tiny_mesh, tiny, tiny_ws):
    m = tiny_mesh
    assert len(m.vertices) > 500 and len(m.faces) > 1000
    assert m.is_watertight and m.is_winding_consistent
    assert m.volume > 0  # outward normals
    lo, hi = m.bounds
    border = int(30 / 256 * 40) / 39  # the zeroed margin, in world units
    assert (lo >= -0.5 + border - 1e-6).all() and (hi <= 0.5 - border + 1e-6).all()
    # world coordinates: the tiny head is an ellipsoid centred on the y axis with radii ~0.24/0.30/0.24
    radii = tiny._shape_params(tiny_ws)["radii"][0].numpy()
    centre_y = float(tiny._shape_params(tiny_ws)["center_y"][0])
    assert abs((lo[0] + hi[0]) / 2) < 0.02
    assert abs(hi[1] - (centre_y + radii[1])) < 0.03
    assert abs(lo[0] + radii[0]) < 0.03
    ellipsoid = 4 / 3 * math.pi * radii.prod()
    assert 0.85 * ellipsoid < m.volume < 1.25 * ellipsoid  # plus the nose bump
    meta = m.metadata["sym3d"]
    assert meta["resolution"] == [40, 40, 40] and meta["level"] > 0


def test_ply_round_trip(tiny_mesh, tmp_path):
    import trimesh

    p = save_mesh(tiny_mesh, tmp_path / "mesh.ply")
    assert p.read_bytes().startswith(b"ply")
    m = trimesh.load(p, process=False)
    assert len(m.vertices) == len(tiny_mesh.vertices) and len(m.faces) == len(tiny_mesh.faces)
    assert m.is_watertight
    assert not [q for q in tmp_path.iterdir() if q.name.startswith(".tmp-")]
    with pytest.raises(UserInputError):
        save_mesh(tiny_mesh, tmp_path / "mesh")


def test_density_grid_chunking_and_layout(tiny, tiny_ws):
    bounds = ((-0.5, -0.4, -0.3), (0.5, 0.4, 0.3))
    a = density_grid(tiny, tiny_ws, resolution=(9, 7, 5), bounds=bounds, chunk=13)
    b = density_grid(tiny, tiny_ws, resolution=(9, 7, 5), bounds=bounds, chunk=10**6)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-5)
    assert a.shape == (9, 7, 5)
    # index [i, j, k] is the world point lo + (i, j, k) * step
    i, j, k = 6, 2, 3
    point = torch.tensor([[[-0.5 + i * 1.0 / 8, -0.4 + j * 0.8 / 6, -0.3 + k * 0.6 / 4]]])
    with torch.no_grad():
        value = float(tiny.sample_density(tiny_ws, point)[0, 0])
    assert abs(value - a[i, j, k]) < 1e-3
    with pytest.raises(UserInputError, match="chunk"):
        density_grid(tiny, tiny_ws, resolution=8, chunk=0)
    with pytest.raises(UserInputError, match="bounds"):
        density_grid(tiny, tiny_ws, resolution=8, bounds=((0, 0, 0), (0, 1, 1)))
    with pytest.raises(UserInputError, match="resolution"):
        density_grid(tiny, tiny_ws, resolution=2)


def test_level_out_of_range_raises(tiny, tiny_ws):
    with pytest.raises(ExportError, match="never crosses"):
        extract_mesh(tiny, tiny_ws, resolution=16, level=1e6)


def test_default_levels(tiny):
    grid = np.array([0.0, 10.0, 60.0])
    assert default_level(tiny, grid) == 30.0

    class FakeEG3D:
        name = "eg3d"

    assert abs(default_level(FakeEG3D(), grid) - EG3D_DENSITY_LEVEL) < 1e-12
    assert abs(EG3D_DENSITY_LEVEL - math.log1p(math.exp(10.0 - 1.0))) < 1e-12

    from sym3d.protocols import GeneratorInfo

    class Custom:
        info = GeneratorInfo(mesh_level=3.5)

    assert default_level(Custom(), grid) == 3.5


def test_vertex_colours(tiny, tiny_ws, tmp_path):
    import trimesh

    m = extract_mesh(tiny, tiny_ws, resolution=32, colors=True)
    colours = np.asarray(m.visual.vertex_colors)
    assert colours.shape == (len(m.vertices), 4) and colours.dtype == np.uint8
    assert colours[:, :3].std(axis=0).max() > 5  # not one flat colour: eyes are dark
    # the tiny head is blue-ish, its eyes dark
    assert np.median(colours[:, 2]) > np.median(colours[:, 0])
    m2 = trimesh.load(save_mesh(m, tmp_path / "c.ply"), process=False)
    np.testing.assert_array_equal(np.asarray(m2.visual.vertex_colors), colours)


def test_missing_dependency_is_typed(tiny, tiny_ws, monkeypatch):
    monkeypatch.setitem(sys.modules, "trimesh", None)
    with pytest.raises(MissingDependencyError, match=r"sym3d\[export\]") as info:
        extract_mesh(tiny, tiny_ws, resolution=8)
    assert info.value.extra == "export"
