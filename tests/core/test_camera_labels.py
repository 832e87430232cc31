"""Camera label validation: usable EG3D cameras pass, each kind of broken label is named."""

from __future__ import annotations

import math

import pytest
import torch

import sym3d
from sym3d.camera import (
    FFHQ_FOCAL,
    check_camera_labels,
    first_bad_camera_label,
    label_entry_name,
    look_at,
    mirror_camera,
    sample_orbit_cameras,
)
from sym3d.errors import CameraLabelError
from sym3d.testing import TinyGenerator3D


def _good() -> torch.Tensor:
    return look_at(0.3, 0.1)


def _with(index: int, value: float) -> torch.Tensor:
    c = _good().clone()
    c[index] = value
    return c


def _problem(c: torch.Tensor) -> str:
    found = first_bad_camera_label(c)
    assert found is not None, "expected the label to be refused"
    return found[1]


def test_usable_cameras_pass():
    yaws = torch.linspace(-math.pi / 2, math.pi / 2, 13)
    grid = look_at(yaws[:, None], torch.linspace(-0.6, 0.6, 5)[None, :], roll=0.3)  # [13, 5, 25]
    assert first_bad_camera_label(grid) is None
    assert first_bad_camera_label(mirror_camera(grid)) is None
    assert first_bad_camera_label(sample_orbit_cameras(64, yaw_range=1.5, pitch_range=0.5)) is None
    assert first_bad_camera_label(look_at(0.0, 0.0, radius=1.2, focal=1.0)) is None  # other worlds
    check_camera_labels(_good().double())


def test_labels_rounded_to_three_decimals_pass():
    """Hand-written or rounded labels are fine: the orthonormality tolerance covers 3 decimals."""
    c = torch.round(look_at(0.37, -0.12, roll=0.05) * 1000) / 1000
    assert first_bad_camera_label(c) is None


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        (_with(3, math.inf), r"entry 3 \(cam2world\[0\]\[3\]\) is inf; expected a finite number"),
        (_with(20, math.nan), r"entry 20 \(intrinsics\[1\]\[1\]\) is nan"),
        (
            torch.cat([torch.zeros(16), _good()[16:]]),
            r"rotation cam2world\[:3, :3\] is all zero \(no pose\)",
        ),
        (
            torch.cat(
                [
                    (_good()[:16].reshape(4, 4) * torch.tensor([2.0, 2, 2, 1])).flatten(),
                    _good()[16:],
                ]
            ),
            r"not orthonormal: max \|R\^T R - I\| = 3",
        ),
        (_with(12, 0.5), r"last row of cam2world \(entries 12-15\) is \[0.5, 0, 0, 1\]"),
        (_with(11, 1e30), r"camera is 1e\+30 units from the world origin"),
        (_with(16, -FFHQ_FOCAL), r"focal length fx = -4.265 is outside \[0.05, 50\]"),
        (_with(20, 2985.29), r"fy = 2985 is outside \[0.05, 50\] \(it looks like pixels"),
        (_with(17, 0.5), r"skew intrinsics\[0\]\[1\] is 0.5; expected 0"),
        (_with(18, 350.0), r"principal point cx = 350 is outside the image \[0, 1\]"),
        (_with(24, 0.0), r"intrinsics' last two rows are"),
    ],
)
def test_each_broken_label_is_named(label, expected):
    with pytest.raises(CameraLabelError, match=expected):
        check_camera_labels(label, "camera")


def test_reflection_is_refused():
    c = _good().clone()
    m = c[:16].reshape(4, 4)
    m[:3, 0] *= -1  # flip the x axis: still orthonormal, determinant -1
    c[:16] = m.flatten()
    assert "determinant -1" in _problem(c)


def test_camera_looking_away_from_the_head_is_refused():
    c = _good().clone()
    m = c[:16].reshape(4, 4)
    m[:3, 0] *= -1
    m[:3, 2] *= -1  # turn around (a rotation of 180 degrees about the camera's y axis)
    c[:16] = m.flatten()
    assert "behind the camera" in _problem(c)


def test_camera_whose_axis_misses_the_head_is_refused():
    """Turn the camera 30 degrees sideways at its place: the head falls outside the image."""
    c = _good().clone()
    m = c[:16].reshape(4, 4)
    a = math.radians(30)
    turn = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    m[:3, :3] = m[:3, :3] @ turn
    c[:16] = m.flatten()
    assert "does not look at the head" in _problem(c)
    # A small turn keeps the head in view (a 5 degree aim error is a plausible label).
    small = _good().clone()
    m = small[:16].reshape(4, 4)
    a = math.radians(5)
    m[:3, :3] = m[:3, :3] @ torch.tensor(
        [[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]]
    )
    small[:16] = m.flatten()
    assert first_bad_camera_label(small) is None


def test_first_bad_label_of_a_batch_is_reported_by_index():
    batch = look_at(torch.linspace(-0.5, 0.5, 6), 0.0)
    batch[4, 0] = math.inf
    assert first_bad_camera_label(batch) == (
        4,
        "entry 0 (cam2world[0][0]) is inf; expected a finite number.",
    )
    with pytest.raises(CameraLabelError, match=r"^cams\[4\]: entry 0"):
        check_camera_labels(batch, "cams")


def test_entry_names():
    assert [label_entry_name(i) for i in (0, 7, 15, 16, 20, 24)] == [
        "cam2world[0][0]",
        "cam2world[1][3]",
        "cam2world[3][3]",
        "intrinsics[0][0]",
        "intrinsics[1][1]",
        "intrinsics[2][2]",
    ]


def test_invert_refuses_a_bad_tensor_camera_before_any_step():
    events = []
    bad = torch.cat([torch.zeros(16), _good()[16:]])
    with pytest.raises(CameraLabelError, match="^camera: the rotation"):
        sym3d.invert(
            torch.rand(1, 3, 32, 32), bad, generator=TinyGenerator3D(), callbacks=[events.append]
        )
    assert events == []
