"""Geometry of the face pipeline: EG3D alignment crop, head rotation, camera label, masks, boxes.

No MediaPipe, so every formula here is tested without the models; only the polygon fill needs
OpenCV (installed with the ``faces`` extra).

Coordinates: photo and crop points are **continuous pixel coordinates** ``(x, y)``, x right,
y down, pixel ``(i, j)`` covering ``[j, j+1) x [i, i+1)`` (its centre at ``(j + .5, i + .5)``),
which is ``grid_sample``'s ``align_corners=False`` convention and MediaPipe's (normalised
landmark times the image size).

Camera frame: OpenCV (x right, y down, z forward). Head/world frame: EG3D's FFHQ world, which is
the frame of the Basel Face Model used by Deep3DFaceRecon: x toward the subject's left, y up,
z out of the face (the direction the face looks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from sym3d.camera import FFHQ_FOCAL, FFHQ_PIVOT, FFHQ_RADIUS, CameraLabels, look_at, yaw_pitch_roll

__all__ = [
    "BFM_FIVE_POINTS",
    "EG3D_TARGET_SIZE",
    "EG3D_RESCALE",
    "EG3D_CENTER_CROP",
    "template_scale",
    "pos_fit",
    "ffhq_roll_angle",
    "eg3d_crop_matrix",
    "project_template",
    "apply_matrix",
    "symmetry_normal",
    "head_rotation",
    "rotate_in_image_plane",
    "camera_from_head_rotation",
    "warp_crop",
    "fade_outside",
    "convex_hull",
    "fill_polygons",
    "convex_polygon_mask",
    "padded_box",
]

BFM_FIVE_POINTS = np.array(
    [
        [-0.31148657, 0.29036078, 0.13377953],  # subject's right eye (mean of its two corners)
        [0.30979887, 0.28972036, 0.13179526],  # subject's left eye
        [0.00325350, -0.04617932, 0.55244243],  # nose tip
        [-0.25216928, -0.38133916, 0.22405732],  # subject's right mouth corner
        [0.24846620, -0.38128236, 0.22235769],  # subject's left mouth corner
    ],
    dtype=np.float64,
)
"""The standard 5-point 3D face of the Basel Face Model (mean-face landmarks, as used by
Deep3DFaceRecon's alignment and EG3D's crop): x toward the subject's left, y up, z forward.
On a frontal photo the subject's right eye is the one on the image's left."""

EG3D_TARGET_SIZE = 1024
"""EG3D's in-the-wild crop: the face is first aligned into a ``1024`` image ..."""
EG3D_RESCALE = 300.0
"""... in which one unit of the BFM template spans ``300`` pixels ..."""
EG3D_CENTER_CROP = 700
"""... then the central ``700`` pixels are cut out and resized to the output size (512)."""


def template_scale(size: int = 512) -> float:
    """Crop pixels per BFM template unit in an EG3D crop of side ``size`` (219.43 at 512)."""
    return EG3D_RESCALE * size / EG3D_CENTER_CROP


# ---------------------------------------------------------------------------------------------
# Alignment
# ---------------------------------------------------------------------------------------------


def pos_fit(
    points: np.ndarray, template: np.ndarray = BFM_FIVE_POINTS
) -> tuple[np.ndarray, float, np.ndarray]:
    """Least-squares affine (weak-perspective) camera from 3D ``template`` points to 2D ``points``.

    Solves ``points[i] ~ rows @ template[i] + t`` with free ``rows [2, 3]`` (Deep3DFaceRecon's
    "POS" alignment) and returns the image of the template origin ``t [2]``, the scale
    ``s = (|rows[0]| + |rows[1]|) / 2`` (pixels per template unit) and ``rows``. The fit does not
    care whether the image y axis points up or down (``rows[1]`` just changes sign).
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    tpl = np.asarray(template, dtype=np.float64).reshape(-1, 3)
    if pts.shape[0] != tpl.shape[0] or pts.shape[0] < 4:
        raise ValueError(
            f"pos_fit: expected matching point sets of at least 4 points, got {pts.shape[0]} and {tpl.shape[0]}."
        )
    design = np.concatenate([tpl, np.ones((tpl.shape[0], 1))], axis=1)  # [N, 4]
    sol, *_ = np.linalg.lstsq(design, pts, rcond=None)  # [4, 2]
    rows = sol[:3].T  # [2, 3]
    t = sol[3]
    s = float((np.linalg.norm(rows[0]) + np.linalg.norm(rows[1])) / 2.0)
    return t, s, rows


def ffhq_roll_angle(five: np.ndarray) -> float:
    """In-plane angle (radians) of the face in the photo, by FFHQ's alignment rule.

    FFHQ orients its crops along ``eye_to_eye + rot90(eye_to_mouth)``: the average of the eye line
    and the perpendicular of the eye-to-mouth line, weighted by their lengths. Returns the angle of
    that axis from the image x axis, measured in image coordinates (y down), so a face tilted
    clockwise on screen has a positive angle. ``five`` is ``[5, 2]`` in the order of
    :data:`BFM_FIVE_POINTS`.
    """
    f = np.asarray(five, dtype=np.float64)
    eye_to_eye = f[1] - f[0]
    eye_to_mouth = (f[3] + f[4]) / 2.0 - (f[0] + f[1]) / 2.0
    axis = eye_to_eye + np.array([eye_to_mouth[1], -eye_to_mouth[0]])
    return math.atan2(axis[1], axis[0])


def _rot2(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def eg3d_crop_matrix(
    five: np.ndarray, *, size: int = 512, upright: bool = True
) -> tuple[np.ndarray, dict]:
    """The similarity transform (photo -> crop) of EG3D's in-the-wild crop, as one ``[3, 3]`` matrix.

    EG3D's recipe (``crop_images_in_the_wild.py`` with Deep3DFaceRecon's ``align_img``): fit the
    BFM 5-point template to the five landmarks with :func:`pos_fit`; scale the photo so that one
    template unit spans 300 px and place the template origin at the centre of a 1024 image; cut the
    central 700 px; resize to ``size``. Composed, that is one scale ``300 / s * size / 700`` and one
    translation that puts the template origin at the crop centre. We compose it in continuous
    coordinates (the official script truncates to integer pixels and flips y with ``H - 1`` in one
    place and ``H`` in another, shifting its crop by up to one source pixel; not reproduced).

    With ``upright=True`` the photo is first rotated about the landmarks' centre by
    ``-ffhq_roll_angle(five)``, so the crop is level the way FFHQ's (EG3D's training images) are;
    with ``upright=False`` no rotation is applied (EG3D's recipe exactly; the head's roll then stays
    in the image and must be carried by the camera label).

    Returns:
        ``(matrix, info)``: ``matrix`` maps homogeneous photo points to crop points; ``info`` holds
        ``angle`` (the rotation removed, radians), ``scale`` (crop px per photo px), ``pos_scale``
        (photo px per template unit), ``origin`` (the template origin in the photo).
    """
    f = np.asarray(five, dtype=np.float64).reshape(5, 2)
    angle = ffhq_roll_angle(f) if upright else 0.0
    centre = f.mean(axis=0)
    rot = _rot2(-angle)
    rotated = (f - centre) @ rot.T + centre
    t, s, _ = pos_fit(rotated)
    if not (s > 1e-9 and np.isfinite(s)):
        raise ValueError("eg3d_crop_matrix: degenerate landmarks (zero scale).")
    k = EG3D_RESCALE / s * size / EG3D_CENTER_CROP
    # crop = k * (rot @ (p - centre) + centre - t) + size / 2
    lin = k * rot
    offset = k * (centre - rot @ centre - t) + size / 2.0
    m = np.eye(3)
    m[:2, :2] = lin
    m[:2, 2] = offset
    origin = np.linalg.solve(m, np.array([size / 2.0, size / 2.0, 1.0]))[:2]
    return m, {"angle": angle, "scale": k, "pos_scale": s, "origin": origin}


def apply_matrix(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a ``[3, 3]`` similarity/affine matrix to points ``[..., 2]``."""
    p = np.asarray(points, dtype=np.float64)
    return p @ matrix[:2, :2].T + matrix[:2, 2]


def project_template(points: np.ndarray, template: np.ndarray = BFM_FIVE_POINTS) -> np.ndarray:
    """Where the weak-perspective template fitted to ``points`` puts each template point (``[N, 2]``)."""
    t, _, rows = pos_fit(points, template)
    return np.asarray(template) @ rows.T + t


# ---------------------------------------------------------------------------------------------
# Head rotation without a 3DMM
# ---------------------------------------------------------------------------------------------


def symmetry_normal(points: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """Unit normal of the face's symmetry plane, from mirrored point pairs.

    For a symmetric face every difference ``p_i - p_mirror(i)`` is parallel to the plane normal;
    the normal is the principal axis of those differences (least squares over all pairs, so large
    pairs weigh more). Returned with an arbitrary sign.
    """
    p = np.asarray(points, dtype=np.float64)
    idx = np.nonzero(mirror != np.arange(len(mirror)))[0]
    d = p[idx] - p[mirror[idx]]
    _, vecs = np.linalg.eigh(d.T @ d)
    return vecs[:, -1]


def _proper_procrustes_2d(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Rotation ``[2, 2]`` (det +1) best mapping centred ``src`` onto centred ``dst`` (with a free scale)."""
    a = src - src.mean(axis=0)
    b = dst - dst.mean(axis=0)
    u, _, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    return (u @ np.diag([1.0, d]) @ vt).T


def head_rotation(
    points: np.ndarray,
    mirror: np.ndarray,
    five_3d: np.ndarray,
    *,
    template: np.ndarray = BFM_FIVE_POINTS,
) -> np.ndarray:
    """Head orientation in the camera frame from a 3D landmark cloud, without a 3DMM.

    1. **Left-right axis (yaw, roll):** the normal of the symmetry plane (:func:`symmetry_normal`)
       over all mirrored landmark pairs, oriented toward the subject's left.
    2. **Up and forward axes (pitch):** rotate about that normal so that the profile of the five
       landmarks (eye centres, nose tip, mouth corners) projected on the symmetry plane best
       matches the profile of the BFM 5-point template (a 2D Procrustes fit in the plane). Pitch 0
       is therefore the BFM's upright pose: the pose Deep3DFaceRecon, and hence EG3D's FFHQ labels,
       call frontal.

    Args:
        points: ``[N, 3]`` landmarks in the camera frame (x right, y down, z away from the camera),
            all in one unit (e.g. pixels).
        mirror: ``[N]`` mirror permutation of the landmarks.
        five_3d: ``[5, 3]`` the five landmarks, ordered like ``template``.
        template: the 5-point 3D template (head frame).

    Returns:
        ``[3, 3]`` rotation whose columns are the head's x (subject's left), y (up) and z (facing
        direction) axes expressed in camera coordinates.
    """
    f = np.asarray(five_3d, dtype=np.float64)
    n = symmetry_normal(points, mirror)
    if n @ ((f[1] + f[4]) - (f[0] + f[3])) < 0:
        n = -n
    # In-plane basis (e1, e2) with (n, e1, e2) right-handed, like the template's (x, y, z).
    helper = np.array([0.0, -1.0, 0.0]) if abs(n[1]) < 0.9 else np.array([0.0, 0.0, -1.0])
    e1 = helper - (helper @ n) * n
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(n, e1)
    measured = np.stack([f @ e1, f @ e2], axis=1)  # [5, 2] profile coordinates
    tpl = np.asarray(template, dtype=np.float64)[:, 1:]  # template (y, z)
    rot = _proper_procrustes_2d(tpl, measured)  # maps template (y, z) to plane coordinates
    y_axis = rot[0, 0] * e1 + rot[1, 0] * e2
    z_axis = rot[0, 1] * e1 + rot[1, 1] * e2
    r = np.stack([n, y_axis, z_axis], axis=1)
    # Re-orthonormalise (numerically exact already; keep it a proper rotation).
    u, _, vt = np.linalg.svd(r)
    return u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt


def rotate_in_image_plane(head_rot: np.ndarray, angle: float) -> np.ndarray:
    """The head rotation seen in an image rotated by ``rot2(-angle)`` (the upright crop)."""
    r3 = np.eye(3)
    r3[:2, :2] = _rot2(-angle)
    return r3 @ head_rot


def camera_from_head_rotation(
    head_rot: np.ndarray,
    *,
    radius: float = FFHQ_RADIUS,
    pivot: Sequence[float] = FFHQ_PIVOT,
    focal: float = FFHQ_FOCAL,
    iterations: int = 8,
) -> torch.Tensor:
    """EG3D camera label ``[1, 25]`` whose rotation equals the measured head rotation.

    The label's cam2world rotation is ``head_rot.T`` (world = head frame), exactly as in EG3D's
    labels, which take the rotation from the 3DMM pose. Its position is on EG3D's FFHQ orbit:
    radius 2.7 around the origin, aimed at ``(0, 0, 0.2)``. Because that aim point is off the
    orbit centre, the orbit angles that give a wanted viewing direction differ from it by up to a
    few degrees; they are solved for by a short fixed-point iteration, so
    :func:`sym3d.camera.yaw_pitch_roll` of the label returns the measured angles.
    """
    r_cw = torch.as_tensor(np.asarray(head_rot, dtype=np.float64).T)
    m = torch.eye(4, dtype=torch.float64)
    m[:3, :3] = r_cw
    k = torch.eye(3, dtype=torch.float64)
    probe = CameraLabels.from_parts(m, k).pack()
    yaw_t, pitch_t, roll_t = (float(v) for v in yaw_pitch_roll(probe))
    yaw_o, pitch_o = yaw_t, pitch_t
    for _ in range(iterations):
        c = look_at(
            yaw_o,
            pitch_o,
            roll=roll_t,
            radius=radius,
            pivot=pivot,
            focal=focal,
            dtype=torch.float64,
        )
        y, p, _ = (float(v) for v in yaw_pitch_roll(c))
        yaw_o += yaw_t - y
        pitch_o += pitch_t - p
    c = look_at(
        yaw_o, pitch_o, roll=roll_t, radius=radius, pivot=pivot, focal=focal, dtype=torch.float64
    )
    return c.to(torch.float32)[None]


# ---------------------------------------------------------------------------------------------
# Warping
# ---------------------------------------------------------------------------------------------

_PADDING = {"fade": "reflection", "reflect": "reflection", "zeros": "zeros", "replicate": "border"}

FADE_BLUR_SIGMA = 1 / 32
"""``"fade"`` padding: Gaussian blur of the fill, in crop sides (16 px at 512)."""
FADE_BLUR_RAMP = 1 / 64
"""``"fade"``: distance outside the photo (crop sides) over which the fill turns fully blurred."""
FADE_MEDIAN_RAMP = 1 / 8
"""``"fade"``: distance outside the photo (crop sides) at which the fill is the median colour."""


def warp_crop(
    image: torch.Tensor, matrix: np.ndarray, size: int, *, padding: str = "fade"
) -> torch.Tensor:
    """Resample ``image [1, C, H, W]`` into the crop defined by the photo->crop ``matrix``.

    Only the photo region under the crop is touched. When the crop is smaller than that region
    (downscaling) the region is first reduced with an antialiased resize to about the crop's scale,
    so the final bicubic resampling never aliases. ``padding``: how pixels outside the photo are
    filled: ``"fade"`` (default, see :func:`fade_outside`), ``"reflect"`` (mirror images of the
    photo: a second eye or cheek can appear), ``"zeros"`` (EG3D's black) or ``"replicate"``.
    Pixels whose source lies inside the photo are the same in every mode.
    """
    from kornia.geometry.transform import warp_affine  # noqa: PLC0415 - a heavy import

    if padding not in _PADDING:
        raise ValueError(f"padding: expected one of {sorted(_PADDING)}, got {padding!r}.")
    _, _, h, w = image.shape
    inv = np.linalg.inv(matrix)
    corners = apply_matrix(
        inv, np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    )
    scale = float(math.sqrt(abs(np.linalg.det(matrix[:2, :2]))))  # crop px per photo px
    margin = 4.0 / min(scale, 1.0) + 2.0
    x0 = int(max(0, math.floor(corners[:, 0].min() - margin)))
    y0 = int(max(0, math.floor(corners[:, 1].min() - margin)))
    x1 = int(min(w, math.ceil(corners[:, 0].max() + margin)))
    y1 = int(min(h, math.ceil(corners[:, 1].max() + margin)))
    if (
        x1 - x0 < 2 or y1 - y0 < 2
    ):  # crop entirely outside the photo (cannot happen for a detected face)
        x0, y0, x1, y1 = 0, 0, w, h
    region = image[:, :, y0:y1, x0:x1].float()
    # photo -> region coordinates
    to_region = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]])
    if scale < 0.999:
        rh = max(2, round(region.shape[-2] * scale))
        rw = max(2, round(region.shape[-1] * scale))
        sy, sx = rh / region.shape[-2], rw / region.shape[-1]
        region = F.interpolate(
            region, size=(rh, rw), mode="bilinear", align_corners=False, antialias=True
        )
        to_region = np.diag([sx, sy, 1.0]) @ to_region
    # region -> crop in kornia's pixel-index coordinates (pixel centres at integers)
    half = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    region_to_crop = np.linalg.inv(half) @ matrix @ np.linalg.inv(to_region) @ half
    dev = image.device
    m = torch.as_tensor(region_to_crop[:2], dtype=region.dtype, device=dev)[None]
    out = warp_affine(
        region, m, (size, size), mode="bicubic", padding_mode=_PADDING[padding], align_corners=False
    )
    out = out.clamp(0.0, 1.0)
    if padding == "fade":
        # Distance of each crop pixel's source outside the photo, in crop pixels.
        centres = torch.arange(size, dtype=torch.float64, device=dev) + 0.5
        yy, xx = torch.meshgrid(centres, centres, indexing="ij")
        src = torch.as_tensor(inv, dtype=torch.float64, device=dev)
        px = src[0, 0] * xx + src[0, 1] * yy + src[0, 2]
        py = src[1, 0] * xx + src[1, 1] * yy + src[1, 2]
        dx = torch.clamp(torch.maximum(-px, px - w), min=0.0)
        dy = torch.clamp(torch.maximum(-py, py - h), min=0.0)
        outside = torch.hypot(dx, dy) * scale
        if bool((outside > 0).any()):
            median = region.flatten(2).median(dim=-1).values[..., None, None]  # [1, C, 1, 1]
            out = fade_outside(out, outside[None, None].to(out.dtype), median)
    return out


def fade_outside(crop: torch.Tensor, outside: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Turn a reflect-padded crop's fill into a blur that fades to a flat colour.

    The idea of the FFHQ alignment recipe, without blurring the photo itself: where the crop
    reaches beyond the photo, mirrored detail (a second eye or cheek) would give the GAN features
    to explain. With ``d`` the distance outside the photo and ``S`` the crop side, the fill is the
    crop blurred with sigma ``FADE_BLUR_SIGMA * S`` from ``d = FADE_BLUR_RAMP * S`` on, and it
    blends (smoothstep) into ``fill`` until ``d = FADE_MEDIAN_RAMP * S``. Pixels with ``d = 0``
    are returned unchanged.

    Args:
        crop: ``[B, C, S, S]`` in [0, 1], already filled by reflection.
        outside: ``[B or 1, 1, S, S]`` distance of each pixel's source outside the photo, crop px.
        fill: ``[B or 1, C, 1, 1]`` colour far outside (the photo's median).

    Returns:
        ``[B, C, S, S]`` in [0, 1].
    """
    import kornia  # noqa: PLC0415 (a heavy import, only needed when a crop leaves the photo)

    side = crop.shape[-1]
    sigma = FADE_BLUR_SIGMA * side
    kernel = 2 * math.ceil(3 * sigma) + 1
    blurred = kornia.filters.gaussian_blur2d(
        crop, (kernel, kernel), (sigma, sigma), border_type="reflect"
    )
    to_blur = (outside / (FADE_BLUR_RAMP * side)).clamp(0.0, 1.0)
    t = (outside / (FADE_MEDIAN_RAMP * side)).clamp(0.0, 1.0)
    to_fill = t * t * (3 - 2 * t)
    out = torch.lerp(crop, blurred, to_blur)
    out = torch.lerp(out, fill.to(out.dtype).expand_as(out), to_fill)
    # Exactly the photo where the source is inside it (lerp with weight 0 may round).
    return torch.where(outside > 0, out, crop).clamp(0.0, 1.0)


def outside_fraction(matrix: np.ndarray, size: int, height: int, width: int) -> float:
    """Fraction of the crop's pixels whose source lies outside the photo."""
    inv = np.linalg.inv(matrix)
    n = 64
    c = (np.arange(n) + 0.5) * size / n
    xx, yy = np.meshgrid(c, c)
    src = apply_matrix(inv, np.stack([xx.ravel(), yy.ravel()], axis=1))
    out = (src[:, 0] < 0) | (src[:, 0] > width) | (src[:, 1] < 0) | (src[:, 1] > height)
    return float(out.mean())


# ---------------------------------------------------------------------------------------------
# Masks and boxes
# ---------------------------------------------------------------------------------------------


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Convex hull ``[M, 2]`` of 2D points, counter-clockwise in a y-up frame (clockwise on screen).

    ``scipy.spatial.ConvexHull``; fewer than three distinct points are returned as they are, and
    collinear points as the two ends of their segment.
    """
    from scipy.spatial import ConvexHull, QhullError

    p = np.unique(np.asarray(points, dtype=np.float64).reshape(-1, 2), axis=0)  # sorted by x, y
    if len(p) < 3:
        return p
    try:
        return p[ConvexHull(p).vertices]
    except QhullError:  # all points on one line
        return p[[0, -1]]


def fill_polygons(
    polygons: Sequence[np.ndarray],
    size: int,
    *,
    grow: float = 0.0,
    supersample: int = 4,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Antialiased union of filled polygons (continuous pixel coordinates): ``[1, 1, size, size]``.

    Each polygon ``[N, 2]`` (``N >= 3``; fewer are ignored) is filled with ``cv2.fillPoly`` at
    ``supersample`` times the resolution, the union is grown by ``grow`` pixels (a disc
    dilation) and area-averaged down, so border pixels hold their covered fraction in ``[0, 1]``
    (in steps of ``1 / supersample**2``). OpenCV also fills sub-pixels whose centre lies on an
    edge, so edges sit up to ``1 / (2 * supersample)`` pixel outward. Needs OpenCV (the
    ``faces`` extra).
    """
    import cv2  # noqa: PLC0415 - the faces extra; only the estimator rasterises

    big = size * supersample
    canvas = np.zeros((big, big), dtype=np.uint8)
    frac = 4  # fixed-point bits for sub-pixel vertices
    for poly in polygons:  # one at a time: one multi-contour fillPoly would XOR overlaps
        if len(poly) < 3:
            continue
        q = (np.asarray(poly, dtype=np.float64) * supersample - 0.5) * (1 << frac)
        q = np.round(q).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(canvas, [q], 255, cv2.LINE_8, frac)
    r = int(round(grow * supersample))
    if r > 0:
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        canvas = cv2.dilate(canvas, disc)
    small = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(small.astype(np.float32) / 255.0)[None, None].to(device)


def convex_polygon_mask(
    polygon: np.ndarray,
    size: int,
    *,
    grow: float = 0.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Antialiased mask ``[1, 1, size, size]`` of the convex hull of ``polygon`` (pixel coords).

    :func:`fill_polygons` of the hull, grown by ``grow`` pixels; zeros if the hull is degenerate.
    """
    return fill_polygons([convex_hull(polygon)], size, grow=grow, device=device)


def padded_box(points: np.ndarray, pad: float, size: int) -> tuple[float, float, float, float]:
    """Normalised box ``(x0, y0, x1, y1)`` around pixel ``points [N, 2]`` padded by ``pad`` (normalised), clipped to [0, 1]."""
    p = np.asarray(points, dtype=np.float64)
    lo = p.min(axis=0) / size - pad
    hi = p.max(axis=0) / size + pad
    lo = np.clip(lo, 0.0, 1.0)
    hi = np.clip(hi, 0.0, 1.0)
    return (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))
