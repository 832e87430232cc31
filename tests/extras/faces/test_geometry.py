"""The face pipeline's geometry without MediaPipe: EG3D crop, head rotation, camera label, warp, masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sym3d.camera import CameraLabels, look_at, mirror_camera, yaw_pitch_roll
from sym3d_extras.faces import geometry as geo

TPL = geo.BFM_FIVE_POINTS


def _rot(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = (
        math.cos(ax),
        math.sin(ax),
        math.cos(ay),
        math.sin(ay),
        math.cos(az),
        math.sin(az),
    )
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _symmetric_cloud(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A mirror-symmetric head-frame cloud ``[N, 3]`` whose first 5 points are the BFM template, and its mirror table."""
    rng = np.random.default_rng(seed)
    half = rng.uniform([0.05, -0.5, -0.1], [0.4, 0.4, 0.5], size=(40, 3))
    mirrored = half * np.array([-1.0, 1.0, 1.0])
    mid = rng.uniform([0.0, -0.6, 0.0], [0.0, 0.5, 0.55], size=(6, 3))
    five = TPL.copy()
    pts = np.concatenate([five, half, mirrored, mid])
    n_half = len(half)
    mirror = np.arange(len(pts))
    # The template is only approximately symmetric; treat its points as unpaired.
    for i in range(n_half):
        a, b = 5 + i, 5 + n_half + i
        mirror[a], mirror[b] = b, a
    return pts, mirror


def _camera_points(head_pts: np.ndarray, r_wc: np.ndarray, scale: float = 100.0) -> np.ndarray:
    """Head-frame points as a camera (x right, y down, z forward) sees them, in 'pixels'."""
    return scale * head_pts @ r_wc.T + np.array([250.0, 260.0, 0.0])


# ---------------------------------------------------------------------------------------------
# POS and the EG3D crop
# ---------------------------------------------------------------------------------------------


def test_template_scale_is_eg3d_recipe():
    # One template unit = 300 px in the 1024 image, of which the central 700 become 512.
    assert geo.template_scale(512) == pytest.approx(300 * 512 / 700)


def test_pos_fit_recovers_scale_and_origin():
    r = _rot(0.1, -0.3, 0.05)
    rows = 80.0 * r[:2]
    t = np.array([123.0, 77.0])
    pts = TPL @ rows.T + t
    t_hat, s_hat, rows_hat = geo.pos_fit(pts)
    np.testing.assert_allclose(t_hat, t, atol=1e-9)
    assert s_hat == pytest.approx(80.0, rel=1e-9)
    np.testing.assert_allclose(rows_hat, rows, atol=1e-9)
    # Image y pointing down instead of up changes nothing but the sign of rows[1].
    flipped = pts * np.array([1.0, -1.0])
    t2, s2, _ = geo.pos_fit(flipped)
    assert s2 == pytest.approx(s_hat)
    np.testing.assert_allclose(t2, t * np.array([1.0, -1.0]), atol=1e-9)


@pytest.mark.parametrize("upright", [True, False])
def test_crop_puts_template_origin_at_centre_with_eg3d_scale(upright):
    # A frontal template face seen at 40 px per template unit, centred at (300, 200), rolled 12 degrees.
    roll = math.radians(12.0)
    rows = 40.0 * _rot(0.0, 0.0, roll)[:2] * np.array([[1.0], [-1.0]])  # image y down
    pts = TPL @ rows.T + np.array([300.0, 200.0])
    m, info = geo.eg3d_crop_matrix(pts[:, :2], size=512, upright=upright)
    np.testing.assert_allclose(
        geo.apply_matrix(m, np.array([300.0, 200.0])), [256.0, 256.0], atol=1e-6
    )
    assert info["scale"] == pytest.approx(geo.template_scale(512) / 40.0, rel=1e-6)
    crop_pts = geo.apply_matrix(m, pts)
    eye_line = crop_pts[1] - crop_pts[0]
    angle = math.degrees(math.atan2(eye_line[1], eye_line[0]))
    if upright:
        assert abs(angle) < 0.5  # levelled
        # Frontal template lands where the template says: eyes at 256 -/+ 0.31 * 219.4, row 256 - 0.29 * 219.4.
        expected = TPL[:, :2] * np.array([1.0, -1.0]) * geo.template_scale(512) + 256.0
        np.testing.assert_allclose(crop_pts, expected, atol=0.5)
    else:
        d = pts[1] - pts[0]
        assert angle == pytest.approx(
            math.degrees(math.atan2(d[1], d[0])), abs=1e-6
        )  # EG3D keeps the roll
        assert abs(angle) > 10
        assert info["angle"] == 0.0


def test_ffhq_roll_angle_sign_and_mirror():
    base = TPL[:, :2] * np.array([1.0, -1.0]) * 50 + 200
    assert geo.ffhq_roll_angle(base) == pytest.approx(0.0, abs=1e-2)
    c, s = math.cos(0.2), math.sin(0.2)
    rotated = (base - 200) @ np.array([[c, -s], [s, c]]).T + 200
    assert geo.ffhq_roll_angle(rotated) == pytest.approx(geo.ffhq_roll_angle(base) + 0.2, abs=1e-6)
    # Mirroring the photo (and relabelling left/right) negates the angle.
    mirrored = rotated * np.array([-1.0, 1.0])
    mirrored = mirrored[[1, 0, 2, 4, 3]]
    assert geo.ffhq_roll_angle(mirrored) == pytest.approx(-geo.ffhq_roll_angle(rotated), abs=1e-9)


# ---------------------------------------------------------------------------------------------
# Head rotation and the camera label
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaw", "pitch", "roll"),
    [(0.0, 0.0, 0.0), (0.5, 0.1, 0.0), (-0.7, -0.2, 0.15), (0.3, 0.25, -0.3)],
)
def test_head_rotation_round_trip_through_the_camera_label(yaw, pitch, roll):
    # The camera orbiting the head at (yaw, pitch, roll) sees the head rotated by its world->camera rotation.
    cam = look_at(yaw, pitch, roll=roll, orbit_center=None, dtype=torch.float64)
    r_cw = CameraLabels(cam).rotation.numpy()
    r_wc = r_cw.T
    head, mirror = _symmetric_cloud()
    seen = _camera_points(head, r_wc)
    est = geo.head_rotation(seen, mirror, seen[:5])
    np.testing.assert_allclose(est, r_wc, atol=1e-6)
    label = geo.camera_from_head_rotation(est)
    assert label.shape == (1, 25) and label.dtype == torch.float32
    y, p, r = (float(v) for v in yaw_pitch_roll(label[0].double()))
    assert (y, p, r) == pytest.approx((yaw, pitch, roll), abs=1e-4)
    # EG3D FFHQ orbit: radius 2.7 around the origin, focal 4.2647, principal point at the centre.
    labels = CameraLabels(label[0])
    assert float(labels.position.norm()) == pytest.approx(2.7, abs=1e-4)
    assert float(labels.intrinsics[0, 0]) == pytest.approx(4.2647, abs=1e-4)
    assert float(labels.intrinsics[0, 2]) == pytest.approx(0.5)


def test_yaw_sign_follows_sym3d_convention():
    # Yaw > 0: the subject's LEFT side faces the camera, so the left eye is nearer (smaller z).
    cam = look_at(0.5, 0.0, orbit_center=None, dtype=torch.float64)
    r_wc = CameraLabels(cam).rotation.numpy().T
    head, mirror = _symmetric_cloud()
    seen = _camera_points(head, r_wc)
    assert seen[1, 2] < seen[0, 2]  # left eye nearer than right eye
    y, _, _ = yaw_pitch_roll(
        geo.camera_from_head_rotation(geo.head_rotation(seen, mirror, seen[:5]))[0]
    )
    assert float(y) == pytest.approx(0.5, abs=1e-4)


def test_head_rotation_of_a_mirrored_view_is_the_mirrored_camera():
    cam = look_at(0.4, 0.15, roll=0.1, orbit_center=None, dtype=torch.float64)
    r_wc = CameraLabels(cam).rotation.numpy().T
    head, mirror = _symmetric_cloud()
    seen = _camera_points(head, r_wc)
    flipped = seen * np.array([-1.0, 1.0, 1.0])
    # In the mirrored image the landmark labels follow the mirrored face.
    relabel = np.concatenate([[1, 0, 2, 4, 3], np.arange(5, len(seen))])
    flipped = flipped[np.where(np.arange(len(seen)) < 5, relabel, mirror)]
    a = geo.camera_from_head_rotation(geo.head_rotation(seen, mirror, seen[:5]))
    b = geo.camera_from_head_rotation(geo.head_rotation(flipped, mirror, flipped[:5]))
    # Same up to the template's slight asymmetry.
    ya, pa, ra = (float(v) for v in yaw_pitch_roll(a[0]))
    yb, pb, rb = (float(v) for v in yaw_pitch_roll(b[0]))
    assert (
        yb == pytest.approx(-ya, abs=0.01)
        and pb == pytest.approx(pa, abs=0.01)
        and rb == pytest.approx(-ra, abs=0.01)
    )
    np.testing.assert_allclose(mirror_camera(a).numpy(), b.numpy(), atol=0.03)


def test_rotate_in_image_plane_changes_only_roll():
    # Turning the image content by rot2(-a) (what the upright crop does) is a camera roll of +a.
    cam = look_at(0.3, 0.1, roll=0.2, orbit_center=None, dtype=torch.float64)
    r_wc = CameraLabels(cam).rotation.numpy().T
    y0, p0, r0 = (float(v) for v in yaw_pitch_roll(geo.camera_from_head_rotation(r_wc)[0].double()))
    y1, p1, r1 = (
        float(v)
        for v in yaw_pitch_roll(
            geo.camera_from_head_rotation(geo.rotate_in_image_plane(r_wc, 0.2))[0].double()
        )
    )
    assert (y1, p1) == pytest.approx((y0, p0), abs=1e-4)
    assert r1 == pytest.approx(r0 + 0.2, abs=1e-4)


# ---------------------------------------------------------------------------------------------
# Warp, masks, boxes
# ---------------------------------------------------------------------------------------------


def test_warp_crop_matches_direct_sampling():
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.interpolate(
        torch.rand(1, 3, 24, 24, generator=g), size=(96, 96), mode="bilinear"
    )
    # Upsample 2x around a rotated window: compare with bilinear sampling of the source at mapped centres.
    c, s = math.cos(0.3), math.sin(0.3)
    m = np.array([[2 * c, -2 * s, 0.0], [2 * s, 2 * c, 0.0], [0.0, 0.0, 1.0]])
    m[:2, 2] = 32.0 - m[:2, :2] @ np.array([48.0, 48.0])
    out = geo.warp_crop(img, m, 64, padding="zeros")
    assert out.shape == (1, 3, 64, 64)
    inv = np.linalg.inv(m)
    centres = np.arange(64) + 0.5
    xx, yy = np.meshgrid(centres, centres)
    src = geo.apply_matrix(inv, np.stack([xx, yy], -1))
    grid = torch.from_numpy(src / 96.0 * 2 - 1).float()[None]
    ref = torch.nn.functional.grid_sample(img, grid, mode="bicubic", align_corners=False)
    assert float((out - ref.clamp(0, 1)).abs().max()) < 1e-4


def test_warp_crop_antialiases_when_downscaling():
    # A one-pixel checkerboard reduced 8x must become flat grey, not moire.
    yy, xx = torch.meshgrid(torch.arange(512), torch.arange(512), indexing="ij")
    board = ((xx + yy) % 2).float().expand(1, 3, 512, 512).contiguous()
    m = np.diag([1 / 8, 1 / 8, 1.0])
    out = geo.warp_crop(board, m, 64)
    assert float(out.std()) < 0.02
    assert float(out.mean()) == pytest.approx(0.5, abs=0.02)


def test_outside_fraction():
    m = np.eye(3)
    assert geo.outside_fraction(m, 100, 100, 100) == 0.0
    m[0, 2] = 50.0  # crop x = photo x + 50: the left half of the crop is outside
    assert geo.outside_fraction(m, 100, 100, 100) == pytest.approx(0.5, abs=0.02)


def test_convex_polygon_mask_area_and_edges():
    pytest.importorskip("cv2", reason="the polygon fill needs OpenCV (the `faces` extra)")
    square = np.array([[10.0, 10.0], [40.0, 10.0], [40.0, 30.0], [10.0, 30.0]])
    m = geo.convex_polygon_mask(square, 64)
    assert m.shape == (1, 1, 64, 64)
    # cv2.fillPoly also fills sub-pixels whose centre is on an edge: at 4x supersampling the
    # filled area is at most a quarter pixel wider and taller; the ~100 border pixels are
    # rounded to uint8 (up to 1 / 510 each)
    assert 30 * 20 <= float(m.sum()) <= 30.25 * 20.25 + 100 / 510
    assert float(m[0, 0, 20, 25]) == 1.0 and float(m[0, 0, 5, 5]) == 0.0
    # Orientation does not matter.
    assert torch.equal(m, geo.convex_polygon_mask(square[::-1], 64))


def test_convex_hull():
    pytest.importorskip("cv2", reason="the polygon fill needs OpenCV (the `faces` extra)")
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(200, 2))
    hull = geo.convex_hull(pts)
    mask = geo.convex_polygon_mask((hull - pts.min(0)) * 20 + 5, 200, grow=1.0)
    inside = ((pts - pts.min(0)) * 20 + 5).astype(int)
    assert bool((mask[0, 0, inside[:, 1], inside[:, 0]] > 0.5).all())


def test_convex_hull_order_and_degenerate_inputs():
    square = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]])
    inner = np.array([[1.0, 1.0], [0.5, 1.5], [1.0, 0.0]])  # inside or on an edge
    hull = geo.convex_hull(np.concatenate([inner, square[::-1]]))
    assert len(hull) == 4 and {tuple(p) for p in hull} == {tuple(p) for p in square}
    x, y = hull[:, 0], hull[:, 1]
    assert float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)) > 0  # counter-clockwise, y up
    line = np.array([[0.0, 0.0], [3.0, 3.0], [1.0, 1.0], [2.0, 2.0]])
    np.testing.assert_array_equal(geo.convex_hull(line), [[0.0, 0.0], [3.0, 3.0]])
    np.testing.assert_array_equal(geo.convex_hull(np.array([[1.0, 2.0], [1.0, 2.0]])), [[1.0, 2.0]])


def test_padded_box_is_clipped_and_normalised():
    box = geo.padded_box(np.array([[10.0, 20.0], [50.0, 60.0]]), 0.1, 100)
    assert box == pytest.approx((0.0, 0.1, 0.6, 0.7))
