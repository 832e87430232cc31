import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sym3d import camera as cam
from sym3d.errors import ShapeError

angles = st.floats(min_value=-1.3, max_value=1.3, allow_nan=False)
small = st.floats(min_value=-0.6, max_value=0.6, allow_nan=False)

FIXTURE = None


def _labels(yaw, pitch, roll=0.0, orbit_center=None):
    return cam.look_at(yaw, pitch, roll=roll, orbit_center=orbit_center, dtype=torch.float64)


class TestCameraLabels:
    def test_roundtrip_parts(self):
        c = cam.look_at(torch.tensor([0.1, -0.3]), 0.2)
        labels = cam.CameraLabels(c)
        again = cam.CameraLabels.from_parts(labels.cam2world, labels.intrinsics).pack()
        assert torch.equal(again, c)
        assert labels.intrinsics[0, 0, 0] == pytest.approx(cam.FFHQ_FOCAL)
        assert labels.intrinsics[0, 0, 2] == pytest.approx(0.5)

    def test_bad_shape(self):
        with pytest.raises(
            ShapeError, match=r"camera label: expected shape \[\*,25\], got \[2, 24\]"
        ):
            cam.CameraLabels(torch.zeros(2, 24))


class TestLookAt:
    @settings(max_examples=60, deadline=None)
    @given(angles, small)
    def test_orthonormal_and_looks_at_pivot(self, yaw, pitch):
        c = _labels(yaw, pitch, orbit_center=(0.0, 0.0, 0.0))
        labels = cam.CameraLabels(c)
        r = labels.rotation
        assert torch.allclose(r.T @ r, torch.eye(3, dtype=r.dtype), atol=1e-10)
        assert torch.det(r) == pytest.approx(1.0, abs=1e-10)
        to_pivot = torch.tensor(cam.FFHQ_PIVOT, dtype=r.dtype) - labels.position
        assert torch.allclose(
            torch.nn.functional.normalize(to_pivot, dim=-1), labels.forward, atol=1e-10
        )
        # The pivot projects to the principal point.
        uv, z = cam.project_points(torch.tensor([cam.FFHQ_PIVOT], dtype=r.dtype), c)
        assert torch.allclose(uv, torch.tensor([[0.5, 0.5]], dtype=r.dtype), atol=1e-10)
        assert float(z) > 0
        assert float(labels.position.norm()) == pytest.approx(cam.FFHQ_RADIUS)

    @settings(max_examples=60, deadline=None)
    @given(angles, small, st.floats(min_value=-1.0, max_value=1.0))
    def test_angle_extraction_inverts_construction(self, yaw, pitch, roll):
        y, p, r = cam.yaw_pitch_roll(_labels(yaw, pitch, roll))
        assert float(y) == pytest.approx(yaw, abs=1e-9)
        assert float(p) == pytest.approx(pitch, abs=1e-9)
        assert float(r) == pytest.approx(roll, abs=1e-9)

    def test_matches_eg3d_fixture_cameras(self, eg3d_small):
        c = eg3d_small["c"]
        y0, p0 = cam.eg3d_sampler_angles(math.pi / 2 + 0.4, math.pi / 2)
        y1, p1 = cam.eg3d_sampler_angles(math.pi / 2 - 0.3, math.pi / 2 - 0.2)
        ours0 = cam.look_at(y0, p0, focal=float(c[0, 16]))
        ours1 = cam.look_at(y1, p1, focal=cam.FFHQ_FOCAL)
        assert (ours0 - c[0]).abs().max() < 1e-6
        assert (ours1 - c[1]).abs().max() < 1e-6

    def test_positive_yaw_moves_camera_to_plus_x(self):
        c = cam.look_at(0.5, 0.0)
        assert float(cam.CameraLabels(c).position[0]) > 0
        c = cam.look_at(0.0, 0.3)
        assert float(cam.CameraLabels(c).position[1]) > 0


class TestMirror:
    @settings(max_examples=60, deadline=None)
    @given(angles, small, st.floats(min_value=-0.5, max_value=0.5))
    def test_twice_is_identity(self, yaw, pitch, roll):
        c = _labels(yaw, pitch, roll, orbit_center=(0.0, 0.0, 0.0))
        assert torch.equal(cam.mirror_camera(cam.mirror_camera(c)), c)

    @settings(max_examples=60, deadline=None)
    @given(angles, small)
    def test_negates_yaw_keeps_pitch(self, yaw, pitch):
        c = _labels(yaw, pitch, orbit_center=(0.0, 0.0, 0.0))
        y, p, r = cam.yaw_pitch_roll(c)
        ym, pm, rm = cam.yaw_pitch_roll(cam.mirror_camera(c))
        assert float(ym) == pytest.approx(-float(y), abs=1e-9)
        assert float(pm) == pytest.approx(float(p), abs=1e-9)
        assert float(rm) == pytest.approx(-float(r), abs=1e-9)

    def test_mirrored_point_projects_to_flipped_pixel(self):
        c = cam.look_at(0.4, 0.1, dtype=torch.float64)
        p = torch.tensor([[0.1, -0.05, 0.15]], dtype=torch.float64)
        uv, _ = cam.project_points(p, c)
        uvm, _ = cam.project_points(
            p * torch.tensor([-1.0, 1, 1], dtype=torch.float64), cam.mirror_camera(c)
        )
        assert float(uvm[0, 0]) == pytest.approx(1 - float(uv[0, 0]), abs=1e-12)
        assert float(uvm[0, 1]) == pytest.approx(float(uv[0, 1]), abs=1e-12)

    def test_principal_point_flips(self):
        k = cam.intrinsics_from_focal(4.0, cx=0.4, cy=0.5)
        c = cam.CameraLabels.from_parts(cam.CameraLabels(cam.look_at(0.2, 0.0)).cam2world, k).pack()
        assert float(cam.CameraLabels(cam.mirror_camera(c)).intrinsics[0, 2]) == pytest.approx(0.6)


class TestMirrorWeight:
    def test_values(self):
        w = cam.mirror_weight(torch.tensor([0.0, 0.19, 0.2, 0.3, 0.5, 1.0, -0.5]))
        expect = [0.0, 0.0, 0.299, 0.351, 0.442, 0.499, 0.442]
        assert torch.allclose(w, torch.tensor(expect), atol=2e-3)

    def test_bounded_and_monotone(self):
        y = torch.linspace(0.2, 3.0, 200)
        w = cam.mirror_weight(y)
        assert (w[1:] >= w[:-1] - 1e-7).all() and float(w.max()) <= 0.5


class TestSampling:
    def test_about_pivot_preserves_distance_and_aim(self):
        c = cam.look_at(torch.tensor([0.3, -0.6]), 0.1, orbit_center=None, dtype=torch.float64)
        s = cam.sample_cameras_around(
            c, 16, yaw_range=0.3, pitch_range=0.2, generator=torch.Generator().manual_seed(0)
        )
        assert s.shape == (2, 16, 25)
        pivot = torch.tensor(cam.FFHQ_PIVOT, dtype=torch.float64)
        lab = cam.CameraLabels(s)
        dist = (lab.position - pivot).norm(dim=-1)
        assert torch.allclose(dist, torch.full_like(dist, cam.FFHQ_RADIUS), atol=1e-9)
        aim = torch.nn.functional.normalize(pivot - lab.position, dim=-1)
        assert torch.allclose(aim, lab.forward, atol=1e-9)
        y, p, r = cam.yaw_pitch_roll(s)
        y0, p0, _ = cam.yaw_pitch_roll(c)
        assert ((y - y0[:, None]).abs() <= 0.3 + 1e-6).all()
        assert ((p - p0[:, None]).abs() <= 0.2 + 0.02).all()
        assert r.abs().max() < 1e-6

    def test_rotate_camera_exact_offsets(self):
        c = cam.look_at(0.2, 0.05, orbit_center=None, dtype=torch.float64)
        out = cam.rotate_camera(c, 0.3, 0.1)
        y, p, _ = cam.yaw_pitch_roll(out)
        assert float(y) == pytest.approx(0.5, abs=1e-9)
        assert float(p) == pytest.approx(0.15, abs=1e-9)

    def test_seeded(self):
        c = cam.look_at(0.0, 0.0)[None]
        a = cam.sample_cameras_around(c, 4, generator=torch.Generator().manual_seed(3))
        b = cam.sample_cameras_around(c, 4, generator=torch.Generator().manual_seed(3))
        assert torch.equal(a, b)

    def test_orbit_symmetric_range(self):
        s = cam.sample_orbit_cameras(400, yaw_range=0.7, generator=torch.Generator().manual_seed(0))
        y, _, _ = cam.yaw_pitch_roll(s)
        assert float(y.min()) < -0.5 and float(y.max()) > 0.5
        s1 = cam.sample_orbit_cameras(
            400, yaw_range=0.7, symmetric=False, generator=torch.Generator().manual_seed(0)
        )
        assert float(cam.yaw_pitch_roll(s1)[0].min()) > -0.1


class TestProjection:
    def test_unproject_project_roundtrip(self):
        c = cam.look_at(0.3, -0.1, dtype=torch.float64)
        z = 2.4 + torch.rand(1, 8, 8, dtype=torch.float64)
        pts = cam.unproject_depth(z, c)
        uv, zz = cam.project_points(pts.reshape(-1, 3), c)
        assert torch.allclose(zz, z.flatten(), atol=1e-10)
        assert torch.allclose(
            uv, cam.pixel_centers(8, 8, dtype=torch.float64).reshape(-1, 2), atol=1e-10
        )

    def test_ray_distance_z_roundtrip_and_centre(self):
        c = cam.look_at(0.0, 0.0, dtype=torch.float64)
        d = torch.full((1, 16, 16), 2.7, dtype=torch.float64)
        z = cam.ray_distance_to_z(d, c)
        assert torch.allclose(cam.z_to_ray_distance(z, c), d)
        assert (z <= d).all()
        corner_ratio = float(z[0, 0, 0] / d[0, 0, 0])
        assert 0.98 < corner_ratio < 0.995  # ~1.3% at the corners for the FFHQ focal

    def test_rays_match_eg3d_fixture(self, eg3d_small):
        c = eg3d_small["c"]
        dirs = cam.camera_ray_directions(c, 32, 32)
        assert (dirs - eg3d_small["ray_directions"]).abs().max() < 1e-5
        assert (
            cam.CameraLabels(c).position[:, None, :] - eg3d_small["ray_origins"]
        ).abs().max() < 1e-6


def test_fov_focal_roundtrip():
    assert cam.focal_to_fov(cam.fov_to_focal(18.0)) == pytest.approx(18.0)
    assert cam.focal_to_fov(cam.FFHQ_FOCAL) == pytest.approx(13.37, abs=0.01)
    with pytest.raises(ValueError):
        cam.fov_to_focal(0.0)
