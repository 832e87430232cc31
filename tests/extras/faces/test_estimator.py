"""The MediaPipe pose estimator on photos that ship in packages (offline).

Tolerances (stated once here, repeated in docs/faces.md):

* mirrored photo: yaw negated and roll negated within 2 degrees, pitch equal within 2 degrees;
* in-plane rotation by +/-10 degrees: the measured head roll changes by the rotation within
  2 degrees; the upright crop stays level (eye line within 1.5 degrees of horizontal); the
  label's yaw/pitch/roll stay within 2 degrees;
* the crop is EG3D's: the 5-point template fitted in the crop has its origin at the crop centre
  within 0.5 px and 219.43 px per template unit within 0.5%; the eyes are level within 3 px and
  centred within 4 px, their distance is the template's (136 px) times cos(yaw) within 5%.
"""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sym3d.camera import mirror_camera, yaw_pitch_roll
from sym3d.errors import (
    ConfigError,
    FaceNotFoundError,
    MissingDependencyError,
    QualityWarning,
    ShapeError,
)
from sym3d.protocols import FaceObservation, PoseEstimator
from sym3d_extras.faces import build_pose_estimator, observe_photo
from sym3d_extras.faces import estimator as estimator_module
from sym3d_extras.faces import geometry as geo
from tests.extras.faces.conftest import needs_faces, to_tensor

pytestmark = needs_faces

DEG = math.pi / 180.0


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QualityWarning)
        return fn(*args, **kwargs)


def _five_in_crop(obs: FaceObservation) -> np.ndarray:
    lm = obs.landmarks[0].numpy()
    return np.stack([lm[[33, 133]].mean(0), lm[[362, 263]].mean(0), lm[1], lm[61], lm[291]])


def _eye_angle(obs: FaceObservation) -> float:
    f = _five_in_crop(obs)
    d = f[1] - f[0]
    return math.degrees(math.atan2(d[1], d[0]))


def _rotate(img: torch.Tensor, degrees: float) -> torch.Tensor:
    from scipy import ndimage

    arr = img[0].permute(1, 2, 0).numpy()
    out = ndimage.rotate(arr, degrees, reshape=False, order=3, mode="reflect")
    return torch.from_numpy(np.clip(out, 0, 1)).permute(2, 0, 1)[None].float().contiguous()


# ---------------------------------------------------------------------------------------------
# The observation
# ---------------------------------------------------------------------------------------------


def test_satisfies_protocol_and_shapes(estimator, astronaut_analysis):
    assert isinstance(estimator, PoseEstimator)
    assert estimator.name == "mediapipe"
    obs = astronaut_analysis.observation
    assert isinstance(obs, FaceObservation)
    assert obs.image.shape == (1, 3, 512, 512) and obs.image.dtype == torch.float32
    assert 0.0 <= float(obs.image.min()) and float(obs.image.max()) <= 1.0
    assert obs.camera.shape == (1, 25)
    for m in (obs.face_mask, obs.foreground_mask):
        assert m.shape == (1, 1, 512, 512) and 0.0 <= float(m.min()) and float(m.max()) <= 1.0
    assert obs.landmarks.shape == (1, 478, 2) and obs.landmark_format == "mediapipe478"
    assert set(obs.regions) == {"left_eye", "right_eye", "mouth", "nose"}
    assert 0.5 < obs.confidence <= 1.0
    y, p, r = (float(v) for v in yaw_pitch_roll(obs.camera[0]))
    assert (y, p, r) == pytest.approx(
        (astronaut_analysis.yaw, astronaut_analysis.pitch, astronaut_analysis.roll), abs=1e-5
    )
    # A near-frontal portrait.
    assert abs(astronaut_analysis.yaw) < 10 * DEG and abs(astronaut_analysis.roll) < 3 * DEG
    assert astronaut_analysis.num_faces == 1


def test_call_returns_the_observation_and_reuses_models(estimator, astronaut):
    models = estimator._ensure_models()
    obs = _quiet(estimator, astronaut)
    assert isinstance(obs, FaceObservation)
    assert estimator._ensure_models() is models  # built once per estimator


def test_small_face_warns_and_notes(estimator, astronaut):
    # The astronaut's face is 37 px from eyes to mouth: usable, but the crop is upsampled 3.3x.
    with pytest.warns(
        QualityWarning, match=r"the face is small \(37 px between the eyes and the mouth"
    ):
        obs = estimator(astronaut)
    assert any("upsampled 3.3x" in n for n in obs.notes)


# ---------------------------------------------------------------------------------------------
# Camera
# ---------------------------------------------------------------------------------------------


def test_mirrored_photo_negates_yaw_and_roll(estimator, astronaut, astronaut_analysis):
    a = astronaut_analysis
    b = _quiet(estimator.analyze, astronaut.flip(-1))
    assert abs(b.yaw + a.yaw) < 2 * DEG
    assert abs(b.pitch - a.pitch) < 2 * DEG
    assert abs(b.roll + a.roll) < 2 * DEG
    assert abs(b.head_roll + a.head_roll) < 2 * DEG
    np.testing.assert_allclose(
        b.observation.camera.numpy(), mirror_camera(a.observation.camera).numpy(), atol=0.1
    )


@pytest.mark.parametrize("degrees", [-10.0, 10.0])
def test_in_plane_rotation_is_measured_and_removed(
    estimator, astronaut, astronaut_analysis, degrees
):
    a = astronaut_analysis
    b = _quiet(estimator.analyze, _rotate(astronaut, degrees))
    # scipy's positive angle turns the picture counter-clockwise on screen: a camera roll of +angle.
    assert abs((b.head_roll - a.head_roll) - degrees * DEG) < 2 * DEG
    assert abs((b.crop_angle - a.crop_angle) + degrees * DEG) < 2 * DEG
    # The upright crop is level and the label is unchanged.
    assert abs(_eye_angle(b.observation)) < 1.5
    assert abs(b.roll - a.roll) < 2 * DEG
    assert abs(b.yaw - a.yaw) < 2 * DEG and abs(b.pitch - a.pitch) < 2 * DEG


def test_eg3d_alignment_keeps_roll_in_the_label(astronaut):
    est = build_pose_estimator(align="eg3d")
    a = _quiet(est.analyze, astronaut)
    b = _quiet(est.analyze, _rotate(astronaut, 10.0))
    assert a.crop_angle == 0.0 and b.crop_angle == 0.0
    assert b.roll == pytest.approx(b.head_roll, abs=1e-6)
    assert abs((b.roll - a.roll) - 10 * DEG) < 2 * DEG
    # Not levelled: the eye line keeps the photo's tilt.
    d = b.five_points[1] - b.five_points[0]
    assert _eye_angle(b.observation) == pytest.approx(math.degrees(math.atan2(d[1], d[0])), abs=0.1)
    assert abs(_eye_angle(b.observation)) > 5.0
    est.close()


# ---------------------------------------------------------------------------------------------
# Crop
# ---------------------------------------------------------------------------------------------


def test_crop_is_an_eg3d_crop(astronaut_analysis):
    a = astronaut_analysis
    five = _five_in_crop(a.observation)
    t, s, _ = geo.pos_fit(five)
    np.testing.assert_allclose(t, [256.0, 256.0], atol=0.5)  # template origin at the centre
    assert s == pytest.approx(geo.template_scale(512), rel=0.005)  # 300/700 * 512 px per unit
    assert abs(five[0, 1] - five[1, 1]) < 3.0  # eyes level
    assert abs((five[0, 0] + five[1, 0]) / 2 - 256.0) < 4.0  # centred
    eye_dist = 2 * 0.3106 * geo.template_scale(512) * math.cos(a.yaw)
    assert np.linalg.norm(five[1] - five[0]) == pytest.approx(eye_dist, rel=0.05)
    # Rows: eyes in the upper half, mouth in the lower half, as in EG3D's FFHQ crops.
    assert five[:2, 1].max() < 256 < five[3:, 1].min()
    # The 5 points agree with the fitted template to within a few pixels (pose-dependent shape).
    assert float(np.sqrt(((geo.project_template(five) - five) ** 2).sum(1).mean())) < 10.0


def test_crop_pixels_are_the_photo_resampled(astronaut, astronaut_analysis):
    a = astronaut_analysis
    inv = a.inverse_crop_matrix
    ys, xs = np.meshgrid(np.arange(96, 416, 16) + 0.5, np.arange(96, 416, 16) + 0.5, indexing="ij")
    src = geo.apply_matrix(inv, np.stack([xs, ys], -1))
    grid = torch.from_numpy(src / 512.0 * 2 - 1).float()[None]
    ref = F.grid_sample(astronaut, grid, mode="bilinear", align_corners=False)
    crop = a.observation.image[:, :, ys.astype(int)[:, 0]][:, :, :, xs.astype(int)[0]]
    assert float((crop - ref).abs().mean()) < 0.02
    # Round trip of the stored transform.
    pts = a.five_points
    np.testing.assert_allclose(a.to_photo(a.to_crop(pts)), pts, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Masks and regions
# ---------------------------------------------------------------------------------------------


def test_regions_are_ordered_like_the_face(estimator, astronaut, astronaut_analysis):
    for obs in (astronaut_analysis.observation, _quiet(estimator, astronaut.flip(-1))):
        r = obs.regions
        for name, (x0, y0, x1, y1) in r.items():
            assert 0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0, name
        # Eyes above the mouth; the nose between them.
        assert max(r["left_eye"][3], r["right_eye"][3]) < r["mouth"][1]
        assert r["right_eye"][1] < r["nose"][3] < r["mouth"][3]
        # The subject's left eye is on the image's right in a photo of a facing person.
        cx = {k: (v[0] + v[2]) / 2 for k, v in r.items()}
        assert cx["right_eye"] < cx["nose"] < cx["left_eye"]
        # Each box holds its landmarks (left eye corner 263, right eye 33, mouth corners 61/291).
        lm = obs.landmarks[0].numpy() / 512.0
        for name, idx in (("left_eye", 263), ("right_eye", 33), ("mouth", 61), ("mouth", 291)):
            x0, y0, x1, y1 = r[name]
            assert x0 <= lm[idx, 0] <= x1 and y0 <= lm[idx, 1] <= y1, name
    # SPI's padding: 15 px (eyes) and 8 px (mouth) at 256 px.
    lm = astronaut_analysis.observation.landmarks[0].numpy()
    mouth_top = lm[[0, 37, 267, 61, 291]][:, 1].min()
    assert astronaut_analysis.observation.regions["mouth"][1] == pytest.approx(
        mouth_top / 512 - 8 / 256, abs=0.01
    )


def test_face_mask_covers_the_landmarks_and_not_the_hair(astronaut_analysis):
    obs = astronaut_analysis.observation
    lm = obs.landmarks[0].numpy()
    face = obs.face_mask[0, 0]
    idx = np.clip(lm.astype(int), 0, 511)
    assert bool((face[idx[:468, 1], idx[:468, 0]] > 0.5).all())
    hull = geo.convex_polygon_mask(lm[:468], 512)[0, 0]
    assert float(torch.minimum(face, hull).sum() / hull.sum()) > 0.97
    assert float(face[:40].max()) == 0.0  # hair band at the top of the crop
    fg = obs.foreground_mask[0, 0]
    assert bool((fg >= face - 1e-6).all())  # foreground contains the face
    assert float(fg[20:60, 236:276].mean()) > 0.9  # hair above the forehead is foreground
    assert float(fg[:30, :30].mean()) < 0.1  # the backdrop (top-left corner) is not


def test_hull_foreground_option(astronaut):
    est = build_pose_estimator(foreground="hull")
    obs = _quiet(est, astronaut)
    assert bool((obs.foreground_mask >= obs.face_mask - 1e-6).all())
    assert float(obs.foreground_mask[0, 0, 60, 256]) == 1.0  # above the mesh: hair
    est.close()


# ---------------------------------------------------------------------------------------------
# Bad and awkward inputs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["coffee", "noise"])
def test_no_face_raises_a_helpful_error(estimator, which):
    from skimage import data

    img = (
        to_tensor(data.coffee())
        if which == "coffee"
        else torch.rand(1, 3, 300, 400, generator=torch.Generator().manual_seed(0))
    )
    with pytest.raises(FaceNotFoundError) as info:
        estimator(img)
    msg = str(info.value)
    assert msg.startswith(
        "no face found in the 600x400 image."
        if which == "coffee"
        else "no face found in the 400x300 image."
    )
    assert "Hint: use a photo with one clearly visible face" in msg


def test_no_face_error_names_the_file(tmp_path):
    from PIL import Image
    from skimage import data

    path = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).save(path)
    with pytest.raises(
        FaceNotFoundError, match=r"coffee\.png: no face found in the 600x400 image\."
    ):
        observe_photo(path)


@pytest.mark.parametrize("big_on_left", [True, False])
def test_several_faces_the_largest_wins(estimator, astronaut, big_on_left):
    small = F.interpolate(astronaut, scale_factor=0.6, mode="bilinear", antialias=True)
    canvas = torch.ones(1, 3, 512, 512 + small.shape[-1])
    if big_on_left:
        canvas[..., :512] = astronaut
        canvas[..., 100 : 100 + small.shape[-2], 512:] = small
    else:
        canvas[..., :, small.shape[-1] :] = astronaut
        canvas[..., 100 : 100 + small.shape[-2], : small.shape[-1]] = small
    a = _quiet(estimator.analyze, canvas)
    assert a.num_faces == 2
    x0, _, x1, _ = a.face_box
    assert x1 - x0 > 90  # the full-size face (~105 px box), not the 0.6x copy (~63 px)
    assert (x0 < 512) if big_on_left else (x0 > small.shape[-1])
    assert a.observation.notes[0].startswith("2 faces found; used the largest (")
    ref = _quiet(estimator.analyze, astronaut)
    assert abs(a.yaw - ref.yaw) < 2 * DEG


def test_detected_face_without_landmarks_is_explained(astronaut, monkeypatch):
    est = build_pose_estimator()
    monkeypatch.setattr(est, "_mesh_once", lambda patch, models: None)
    with pytest.raises(
        FaceNotFoundError,
        match=r"^a face was detected in the 512x512 image \(largest box \d+x\d+ px at x=\d+, y=\d+\) but facial "
        r"landmarks could not be fitted to it\. Hint: the face may be heavily occluded",
    ):
        est(astronaut)
    est.close()


def test_side_view_and_yaw_warning():
    from skimage import data

    cameraman = to_tensor(data.camera())  # looks toward the image's right: his right cheek faces us
    est = build_pose_estimator(max_yaw_degrees=30, warn_face_size=0)
    with pytest.warns(
        QualityWarning,
        match=r"the head is turned \d+ degrees \(yaw\); landmarks and the estimated pose",
    ):
        a = est.analyze(cameraman)
    assert -65 * DEG < a.yaw < -35 * DEG
    assert any("turned" in n for n in a.observation.notes)
    est.close()


def test_face_cut_by_the_border_warns(astronaut):
    est = build_pose_estimator(warn_face_size=0)
    with pytest.warns(
        QualityWarning,
        match=r"the face is cut by the photo's border \(\d+% of the landmarks lie outside it\)",
    ):
        obs = est(astronaut[..., 225:])  # the photo ends in the middle of the face
    assert any("extends beyond the photo" in n for n in obs.notes)
    est.close()


def test_tiny_face_is_refused(estimator):
    from skimage import data

    face = torch.from_numpy(data.lfw_subset()[0]).float()[None, None]  # 25x25 grayscale LFW crop
    with pytest.raises(
        FaceNotFoundError,
        match=r"^the face is too small: \d+ px between the eyes and the mouth \(minimum 20 px\)",
    ):
        estimator(face)


def test_tiny_face_can_be_forced(astronaut):
    est = build_pose_estimator(min_face_size=0)
    small = F.interpolate(astronaut, size=(160, 160), mode="bilinear", antialias=True)
    with pytest.warns(QualityWarning, match="the face is small"):
        obs = est(small)
    assert obs.image.shape == (1, 3, 512, 512)
    est.close()


def test_grayscale_and_rgba_tensors(estimator, astronaut, astronaut_analysis):
    gray = astronaut.mean(1, keepdim=True)
    a = _quiet(estimator.analyze, gray)
    assert abs(a.yaw - astronaut_analysis.yaw) < 3 * DEG
    assert a.observation.image.shape == (1, 3, 512, 512)
    rgba = torch.cat([astronaut, torch.ones(1, 1, 512, 512)], 1)
    b = _quiet(estimator.analyze, rgba)
    assert b.yaw == pytest.approx(astronaut_analysis.yaw, abs=1e-6)


def test_grayscale_and_rgba_files(tmp_path, astronaut_analysis):
    from PIL import Image
    from skimage import data

    arr = data.astronaut()
    Image.fromarray(arr).convert("L").save(tmp_path / "gray.png")
    alpha = np.full(arr.shape[:2], 255, np.uint8)
    alpha[:, :60] = 0  # transparent strip: composited on white
    Image.fromarray(np.dstack([arr, alpha])).save(tmp_path / "rgba.png")
    for name in ("gray.png", "rgba.png"):
        obs = _quiet(observe_photo, tmp_path / name)
        y, _, _ = yaw_pitch_roll(obs.camera[0])
        assert abs(float(y) - astronaut_analysis.yaw) < 3 * DEG, name


def test_huge_image_is_fast_and_consistent(estimator, astronaut, astronaut_analysis, monkeypatch):
    """Fast: no model sees the 36 MP photo (every model input is at most ``detect_max_side``)."""
    huge = F.interpolate(astronaut, size=(6000, 6000), mode="bilinear", align_corners=False)
    to_model = estimator_module._to_uint8  # every array handed to a MediaPipe model passes here
    seen: list[tuple[int, ...]] = []

    def spy(x):
        arr = to_model(x)
        seen.append(arr.shape)
        return arr

    monkeypatch.setattr(estimator_module, "_to_uint8", spy)
    a = _quiet(estimator.analyze, huge)
    assert seen and max(max(shape[:2]) for shape in seen) <= estimator.detect_max_side, seen
    assert (
        abs(a.yaw - astronaut_analysis.yaw) < 2 * DEG
        and abs(a.pitch - astronaut_analysis.pitch) < 2 * DEG
    )
    assert a.face_size == pytest.approx(astronaut_analysis.face_size * 6000 / 512, rel=0.05)
    assert a.upsampling < 1.0  # downscaled from the full-resolution photo
    assert not any("small" in n for n in a.observation.notes)


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (torch.zeros(2, 3, 64, 64), ShapeError),
        (torch.zeros(1, 2, 64, 64), ShapeError),
        (torch.full((1, 3, 64, 64), 2.0), "RangeError"),
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), "UserInputError"),
    ],
)
def test_bad_tensors_raise_typed_errors(estimator, bad, error):
    import sym3d.errors as E

    cls = getattr(E, error) if isinstance(error, str) else error
    with pytest.raises(cls):
        estimator(bad)


def test_bad_options_raise_config_error():
    with pytest.raises(ConfigError, match="align: expected 'upright' or 'eg3d'"):
        build_pose_estimator(align="ffhq")


def test_observe_photo_shares_one_estimator(astronaut):
    from sym3d_extras.faces import _shared_estimator

    assert _shared_estimator({}) is _shared_estimator({})
    assert _shared_estimator({"align": "eg3d"}) is not _shared_estimator({})
    obs = _quiet(observe_photo, astronaut)
    assert obs.image.shape == (1, 3, 512, 512)


def test_missing_mediapipe_is_reported(monkeypatch, astronaut):
    est = build_pose_estimator()
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'sym3d\[faces\]'"):
        est(astronaut)


def test_import_is_light():
    code = (
        "import sys, sym3d_extras.faces as f; f.build_pose_estimator; "
        "print(sorted(m for m in ('mediapipe', 'cv2', 'dlib', 'skimage') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# 3D ground truth: SymHeads renders at known cameras
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_pose_tracks_known_cameras_on_synthetic_heads():
    """SymHeads heads (cartoon-like, but MediaPipe fits them) rendered at known yaw/pitch (~15 s)."""
    from sym3d.camera import look_at
    from sym3d_extras.synthetic import SymHeadsScene

    scene = SymHeadsScene(seed=3)
    cams = look_at(torch.tensor([-0.5, 0.0, 0.5]), torch.tensor([0.0, 0.25, 0.0]))
    images = scene.render(cams, resolution=128).image
    est = build_pose_estimator(min_face_size=0, warn_face_size=0)
    left, up, right = (est.analyze(images[i : i + 1]) for i in range(3))
    est.close()
    # Signs and rough scale of yaw (true +/-28.6 degrees), and the pitch difference (true 14.3 degrees).
    assert left.yaw < -15 * DEG and right.yaw > 15 * DEG
    assert abs(up.yaw) < 5 * DEG
    assert up.pitch - (left.pitch + right.pitch) / 2 > 8 * DEG
