"""Camera math for the EG3D 25-number camera label.

Conventions (see ``docs/conventions.md``):

* A camera label ``c`` is a float tensor ``[..., 25]``: the row-major 4x4 **cam2world** matrix in
  **OpenCV** axes (camera x right, y down, z forward along the viewing direction), followed by the
  row-major 3x3 intrinsics **normalised by image size** (``fx, fy`` in image widths/heights,
  principal point ``cx = cy = 0.5`` for centred crops). :class:`CameraLabels` is the only code
  that slices ``c``.
* World frame (EG3D FFHQ): +y up, the face looks toward +z, the head sits in the unit box around
  the origin. The canonical FFHQ camera sits 2.7 units from the world origin looking at
  ``(0, 0, 0.2)`` with ``fx = fy = 4.2647``.
* Angles are radians. ``yaw`` and ``pitch`` describe the direction from the look-at pivot to the
  camera: ``yaw > 0`` moves the camera toward world +x (the subject's left; the subject's left
  cheek faces the camera), ``pitch > 0`` moves it up (looking down at the face). ``roll`` turns the
  camera about its viewing axis from its x axis toward its y axis. EG3D's
  ``LookAtPoseSampler(h, v)`` corresponds to ``yaw = h - pi/2`` and
  ``pitch = pi/2 - arccos(1 - 2 v / pi)`` (see :func:`eg3d_sampler_angles`).
* Mirror: the image is flipped along its width; the camera becomes ``S M S`` with
  ``S = diag(-1, 1, 1, 1)`` and the principal point ``cx -> 1 - cx`` (skew negated). Mirroring
  twice is the identity.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import attrs
import torch

from sym3d.checks import check_shape
from sym3d.errors import CameraLabelError

__all__ = [
    "CameraLabels",
    "check_camera_labels",
    "first_bad_camera_label",
    "label_entry_name",
    "FFHQ_FOCAL",
    "FFHQ_RADIUS",
    "FFHQ_PIVOT",
    "intrinsics_from_focal",
    "fov_to_focal",
    "focal_to_fov",
    "look_at",
    "yaw_pitch_roll",
    "mirror_camera",
    "mirror_weight",
    "sample_cameras_around",
    "rotate_camera",
    "sample_orbit_cameras",
    "eg3d_sampler_angles",
    "pixel_centers",
    "camera_ray_directions",
    "ray_distance_to_z",
    "z_to_ray_distance",
    "project_points",
    "unproject_depth",
]

FFHQ_FOCAL: float = 4.2647
"""Normalised focal length of EG3D's FFHQ labels (2985.29 / 700)."""
FFHQ_RADIUS: float = 2.7
"""Distance of the FFHQ cameras from the world origin."""
FFHQ_PIVOT: tuple[float, float, float] = (0.0, 0.0, 0.2)
"""Point the FFHQ cameras look at."""

_MIRROR = torch.tensor([-1.0, 1.0, 1.0, 1.0])

ROTATION_TOLERANCE: float = 1e-2
"""Largest accepted ``max |R^T R - I|`` of a label's rotation: labels rounded to 3 decimals pass,
a scaled, sheared or degenerate (all-zero) rotation fails."""
MAX_CAMERA_DISTANCE: float = 100.0
"""Largest accepted distance of a camera from the world origin (EG3D FFHQ: 2.7 units)."""
FOCAL_RANGE: tuple[float, float] = (0.05, 50.0)
"""Accepted normalised focal lengths: fields of view from about 1 to 168 degrees. A focal in pixels
(EG3D FFHQ: 2985) is out of range: normalised intrinsics divide by the image size."""


@attrs.frozen
class CameraLabels:
    """Typed view of an EG3D camera label tensor ``[..., 25]``.

    Example:
        >>> c = look_at(0.3, 0.1)
        >>> CameraLabels(c).cam2world.shape, CameraLabels(c).intrinsics[..., 0, 0]
        (torch.Size([4, 4]), tensor(4.2647))
    """

    data: torch.Tensor = attrs.field()

    @data.validator
    def _check(self, _attr: attrs.Attribute, value: torch.Tensor) -> None:
        check_shape(value, ["*", 25], "camera label")

    @classmethod
    def from_parts(cls, cam2world: torch.Tensor, intrinsics: torch.Tensor) -> CameraLabels:
        """Build from ``cam2world [..., 4, 4]`` and normalised ``intrinsics [..., 3, 3]``."""
        check_shape(cam2world, ["*", 4, 4], "cam2world")
        check_shape(intrinsics, ["*", 3, 3], "intrinsics")
        batch = torch.broadcast_shapes(cam2world.shape[:-2], intrinsics.shape[:-2])
        flat = torch.cat(
            [
                cam2world.expand(*batch, 4, 4).reshape(*batch, 16),
                intrinsics.expand(*batch, 3, 3).reshape(*batch, 9),
            ],
            dim=-1,
        )
        return cls(flat)

    @property
    def cam2world(self) -> torch.Tensor:
        """Cam2world matrices ``[..., 4, 4]`` (OpenCV axes)."""
        return self.data[..., :16].unflatten(-1, (4, 4))

    @property
    def intrinsics(self) -> torch.Tensor:
        """Normalised intrinsics ``[..., 3, 3]``."""
        return self.data[..., 16:].unflatten(-1, (3, 3))

    @property
    def rotation(self) -> torch.Tensor:
        """Camera-to-world rotation ``[..., 3, 3]``; its columns are the camera x, y, z axes."""
        return self.cam2world[..., :3, :3]

    @property
    def position(self) -> torch.Tensor:
        """Camera centre in world coordinates ``[..., 3]``."""
        return self.cam2world[..., :3, 3]

    @property
    def forward(self) -> torch.Tensor:
        """Unit viewing direction (camera +z) in world coordinates ``[..., 3]``."""
        return self.rotation[..., :, 2]

    def pack(self) -> torch.Tensor:
        """Return the ``[..., 25]`` tensor."""
        return self.data


def label_entry_name(index: int) -> str:
    """Human name of entry ``index`` (0..24) of a camera label, e.g. ``"cam2world[0][3]"``."""
    if not 0 <= index < 25:
        raise ValueError(f"index: expected 0..24, got {index}.")
    if index < 16:
        return f"cam2world[{index // 4}][{index % 4}]"
    return f"intrinsics[{(index - 16) // 3}][{(index - 16) % 3}]"


def _fmt(values: torch.Tensor) -> str:
    return "[" + ", ".join(f"{float(v):.4g}" for v in values.reshape(-1)) + "]"


def _label_checks(raw: torch.Tensor) -> list[tuple[torch.Tensor, Callable[[int], str]]]:
    """The checks of :func:`first_bad_camera_label` on ``raw [N, 25]`` float64, in order.

    Each is ``(bad [N] bool, describe(i) -> sentence)``; ``describe(i)`` is only called for the
    first check that flags label ``i``, so it may assume the earlier checks passed.
    """
    n = raw.shape[0]
    finite = torch.isfinite(raw)
    c = torch.where(finite, raw, torch.zeros_like(raw))  # non-finite: only the first check fails
    m, k = c[:, :16].reshape(n, 4, 4), c[:, 16:].reshape(n, 3, 3)
    rot, pos = m[:, :3, :3], m[:, :3, 3]
    eye = torch.eye(3, dtype=c.dtype)
    ortho_err = (rot.transpose(-1, -2) @ rot - eye).abs().amax(dim=(-1, -2))
    last_row = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=c.dtype)
    dist = pos.norm(dim=-1)
    fx, fy, skew, cx, cy = k[:, 0, 0], k[:, 1, 1], k[:, 0, 1], k[:, 0, 2], k[:, 1, 2]
    lo, hi = FOCAL_RANGE
    rest = torch.stack([k[:, 1, 0], k[:, 2, 0], k[:, 2, 1], k[:, 2, 2] - 1.0], -1).abs().amax(-1)
    depth = -(pos * rot[:, :, 2]).sum(-1)  # depth of the world origin along the optical axis
    uv, _ = project_points(torch.zeros(n, 1, 3, dtype=c.dtype), c)
    uv = uv[:, 0]

    def non_finite(i: int) -> str:
        j = int((~finite[i]).nonzero()[0])
        return f"entry {j} ({label_entry_name(j)}) is {float(raw[i, j])}; expected a finite number."

    def bad_last_row(i: int) -> str:
        row = _fmt(m[i, 3])
        return f"the last row of cam2world (entries 12-15) is {row}; expected [0, 0, 0, 1]."

    def bad_rotation(i: int) -> str:
        what = "all zero (no pose)" if float(rot[i].abs().max()) == 0.0 else "not orthonormal"
        return (
            f"the rotation cam2world[:3, :3] is {what}: max |R^T R - I| = "
            f"{float(ortho_err[i]):.3g}, expected at most {ROTATION_TOLERANCE:g}."
        )

    def bad_focal(i: int) -> str:
        name, f = ("fx", float(fx[i])) if not lo <= float(fx[i]) <= hi else ("fy", float(fy[i]))
        pixels = " (it looks like pixels: divide by the image size)" if f > hi else ""
        return (
            f"the normalised focal length {name} = {f:.4g} is outside [{lo:g}, {hi:g}]{pixels}; "
            f"EG3D FFHQ uses {FFHQ_FOCAL}."
        )

    def bad_principal(i: int) -> str:
        name, v = ("cx", float(cx[i])) if not 0.0 <= float(cx[i]) <= 1.0 else ("cy", float(cy[i]))
        return (
            f"the principal point {name} = {v:.4g} is outside the image [0, 1]; "
            "expected 0.5 for a centred crop."
        )

    def far(i: int) -> str:
        return (
            f"the camera is {float(dist[i]):.4g} units from the world origin (cam2world[:3][3] = "
            f"{_fmt(pos[i])}); expected at most {MAX_CAMERA_DISTANCE:g} (EG3D FFHQ: {FFHQ_RADIUS})."
        )

    def off_image(i: int) -> str:
        u, v = float(uv[i, 0]), float(uv[i, 1])
        return (
            f"the camera does not look at the head: the world origin appears at ({u:.3g}, {v:.3g}) "
            "in normalised image coordinates, outside [0, 1]."
        )

    reflection = "the rotation cam2world[:3, :3] has determinant -1 (a reflection); expected +1."
    behind = "the head (the world origin) is behind the camera; the camera must look at the head."
    det = (rot[:, :, 0] * torch.linalg.cross(rot[:, :, 1], rot[:, :, 2], dim=-1)).sum(-1)
    return [
        (~finite.all(-1), non_finite),
        (ortho_err > ROTATION_TOLERANCE, bad_rotation),
        (det < 0, lambda i: reflection),
        ((m[:, 3] - last_row).abs().amax(-1) > 1e-3, bad_last_row),
        (dist > MAX_CAMERA_DISTANCE, far),
        ((fx < lo) | (fx > hi) | (fy < lo) | (fy > hi), bad_focal),
        (
            skew.abs() > 0.01 * fx,
            lambda i: (
                f"the skew intrinsics[0][1] is {float(skew[i]):.4g}; expected 0 (at most 1% of fx)."
            ),
        ),
        ((cx < 0) | (cx > 1) | (cy < 0) | (cy > 1), bad_principal),
        (
            rest > 1e-3,
            lambda i: (
                f"the intrinsics' last two rows are {_fmt(k[i, 1:])}; expected [0, fy, cy] "
                "and [0, 0, 1]."
            ),
        ),
        (depth <= 0, lambda i: behind),
        (((uv < 0) | (uv > 1)).any(-1), off_image),
    ]


def first_bad_camera_label(cameras: torch.Tensor) -> tuple[int, str] | None:
    """Find the first camera label of ``cameras [..., 25]`` that is not a usable EG3D camera.

    Checked, in this order: every entry finite; the rotation is orthonormal within
    :data:`ROTATION_TOLERANCE`, with determinant +1; the last row of cam2world is ``0 0 0 1``;
    the camera is at most :data:`MAX_CAMERA_DISTANCE` from the world origin; the intrinsics are a
    normalised pinhole matrix (``fx, fy`` in :data:`FOCAL_RANGE`, skew at most 1% of ``fx``,
    principal point inside the image, last rows ``[0 fy cy]`` and ``[0 0 1]``); the head (the
    world origin) lies in front of the camera and projects inside the image. Vectorised over the
    labels.

    Args:
        cameras: ``[..., 25]`` labels, any float dtype (checked in float64 on the CPU).

    Returns:
        ``None`` when all are usable, else ``(index, problem)``: the index into the flattened
        leading dimensions and one sentence naming the entry or part and what was expected.
    """
    check_shape(cameras, ["*", 25], "camera labels")
    raw = cameras.detach().to("cpu", torch.float64).reshape(-1, 25)
    if raw.shape[0] == 0:
        return None
    checks = _label_checks(raw)
    bad_any = torch.stack([bad for bad, _ in checks]).any(0)
    if not bool(bad_any.any()):
        return None
    i = int(bad_any.nonzero()[0])
    describe = next(d for bad, d in checks if bool(bad[i]))
    return i, describe(i)


def check_camera_labels(cameras: torch.Tensor, name: str = "camera") -> None:
    """Raise :class:`~sym3d.errors.CameraLabelError` unless all of ``cameras [..., 25]`` are usable.

    See :func:`first_bad_camera_label` for what is checked. The message names ``name`` (with the
    flattened index of the bad label when there are several) and the problem.
    """
    found = first_bad_camera_label(cameras)
    if found is None:
        return
    i, problem = found
    where = name if cameras.reshape(-1, 25).shape[0] == 1 else f"{name}[{i}]"
    raise CameraLabelError(f"{where}: {problem}", hint=CAMERA_LABEL_HINT)


CAMERA_LABEL_HINT = (
    "a camera label is EG3D's 25 numbers: the row-major 4x4 cam2world (OpenCV axes) and the "
    "normalised 3x3 intrinsics; see docs/conventions.md."
)


def intrinsics_from_focal(
    focal: float | torch.Tensor,
    cx: float = 0.5,
    cy: float = 0.5,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Normalised intrinsics ``[..., 3, 3]`` with ``fx = fy = focal`` and no skew."""
    f = torch.as_tensor(focal, dtype=dtype, device=device)
    k = torch.zeros(*f.shape, 3, 3, dtype=dtype, device=f.device)
    k[..., 0, 0] = f
    k[..., 1, 1] = f
    k[..., 0, 2] = cx
    k[..., 1, 2] = cy
    k[..., 2, 2] = 1.0
    return k


def fov_to_focal(fov_degrees: float) -> float:
    """Normalised focal length for a horizontal field of view in degrees: ``0.5 / tan(fov / 2)``.

    EG3D's own ``FOV_to_intrinsics`` uses ``1 / (1.414 * tan(fov / 2))`` instead, so its
    "18.837 degrees" means focal 4.26338; the FFHQ labels' focal 4.2647 is a horizontal FOV of
    about 13.37 degrees in this (geometric) definition.
    """
    if not 0.0 < fov_degrees < 180.0:
        raise ValueError(f"fov_degrees: expected a value in (0, 180), got {fov_degrees}.")
    return 0.5 / math.tan(math.radians(fov_degrees) / 2.0)


def focal_to_fov(focal: float) -> float:
    """Horizontal field of view in degrees for a normalised focal length (inverse of :func:`fov_to_focal`)."""
    if focal <= 0:
        raise ValueError(f"focal: expected a positive value, got {focal}.")
    return math.degrees(2.0 * math.atan(0.5 / focal))


def _direction(yaw: torch.Tensor, pitch: torch.Tensor) -> torch.Tensor:
    """Unit vector from the pivot toward a camera at ``(yaw, pitch)``: ``[..., 3]``."""
    cp = torch.cos(pitch)
    return torch.stack([torch.sin(yaw) * cp, torch.sin(pitch), torch.cos(yaw) * cp], dim=-1)


def _look_rotation(forward: torch.Tensor, roll: torch.Tensor | None = None) -> torch.Tensor:
    """OpenCV cam2world rotation ``[..., 3, 3]`` for a unit forward vector, world +y up."""
    up = torch.zeros_like(forward)
    up[..., 1] = 1.0
    right = torch.linalg.cross(forward, up, dim=-1)
    norm = right.norm(dim=-1, keepdim=True)
    # Looking straight up/down: any horizontal right vector works; pick world +x.
    fallback = torch.zeros_like(right)
    fallback[..., 0] = 1.0
    right = torch.where(norm > 1e-8, right / norm.clamp_min(1e-12), fallback)
    down = torch.linalg.cross(forward, right, dim=-1)
    if roll is not None:
        cr, sr = torch.cos(roll)[..., None], torch.sin(roll)[..., None]
        right, down = cr * right + sr * down, -sr * right + cr * down
    return torch.stack([right, down, forward], dim=-1)


def look_at(
    yaw: float | torch.Tensor,
    pitch: float | torch.Tensor = 0.0,
    *,
    radius: float = FFHQ_RADIUS,
    pivot: Sequence[float] = FFHQ_PIVOT,
    orbit_center: Sequence[float] | None = (0.0, 0.0, 0.0),
    roll: float | torch.Tensor = 0.0,
    focal: float = FFHQ_FOCAL,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Camera labels ``[..., 25]`` for cameras on a sphere looking at ``pivot``.

    The camera sits at ``orbit_center + radius * dir(yaw, pitch)`` and looks at ``pivot``.
    The default (orbit around the world origin, look at ``(0, 0, 0.2)``) matches EG3D's
    ``LookAtPoseSampler``. With ``orbit_center=None`` the camera orbits the pivot itself, and
    :func:`yaw_pitch_roll` then returns exactly ``(yaw, pitch, roll)``.

    Args:
        yaw: radians, scalar or tensor; positive toward world +x.
        pitch: radians; positive above the pivot (looking down).
        radius: distance from ``orbit_center`` (world units).
        pivot: the look-at point.
        orbit_center: centre of the camera sphere; ``None`` means the pivot.
        roll: rotation about the viewing axis (radians).
        focal: normalised focal length (``fx = fy``), principal point at the centre.

    Returns:
        ``[*broadcast(yaw, pitch, roll), 25]`` camera labels.
    """
    yaw_t = torch.as_tensor(yaw, dtype=dtype, device=device)
    pitch_t = torch.as_tensor(pitch, dtype=dtype, device=yaw_t.device)
    roll_t = torch.as_tensor(roll, dtype=dtype, device=yaw_t.device)
    yaw_t, pitch_t, roll_t = torch.broadcast_tensors(yaw_t, pitch_t, roll_t)
    piv = torch.as_tensor(pivot, dtype=dtype, device=yaw_t.device)
    center = (
        piv
        if orbit_center is None
        else torch.as_tensor(orbit_center, dtype=dtype, device=yaw_t.device)
    )
    position = center + radius * _direction(yaw_t, pitch_t)
    forward = torch.nn.functional.normalize(piv - position, dim=-1)
    rot = _look_rotation(forward, roll_t)
    cam2world = torch.zeros(*yaw_t.shape, 4, 4, dtype=dtype, device=yaw_t.device)
    cam2world[..., :3, :3] = rot
    cam2world[..., :3, 3] = position
    cam2world[..., 3, 3] = 1.0
    k = intrinsics_from_focal(focal, device=yaw_t.device, dtype=dtype)
    return CameraLabels.from_parts(cam2world, k).pack()


def yaw_pitch_roll(cameras: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Orientation angles of cameras ``[..., 25]`` (radians, each ``[...]``).

    ``yaw`` and ``pitch`` are the angles of the reversed viewing direction (pointing from the
    scene back to the camera) in the convention of :func:`look_at`; ``roll`` is the rotation of
    the camera x axis about the viewing axis relative to the level (zero-roll) camera. For a
    camera built by ``look_at(yaw, pitch, roll=roll, orbit_center=None)`` this returns the
    inputs; for EG3D-style cameras orbiting the origin it returns the viewing-direction angles,
    which differ slightly from the orbit angles because the pivot is off the origin.
    """
    labels = CameraLabels(cameras)
    fwd = labels.forward
    back = -fwd
    yaw = torch.atan2(back[..., 0], back[..., 2])
    pitch = torch.atan2(back[..., 1], torch.linalg.vector_norm(back[..., [0, 2]], dim=-1))
    level = _look_rotation(fwd)
    right = labels.rotation[..., :, 0]
    cos_r = (level[..., :, 0] * right).sum(-1)
    sin_r = (level[..., :, 1] * right).sum(-1)
    roll = torch.atan2(sin_r, cos_r)
    return yaw, pitch, roll


def mirror_camera(cameras: torch.Tensor) -> torch.Tensor:
    """The camera that sees the horizontally flipped image of the mirrored scene: ``[..., 25]``.

    cam2world ``M -> S M S`` with ``S = diag(-1, 1, 1, 1)`` (reflection of the world across the
    ``x = 0`` plane and of the camera x axis); intrinsics ``cx -> 1 - cx`` and skew negated, which
    leaves EG3D's centred intrinsics unchanged. Mirroring twice is the identity.
    """
    labels = CameraLabels(cameras)
    s = _MIRROR.to(device=cameras.device, dtype=cameras.dtype)
    m = labels.cam2world * s[:, None] * s[None, :]
    k = labels.intrinsics.clone()
    k[..., 0, 2] = 1.0 - k[..., 0, 2]
    k[..., 0, 1] = -k[..., 0, 1]
    return CameraLabels.from_parts(m, k).pack()


def mirror_weight(
    yaw: torch.Tensor | float,
    *,
    threshold: float = 0.2,
    sigma: float = 0.29,
    scale: float = 2.7,
) -> torch.Tensor:
    """SPI's yaw-dependent weight of the mirrored view (stage 1).

    ``0`` when ``|yaw| < threshold``; otherwise ``0.5 * (1 - N(|yaw|; 0, sigma) / scale)`` where
    ``N`` is the Gaussian pdf. Rises from about 0.30 at 0.2 rad to 0.5 for large yaw: a near
    frontal face gains nothing from its mirror, a side view gains the unseen side.

    Args:
        yaw: radians, any shape.

    Returns:
        weights with the shape of ``yaw``, in ``[0, 0.5]``.
    """
    y = torch.as_tensor(yaw, dtype=torch.float32).abs()
    pdf = torch.exp(-(y**2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
    w = 0.5 * (1.0 - pdf / scale)
    return torch.where(y < threshold, torch.zeros_like(w), w.clamp(0.0, 0.5))


def _axis_angle(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[..., 3, 3]`` about unit ``axis [..., 3]`` by ``angle [...]`` (Rodrigues)."""
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).unflatten(-1, (3, 3))
    eye = torch.eye(3, dtype=axis.dtype, device=axis.device).expand_as(k)
    s, c = torch.sin(angle)[..., None, None], torch.cos(angle)[..., None, None]
    return eye + s * k + (1 - c) * (k @ k)


def _rotate_about_pivot(
    cameras: torch.Tensor, dyaw: torch.Tensor, dpitch: torch.Tensor, pivot: torch.Tensor
) -> torch.Tensor:
    labels = CameraLabels(cameras)
    pos = labels.position
    rel = pos - pivot
    up = torch.zeros_like(rel)
    up[..., 1] = 1.0
    # Pitch axis: horizontal, perpendicular to the pivot->camera direction; positive dpitch lifts the camera.
    axis = torch.linalg.cross(rel, up, dim=-1)
    n = axis.norm(dim=-1, keepdim=True)
    fallback = torch.zeros_like(axis)
    fallback[..., 0] = -1.0
    axis = torch.where(n > 1e-8, axis / n.clamp_min(1e-12), fallback)
    r_pitch = _axis_angle(axis, dpitch)
    r_yaw = _axis_angle(up, dyaw)
    r = r_yaw @ r_pitch
    m = labels.cam2world.clone()
    m[..., :3, :3] = r @ labels.rotation
    m[..., :3, 3] = pivot + (r @ rel[..., None])[..., 0]
    return CameraLabels.from_parts(m, labels.intrinsics).pack()


def sample_cameras_around(
    cameras: torch.Tensor,
    num: int,
    *,
    yaw_range: float = 0.2,
    pitch_range: float = 0.1,
    pivot: Sequence[float] = FFHQ_PIVOT,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample ``num`` cameras near each camera by rotating it about the look-at **pivot**.

    Each sample draws ``dyaw ~ U(-yaw_range, yaw_range)`` and ``dpitch ~ U(-pitch_range,
    pitch_range)``; the camera (position and orientation) is first rotated by ``dpitch`` about the
    horizontal axis through the pivot perpendicular to the pivot-camera direction, then by
    ``dyaw`` about the vertical axis through the pivot. Distance to the pivot, roll and any
    off-pivot aim are preserved. (The official SPI code rotates about the world origin instead,
    which also shifts the view of the face; we rotate about the pivot, the point the face is
    centred on.)

    Args:
        cameras: ``[B, 25]`` source cameras.
        num: cameras per source camera.
        yaw_range, pitch_range: half-widths of the uniform offsets (radians).
        pivot: rotation centre (world).
        generator: random source for reproducible draws.

    Returns:
        ``[B, num, 25]`` camera labels.
    """
    check_shape(cameras, ["B", 25], "cameras")
    b = cameras.shape[0]
    u = torch.rand(2, b, num, generator=generator, dtype=torch.float32).to(cameras)
    dyaw = (2 * u[0] - 1) * yaw_range
    dpitch = (2 * u[1] - 1) * pitch_range
    piv = torch.as_tensor(pivot, dtype=cameras.dtype, device=cameras.device)
    src = cameras[:, None, :].expand(b, num, 25)
    return _rotate_about_pivot(src, dyaw, dpitch, piv)


def rotate_camera(
    cameras: torch.Tensor,
    dyaw: float | torch.Tensor,
    dpitch: float | torch.Tensor = 0.0,
    *,
    pivot: Sequence[float] = FFHQ_PIVOT,
) -> torch.Tensor:
    """Rotate cameras ``[..., 25]`` about the pivot by fixed offsets (see :func:`sample_cameras_around`)."""
    dy = torch.as_tensor(dyaw, dtype=cameras.dtype, device=cameras.device)
    dp = torch.as_tensor(dpitch, dtype=cameras.dtype, device=cameras.device)
    shape = torch.broadcast_shapes(cameras.shape[:-1], dy.shape, dp.shape)
    piv = torch.as_tensor(pivot, dtype=cameras.dtype, device=cameras.device)
    return _rotate_about_pivot(cameras.expand(*shape, 25), dy.expand(shape), dp.expand(shape), piv)


def sample_orbit_cameras(
    num: int,
    *,
    yaw_range: float = 0.7,
    pitch_range: float = 0.2,
    symmetric: bool = True,
    radius: float = FFHQ_RADIUS,
    pivot: Sequence[float] = FFHQ_PIVOT,
    focal: float = FFHQ_FOCAL,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Random look-at cameras ``[num, 25]`` for regularisers (e.g. the depth regulariser).

    ``yaw ~ U(-yaw_range, yaw_range)`` when ``symmetric`` (the default), else ``U(0, yaw_range)``
    as in the official SPI code (a one-sided range we consider a bug); ``pitch ~ U(-pitch_range,
    pitch_range)``.
    """
    u = torch.rand(2, num, generator=generator)
    yaw = (2 * u[0] - 1) * yaw_range if symmetric else u[0] * yaw_range
    pitch = (2 * u[1] - 1) * pitch_range
    return look_at(
        yaw.to(device), pitch.to(device), radius=radius, pivot=pivot, focal=focal, device=device
    )


def eg3d_sampler_angles(h: float, v: float) -> tuple[float, float]:
    """Convert EG3D ``LookAtPoseSampler`` angles ``(h, v)`` to this module's ``(yaw, pitch)``."""
    v_clamped = min(max(v, 1e-5), math.pi - 1e-5)
    polar = math.acos(1.0 - 2.0 * v_clamped / math.pi)
    return h - math.pi / 2.0, math.pi / 2.0 - polar


# ---------------------------------------------------------------------------------------------
# Pixels, rays and projection (shared by renderers and the depth-guided warp)
# ---------------------------------------------------------------------------------------------


def pixel_centers(
    height: int,
    width: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Normalised pixel-centre coordinates ``[H, W, 2]`` as ``(u, v) = ((j + .5) / W, (i + .5) / H)``.

    This is EG3D's ray-sampler convention: ``u`` runs along the width (column ``j``), ``v`` along
    the height (row ``i``), both in ``(0, 1)``.
    """
    v = (torch.arange(height, device=device, dtype=dtype) + 0.5) / height
    u = (torch.arange(width, device=device, dtype=dtype) + 0.5) / width
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return torch.stack([uu, vv], dim=-1)


def _camera_directions(intrinsics: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Camera-space directions with z = 1 for normalised pixel coords ``uv [..., N, 2]``."""
    fx = intrinsics[..., 0, 0, None]
    fy = intrinsics[..., 1, 1, None]
    cx = intrinsics[..., 0, 2, None]
    cy = intrinsics[..., 1, 2, None]
    sk = intrinsics[..., 0, 1, None]
    u, v = uv[..., 0], uv[..., 1]
    y = (v - cy) / fy
    x = (u - cx - sk * y) / fx
    return torch.stack([x, y, torch.ones_like(x)], dim=-1)


def camera_ray_directions(cameras: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Unit world-space ray directions ``[..., H*W, 3]`` through pixel centres (row-major order)."""
    labels = CameraLabels(cameras)
    uv = pixel_centers(height, width, device=cameras.device, dtype=cameras.dtype).reshape(-1, 2)
    d_cam = _camera_directions(labels.intrinsics, uv)
    d_world = (labels.rotation[..., None, :, :] @ d_cam[..., None])[..., 0]
    return torch.nn.functional.normalize(d_world, dim=-1)


def _ray_norm(cameras: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Length of the z = 1 camera-space ray per pixel: ``[..., 1, H, W]``."""
    labels = CameraLabels(cameras)
    uv = pixel_centers(height, width, device=cameras.device, dtype=cameras.dtype).reshape(-1, 2)
    d_cam = _camera_directions(labels.intrinsics, uv)
    return d_cam.norm(dim=-1).unflatten(-1, (height, width))[..., None, :, :]


def ray_distance_to_z(depth: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
    """Convert distance along normalised rays to camera-space z.

    Args:
        depth: ``[..., 1, H, W]`` distances along unit rays through pixel centres (EG3D's
            ``image_depth``).
        cameras: ``[..., 25]`` matching the leading dims of ``depth``.

    Returns:
        ``[..., 1, H, W]`` camera z (``z = d / |(x, y, 1)|``); equal at the principal point,
        about 1.3% smaller at the corners for the FFHQ focal length.
    """
    return depth / _ray_norm(cameras, depth.shape[-2], depth.shape[-1])


def z_to_ray_distance(z: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`ray_distance_to_z`."""
    return z * _ray_norm(cameras, z.shape[-2], z.shape[-1])


def unproject_depth(z: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
    """World points ``[..., H, W, 3]`` of pixel centres lifted to camera depth ``z [..., 1, H, W]``."""
    labels = CameraLabels(cameras)
    h, w = z.shape[-2], z.shape[-1]
    uv = pixel_centers(h, w, device=z.device, dtype=z.dtype).reshape(-1, 2)
    d_cam = _camera_directions(labels.intrinsics, uv)  # [..., HW, 3]
    p_cam = d_cam * z.flatten(-3)[..., None]  # [..., HW, 3]
    p_world = (labels.rotation[..., None, :, :] @ p_cam[..., None])[..., 0] + labels.position[
        ..., None, :
    ]
    return p_world.unflatten(-2, (h, w))


def project_points(
    points: torch.Tensor, cameras: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Project world points ``[..., N, 3]`` into cameras ``[..., 25]``.

    Returns:
        ``uv [..., N, 2]`` normalised image coordinates (pixel centres at ``(j + .5) / W``) and
        ``z [..., N]`` camera-space depth (points behind the camera have ``z <= 0``).
    """
    labels = CameraLabels(cameras)
    rot = labels.rotation[..., None, :, :]
    rel = points - labels.position[..., None, :]
    p_cam = (rot.transpose(-1, -2) @ rel[..., None])[..., 0]
    z = p_cam[..., 2]
    safe_z = torch.where(z.abs() < 1e-8, torch.full_like(z, 1e-8), z)
    k = labels.intrinsics[..., None, :, :]
    x, y = p_cam[..., 0] / safe_z, p_cam[..., 1] / safe_z
    u = k[..., 0, 0] * x + k[..., 0, 1] * y + k[..., 0, 2]
    v = k[..., 1, 1] * y + k[..., 1, 2]
    return torch.stack([u, v], dim=-1), z
