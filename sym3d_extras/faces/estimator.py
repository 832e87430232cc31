"""The offline MediaPipe pose estimator: photo -> EG3D crop, camera label, masks and regions.

Pipeline (see ``docs/faces.md``):

1. **Detect** faces on a copy of the photo reduced to at most ``detect_max_side`` pixels with
   MediaPipe's short- and full-range face detectors (overlapping tiles, then dlib's HOG detector
   if installed, when nothing is found). Several faces: the largest wins, the observation's
   ``notes`` say so.
2. **Landmarks:** the face mesh (478 points with relative depth) is fitted on a square patch
   around the chosen face cut from the full-resolution photo, and again on the mirrored patch;
   the two fits are averaged through the mesh's mirror table (this makes the estimate of a
   mirrored photo the mirror of the estimate, and halves landmark noise).
3. **Crop:** EG3D's in-the-wild recipe as one similarity warp from the full-resolution photo
   (:func:`~sym3d_extras.faces.geometry.eg3d_crop_matrix`), made upright like FFHQ by default.
4. **Camera:** head rotation from the 3D landmarks' symmetry plane plus a fit of the BFM 5-point
   profile (:func:`~sym3d_extras.faces.geometry.head_rotation`), turned into an EG3D FFHQ label.
5. **Masks and regions** from the landmarks (face hull) and MediaPipe's selfie segmentation.
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from collections.abc import Mapping
from typing import Any, Literal

import attrs
import numpy as np
import torch
import torch.nn.functional as F

from sym3d.camera import yaw_pitch_roll
from sym3d.checks import check_range, check_tensor
from sym3d.errors import (
    FaceNotFoundError,
    MissingDependencyError,
    QualityWarning,
    ShapeError,
    UserInputError,
)
from sym3d.protocols import FaceObservation
from sym3d.resize import resize
from sym3d_extras.faces import geometry as geo
from sym3d_extras.faces._mesh_data import (
    LEFT_EYE_CORNERS,
    MOUTH_LEFT,
    MOUTH_RIGHT,
    NOSE_TIP,
    NUM_MESH_POINTS,
    RIGHT_EYE_CORNERS,
    mirror_permutation,
)

__all__ = ["FaceAnalysis", "MediaPipePoseEstimator", "SPI_REGION_PADDING"]

SPI_REGION_PADDING: Mapping[str, float] = {
    "left_eye": 15 / 256,
    "right_eye": 15 / 256,
    "mouth": 8 / 256,
    "nose": 8 / 256,
}
"""SPI's box padding (15 px around the eyes, 8 px around the mouth at 256 px), normalised."""

_MESH_PATCH = 384  # side of the patch the face mesh sees
_MESH_CONTEXT = 2.0  # patch side / detection box side


@attrs.frozen(kw_only=True)
class FaceAnalysis:
    """Everything the estimator measured for one photo; :attr:`observation` is what inversion needs.

    Attributes:
        observation: the :class:`~sym3d.protocols.FaceObservation` (crop, camera, masks, ...).
        yaw, pitch, roll: angles (radians) of the crop's camera label, as returned by
            :func:`sym3d.camera.yaw_pitch_roll` (yaw > 0: the subject's left side faces the camera;
            pitch > 0: camera above the face).
        head_roll: the head's roll in the *photo* (radians, same convention as ``roll``): the
            label roll a crop without rotation would need; ``head_roll = roll - crop_angle``.
        crop_angle: the in-plane angle of the face in the photo that the upright crop removed
            (radians, FFHQ's eye/mouth rule; positive = tilted clockwise on screen; 0 with
            ``align="eg3d"``).
        crop_matrix: ``[3, 3]`` photo -> crop similarity on continuous pixel coordinates.
        landmarks: ``[N, 3]`` mesh landmarks in the photo (x, y in pixels; z relative depth in
            pixels, smaller = closer to the camera).
        five_points: ``[5, 2]`` the alignment points in the photo: the subject's right eye, left
            eye, nose tip, right mouth corner, left mouth corner.
        face_box: ``(x0, y0, x1, y1)`` the chosen detection in photo pixels.
        num_faces: number of faces detected.
        face_size: distance in photo pixels between the eyes' and the mouth's centres.
        upsampling: crop pixels per photo pixel (> 1: the crop is upsampled).
        timings: seconds per stage.
    """

    observation: FaceObservation
    yaw: float
    pitch: float
    roll: float
    head_roll: float
    crop_angle: float
    crop_matrix: np.ndarray
    landmarks: np.ndarray
    five_points: np.ndarray
    face_box: tuple[float, float, float, float]
    num_faces: int
    face_size: float
    upsampling: float
    timings: Mapping[str, float] = attrs.field(factory=dict)

    @property
    def inverse_crop_matrix(self) -> np.ndarray:
        """``[3, 3]`` crop -> photo."""
        return np.linalg.inv(self.crop_matrix)

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Map photo points ``[..., 2]`` into the crop."""
        return geo.apply_matrix(self.crop_matrix, points)

    def to_photo(self, points: np.ndarray) -> np.ndarray:
        """Map crop points ``[..., 2]`` back into the photo."""
        return geo.apply_matrix(self.inverse_crop_matrix, points)


@attrs.frozen
class _Detection:
    box: tuple[float, float, float, float]  # photo pixels
    score: float
    source: str

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _merge(dets: list[_Detection], iou: float = 0.3) -> list[_Detection]:
    """Greedy non-maximum suppression: one detection per face, the most confident box kept."""
    kept: list[_Detection] = []
    for d in sorted(dets, key=lambda d: -d.score):
        if all(_iou(d.box, k.box) < iou and not _contains(k.box, d.box) for k in kept):
            kept.append(d)
    return kept


def _contains(outer: tuple[float, ...], inner: tuple[float, ...]) -> bool:
    """True if most of ``inner`` lies inside ``outer`` (a part-of-face box inside a face box)."""
    ix = max(0.0, min(outer[2], inner[2]) - max(outer[0], inner[0]))
    iy = max(0.0, min(outer[3], inner[3]) - max(outer[1], inner[1]))
    area = (inner[2] - inner[0]) * (inner[3] - inner[1])
    return area > 0 and ix * iy / area > 0.8


def _as_image(image: Any) -> torch.Tensor:
    """Validate and normalise the input to ``[1, 3, H, W]`` float in [0, 1] (1/4 channels accepted)."""
    check_tensor(image, "image")
    x = image
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] not in (1, 3, 4):
        raise ShapeError(
            "image",
            "[1,3,H,W] (or [1,1,H,W] grayscale, [1,4,H,W] RGBA)",
            tuple(image.shape),
            hint="load photos with sym3d.image.load_image(); pass one image at a time.",
        )
    if x.shape[-1] < 8 or x.shape[-2] < 8:
        raise UserInputError(
            f"image: expected at least 8x8 pixels, got {x.shape[-1]}x{x.shape[-2]}."
        )
    x = x.float()
    lo, hi = (float(v) for v in torch.aminmax(x.detach()))  # one pass, also catches NaN/inf
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < -1e-3 or hi > 1.0 + 1e-3:
        check_range(
            x,
            0.0,
            1.0,
            "image",
            hint="photos are [0, 1]; convert generator output with from_model_range().",
        )
    if lo < 0.0 or hi > 1.0:  # within the tolerance; copy only then
        x = x.clamp(0.0, 1.0)
    if x.shape[1] == 1:
        x = x.expand(1, 3, *x.shape[-2:])
    elif x.shape[1] == 4:
        rgb, alpha = x[:, :3], x[:, 3:]
        x = rgb * alpha + (1.0 - alpha)  # composite on white, like load_image
    return x


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """``[1, 3, H, W]`` in [0, 1] -> contiguous ``uint8 [H, W, 3]``."""
    return np.ascontiguousarray(
        x[0]
        .detach()
        .mul(255.0)
        .round()
        .clamp(0, 255)
        .to(torch.uint8)
        .permute(1, 2, 0)
        .cpu()
        .numpy()
    )


def _square_patch(
    image: torch.Tensor, cx: float, cy: float, side: float, out: int
) -> tuple[np.ndarray, float, float, float]:
    """A square ``out x out`` uint8 patch of ``image`` centred at ``(cx, cy)`` with side ``side`` px.

    Returns ``(patch, scale, x0, y0)`` with ``photo = patch / scale + (x0, y0)``. Outside the photo
    the border pixels are replicated.
    """
    _, _, h, w = image.shape
    s = max(2, int(round(side)))
    x0 = int(round(cx - s / 2.0))
    y0 = int(round(cy - s / 2.0))
    xa, ya, xb, yb = max(0, x0), max(0, y0), min(w, x0 + s), min(h, y0 + s)
    if xb - xa < 1 or yb - ya < 1:
        raise ValueError("patch outside the image")
    region = image[:, :, ya:yb, xa:xb].float()
    pads = (xa - x0, x0 + s - xb, ya - y0, y0 + s - yb)
    if any(pads):
        # Replicate padding needs each pad smaller than the region in torch: pad in steps.
        while any(pads):
            step = tuple(
                min(p, max(1, region.shape[-1 if i < 2 else -2] - 1)) for i, p in enumerate(pads)
            )
            region = F.pad(region, step, mode="replicate")
            pads = tuple(p - q for p, q in zip(pads, step, strict=True))
    patch = resize(region, out)
    return _to_uint8(patch), out / s, float(x0), float(y0)


def _triangles(edges: Any) -> np.ndarray:
    """Triangles ``[T, 3]`` of a mesh given as an edge set (its 3-cliques)."""
    nbrs: dict[int, set[int]] = {}
    for a, b in edges:
        nbrs.setdefault(a, set()).add(b)
        nbrs.setdefault(b, set()).add(a)
    tris = {
        tuple(sorted((a, b, c)))
        for a in nbrs
        for b in nbrs[a]
        if b > a
        for c in nbrs[a] & nbrs[b]
        if c > b
    }
    return np.array(sorted(tris), dtype=np.int64)


class MediaPipePoseEstimator:
    """Offline :class:`~sym3d.protocols.PoseEstimator` built on MediaPipe 0.10.21's bundled models.

    Args:
        crop_size: side of the aligned crop (EG3D: 512).
        align: ``"upright"`` (default): EG3D's crop rotated so the face is level the way FFHQ's
            images are; the camera label carries only the small remaining roll.
            ``"eg3d"``: EG3D's in-the-wild recipe exactly (no rotation); the label carries the
            head's whole roll.
        padding: fill of crop pixels outside the photo: ``"fade"`` (default: the reflected
            photo, blurred and faded to its median colour away from the border, so no mirrored
            eye or cheek appears), ``"reflect"``, ``"zeros"`` (EG3D's black) or ``"replicate"``.
        flip_average: fit the mesh on the mirrored patch too and average (mirror-consistent
            estimates; about 15 ms more).
        refine: how many times to re-fit the mesh on a patch re-centred on the previous fit's
            landmarks (0 = fit once on the detector's box; each pass costs two mesh runs, about
            20-40 ms, and stops early once the patch no longer moves).
        min_face_size: refuse faces whose eye-to-mouth distance is below this many photo pixels
            (``FaceNotFoundError``); 0 disables.
        warn_face_size: warn (``QualityWarning``) and note when it is below this.
        max_yaw_degrees: warn and note when |yaw| exceeds this (pose and landmarks degrade).
        min_detection_confidence: MediaPipe detector threshold.
        detect_max_side: detection runs on a copy reduced to at most this many pixels.
        foreground: ``"segmentation"`` (MediaPipe selfie segmentation on the crop, union the face
            mask) or ``"hull"`` (a head-shaped hull grown from the face landmarks).
        region_padding: padding of the region boxes (normalised); a number for all regions, a
            mapping per region, or ``None`` for SPI's (:data:`SPI_REGION_PADDING`).
        fallback_detector: ``"auto"`` (dlib's HOG detector when nothing else finds a face and
            dlib is installed), ``"dlib"`` (require it) or ``"none"``.
    """

    name = "mediapipe"

    def __init__(
        self,
        *,
        crop_size: int = 512,
        align: Literal["upright", "eg3d"] = "upright",
        padding: Literal["fade", "reflect", "zeros", "replicate"] = "fade",
        flip_average: bool = True,
        refine: int = 2,
        min_face_size: float = 20.0,
        warn_face_size: float = 64.0,
        max_yaw_degrees: float = 60.0,
        min_detection_confidence: float = 0.5,
        detect_max_side: int = 1024,
        foreground: Literal["segmentation", "hull"] = "segmentation",
        region_padding: float | Mapping[str, float] | None = None,
        fallback_detector: Literal["auto", "dlib", "none"] = "auto",
    ) -> None:
        errors = []
        if not (isinstance(crop_size, int) and crop_size >= 64):
            errors.append(f"crop_size: expected an integer >= 64, got {crop_size!r}.")
        if align not in ("upright", "eg3d"):
            errors.append(f"align: expected 'upright' or 'eg3d', got {align!r}.")
        if padding not in ("fade", "reflect", "zeros", "replicate"):
            errors.append(
                f"padding: expected 'fade', 'reflect', 'zeros' or 'replicate', got {padding!r}."
            )
        if foreground not in ("segmentation", "hull"):
            errors.append(f"foreground: expected 'segmentation' or 'hull', got {foreground!r}.")
        if fallback_detector not in ("auto", "dlib", "none"):
            errors.append(
                f"fallback_detector: expected 'auto', 'dlib' or 'none', got {fallback_detector!r}."
            )
        if not 0.0 < float(min_detection_confidence) < 1.0:
            errors.append(
                f"min_detection_confidence: expected a value in (0, 1), got {min_detection_confidence!r}."
            )
        if not (isinstance(refine, int) and refine >= 0):
            errors.append(f"refine: expected a non-negative integer, got {refine!r}.")
        if int(detect_max_side) < 128:
            errors.append(f"detect_max_side: expected at least 128, got {detect_max_side!r}.")
        if float(min_face_size) < 0 or float(warn_face_size) < 0:
            errors.append("min_face_size, warn_face_size: expected non-negative pixel counts.")
        if errors:
            from sym3d.errors import ConfigError

            raise ConfigError(errors)
        self.crop_size = crop_size
        self.align = align
        self.padding = padding
        self.flip_average = bool(flip_average)
        self.refine = int(refine)
        self.min_face_size = float(min_face_size)
        self.warn_face_size = float(warn_face_size)
        self.max_yaw_degrees = float(max_yaw_degrees)
        self.min_detection_confidence = float(min_detection_confidence)
        self.detect_max_side = int(detect_max_side)
        self.foreground = foreground
        self.fallback_detector = fallback_detector
        pads = dict(SPI_REGION_PADDING)
        if isinstance(region_padding, Mapping):
            pads.update({k: float(v) for k, v in region_padding.items()})
        elif region_padding is not None:
            pads = {k: float(region_padding) for k in pads}
        self.region_padding = pads
        self._lock = threading.Lock()
        self._models: dict[str, Any] | None = None
        self._regions: dict[str, np.ndarray] = {}
        self._mirror = mirror_permutation(478)
        self._hog: Any | None = None
        if fallback_detector == "dlib":
            self._dlib_detector()  # fail early with a clear message

    # -- model management ----------------------------------------------------------------------

    def _ensure_models(self) -> dict[str, Any]:
        if self._models is not None:
            return self._models
        try:
            import mediapipe as mp
        except ImportError as exc:  # pragma: no cover - exercised without the extra
            raise MissingDependencyError(
                "the 'mediapipe' pose estimator", "faces", package="mediapipe==0.10.21"
            ) from exc
        solutions = getattr(mp, "solutions", None)
        if solutions is None or not hasattr(solutions, "face_mesh"):
            raise MissingDependencyError(
                f"the 'mediapipe' pose estimator (found mediapipe {getattr(mp, '__version__', '?')}, whose wheel no longer "
                "bundles the face models)",
                "faces",
                package="mediapipe==0.10.21",
            )
        from mediapipe.python.solutions import face_mesh_connections as conn

        conf = self.min_detection_confidence
        self._models = {
            "short": solutions.face_detection.FaceDetection(
                model_selection=0, min_detection_confidence=conf
            ),
            "full": solutions.face_detection.FaceDetection(
                model_selection=1, min_detection_confidence=conf
            ),
            "mesh": solutions.face_mesh.FaceMesh(
                static_image_mode=True,
                max_num_faces=1,
                refine_landmarks=True,
                min_detection_confidence=0.3,
            ),
        }
        if self.foreground == "segmentation":
            self._models["selfie"] = solutions.selfie_segmentation.SelfieSegmentation(
                model_selection=0
            )

        def points(*sets: Any) -> np.ndarray:
            return np.array(sorted({i for s in sets for e in s for i in e}), dtype=np.int64)

        self._regions = {
            "left_eye": points(conn.FACEMESH_LEFT_EYE),
            "right_eye": points(conn.FACEMESH_RIGHT_EYE),
            "mouth": points(conn.FACEMESH_LIPS),
            "nose": points(conn.FACEMESH_NOSE),
        }
        self._triangles = _triangles(conn.FACEMESH_TESSELATION)
        self._holes = [
            points(conn.FACEMESH_LEFT_EYE),
            points(conn.FACEMESH_RIGHT_EYE),
            points(conn.FACEMESH_LIPS),
        ]
        return self._models

    def _dlib_detector(self) -> Any | None:
        if self._hog is not None:
            return self._hog
        try:
            import dlib
        except ImportError as exc:
            if self.fallback_detector == "dlib":
                raise MissingDependencyError(
                    "fallback_detector='dlib'", "faces", package="dlib-bin"
                ) from exc
            return None
        self._hog = dlib.get_frontal_face_detector()
        return self._hog

    def close(self) -> None:
        """Release the MediaPipe graphs (they are re-created on the next call)."""
        with self._lock:
            for m in (self._models or {}).values():
                try:
                    m.close()
                except Exception:  # noqa: BLE001 - best effort on shutdown
                    pass
            self._models = None

    def __enter__(self) -> MediaPipePoseEstimator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MediaPipePoseEstimator(crop_size={self.crop_size}, align={self.align!r}, padding={self.padding!r})"

    # -- protocol --------------------------------------------------------------------------------

    def __call__(self, image: torch.Tensor) -> FaceObservation:
        """Estimate from ``image [1, 3, H, W]`` in ``[0, 1]`` (see :meth:`analyze`)."""
        return self._analyze(image, None, stacklevel=3).observation

    def analyze(self, image: torch.Tensor, *, source: str | None = None) -> FaceAnalysis:
        """Detect, align, estimate the camera and build masks for the largest face in ``image``.

        Args:
            image: ``[1, 3, H, W]`` in ``[0, 1]`` (``[1, 1, H, W]`` grayscale and ``[1, 4, H, W]``
                RGBA are accepted too).
            source: a name for messages (e.g. the file name).

        Raises:
            FaceNotFoundError: no face, no landmarks, or a face below ``min_face_size``.
        """
        return self._analyze(image, source, stacklevel=3)

    def _analyze(self, image: torch.Tensor, source: str | None, *, stacklevel: int) -> FaceAnalysis:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        photo = _as_image(image)
        photo_cpu = photo.cpu()
        _, _, h, w = photo.shape
        where = f"{source}: " if source else ""
        with self._lock:
            models = self._ensure_models()
            timings["prepare"] = time.perf_counter() - t0

            t = time.perf_counter()
            dets = self._detect(photo_cpu, models)
            timings["detect"] = time.perf_counter() - t
            if not dets:
                raise FaceNotFoundError(
                    f"{where}no face found in the {w}x{h} image.",
                    hint="use a photo with one clearly visible face (frontal to three-quarter view, not heavily "
                    "occluded), at least about 100 px tall.",
                )

            t = time.perf_counter()
            notes: list[str] = []
            fitted = None
            rejected = 0
            for det in dets[:3]:
                fitted = self._fit_mesh(photo_cpu, det, models)
                if fitted is not None:
                    break
                rejected += 1
            timings["landmarks"] = time.perf_counter() - t
            if fitted is None:
                big = dets[0].box
                if max(d.score for d in dets) < 0.7 or all(d.source != "mediapipe" for d in dets):
                    # Only weak or fallback detections: most likely not a face at all.
                    raise FaceNotFoundError(
                        f"{where}no face found in the {w}x{h} image.",
                        hint="use a photo with one clearly visible face (frontal to three-quarter view, not heavily "
                        "occluded), at least about 100 px tall.",
                    )
                raise FaceNotFoundError(
                    f"{where}a face was detected in the {w}x{h} image (largest box {big[2] - big[0]:.0f}x{big[3] - big[1]:.0f} px "
                    f"at x={big[0]:.0f}, y={big[1]:.0f}) but facial landmarks could not be fitted to it.",
                    hint="the face may be heavily occluded, blurred, or turned more than about 60 degrees; try a "
                    "clearer, more frontal photo.",
                )
            landmarks, det, mirror_gap = fitted
            if len(dets) > 1:
                b = det.box
                which = "the largest usable one" if rejected else "the largest"
                notes.append(
                    f"{len(dets)} faces found; used {which} ({b[2] - b[0]:.0f}x{b[3] - b[1]:.0f} px at "
                    f"x={b[0]:.0f}, y={b[1]:.0f})."
                )
            if rejected:
                notes.append(
                    f"{rejected} larger detection(s) were not usable faces (no landmarks) and were skipped."
                )
            if mirror_gap is not None:
                notes.append(
                    f"the mirrored landmark fit disagreed ({mirror_gap:.2f} eye distances); used the direct fit only."
                )
            if det.source != "mediapipe":
                notes.append(f"face found by the {det.source} detector.")

            t = time.perf_counter()
            result, pending = self._assemble(
                photo, photo_cpu, landmarks, det, len(dets), notes, where, models, timings
            )
        for msg in pending:
            warnings.warn(msg, QualityWarning, stacklevel=stacklevel)
        timings["total"] = time.perf_counter() - t0
        return attrs.evolve(result, timings=dict(timings, assemble=time.perf_counter() - t))

    # -- stages ----------------------------------------------------------------------------------

    def _detect(self, photo: torch.Tensor, models: dict[str, Any]) -> list[_Detection]:
        _, _, h, w = photo.shape
        ds = min(1.0, self.detect_max_side / max(h, w))
        dh, dw = max(1, round(h * ds)), max(1, round(w * ds))
        small = _to_uint8(resize(photo, (dh, dw)) if ds < 1.0 else photo)
        sx, sy = w / dw, h / dh

        def run(img: np.ndarray, ox: float, oy: float) -> list[_Detection]:
            out = []
            ih, iw = img.shape[:2]
            for key in ("short", "full"):
                res = models[key].process(img)
                for d in res.detections or []:
                    rb = d.location_data.relative_bounding_box
                    x0 = (ox + rb.xmin * iw) * sx
                    y0 = (oy + rb.ymin * ih) * sy
                    box = (x0, y0, x0 + rb.width * iw * sx, y0 + rb.height * ih * sy)
                    if box[2] - box[0] > 1 and box[3] - box[1] > 1:
                        out.append(_Detection(box, float(d.score[0]), "mediapipe"))
            return out

        dets = run(small, 0.0, 0.0)
        if not dets and min(dh, dw) >= 256:
            # Small faces in a large photo: overlapping 2x2 tiles, each seen at a larger scale.
            th, tw = int(dh * 0.6), int(dw * 0.6)
            for oy in (0, dh - th):
                for ox in (0, dw - tw):
                    dets += run(np.ascontiguousarray(small[oy : oy + th, ox : ox + tw]), ox, oy)
        if not dets and self.fallback_detector != "none":
            hog = self._dlib_detector()
            if hog is not None:
                up = 1 if max(dh, dw) < 800 else 0
                rects, scores, _ = hog.run(small, up, 0.0)
                for r, s in zip(rects, scores, strict=True):
                    box = (r.left() * sx, r.top() * sy, r.right() * sx, r.bottom() * sy)
                    dets.append(
                        _Detection(box, float(1.0 / (1.0 + math.exp(-2.0 * s))), "dlib HOG")
                    )
        merged = _merge(dets)
        return sorted(merged, key=lambda d: -d.area)

    def _mesh_once(self, patch: np.ndarray, models: dict[str, Any]) -> np.ndarray | None:
        res = models["mesh"].process(patch)
        if not res.multi_face_landmarks:
            return None
        lm = res.multi_face_landmarks[0].landmark
        n = patch.shape[0]
        return np.array([(p.x * n, p.y * n, p.z * n) for p in lm], dtype=np.float64)

    def _fit_patch(
        self, photo: torch.Tensor, cx: float, cy: float, side: float, models: dict[str, Any]
    ) -> tuple[np.ndarray, float | None] | None:
        """Mesh landmarks ``[478, 3]`` (photo pixels) fitted on one square patch, or ``None``."""
        try:
            patch, scale, px, py = _square_patch(photo, cx, cy, side, _MESH_PATCH)
        except ValueError:
            return None
        a = self._mesh_once(patch, models)
        if a is None:
            return None
        gap = None
        if self.flip_average:
            b = self._mesh_once(np.ascontiguousarray(patch[:, ::-1]), models)
            if b is not None and len(b) == len(a):
                b[:, 0] = _MESH_PATCH - b[:, 0]
                b = b[self._mirror[: len(b)]]
                eye = np.linalg.norm(a[263, :2] - a[33, :2]) + 1e-9
                d = float(np.mean(np.linalg.norm(a[:, :2] - b[:, :2], axis=1)) / eye)
                if d < 0.15:
                    a = 0.5 * (a + b)
                else:
                    gap = d
        pts = a.copy()
        pts[:, :2] = pts[:, :2] / scale + np.array([px, py])
        pts[:, 2] = pts[:, 2] / scale
        return pts, gap

    def _fit_mesh(
        self, photo: torch.Tensor, det: _Detection, models: dict[str, Any]
    ) -> tuple[np.ndarray, _Detection, float | None] | None:
        """Mesh landmarks for one detection, or ``None`` if it is not a usable face.

        The first fit uses a patch around the detection box; ``refine`` more fits each re-centre
        the patch on the previous landmarks, so the result hardly depends on the detector's box
        and, with the mirrored fits, the estimate of a mirrored photo converges to the mirror of
        the estimate (a fixed point of the re-centring).
        """
        x0, y0, x1, y1 = det.box
        bw, bh = x1 - x0, y1 - y0
        cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        for context in (_MESH_CONTEXT, 1.5, 3.0):
            fit = self._fit_patch(photo, cx, cy, max(bw, bh) * context, models)
            if fit is None:
                continue
            pts, gap = fit
            # The mesh must belong to this detection (not a neighbouring face in the patch).
            c = pts[:NUM_MESH_POINTS, :2].mean(axis=0)
            if not (
                x0 - 0.25 * bw <= c[0] <= x1 + 0.25 * bw
                and y0 - 0.25 * bh <= c[1] <= y1 + 0.25 * bh
            ):
                continue
            placement = None
            for _ in range(self.refine):
                lo, hi = (
                    pts[:NUM_MESH_POINTS, :2].min(axis=0),
                    pts[:NUM_MESH_POINTS, :2].max(axis=0),
                )
                new = (
                    float((lo[0] + hi[0]) / 2.0),
                    float((lo[1] + hi[1]) / 2.0),
                    float((hi - lo).max()) * _MESH_CONTEXT,
                )
                if (
                    placement is not None
                    and max(abs(a - b) for a, b in zip(new, placement, strict=True)) < 0.5
                ):
                    break  # converged: the same patch again
                again = self._fit_patch(photo, *new, models)
                if again is None:
                    break
                placement = new
                pts, gap = again
            return pts, det, gap
        return None

    def _five(self, lm: np.ndarray) -> np.ndarray:
        """``[5, D]``: right eye, left eye (corner midpoints), nose tip, right and left mouth corners."""
        return np.stack(
            [
                lm[list(RIGHT_EYE_CORNERS)].mean(axis=0),
                lm[list(LEFT_EYE_CORNERS)].mean(axis=0),
                lm[NOSE_TIP],
                lm[MOUTH_RIGHT],
                lm[MOUTH_LEFT],
            ]
        )

    def _assemble(
        self,
        photo: torch.Tensor,
        photo_cpu: torch.Tensor,
        landmarks: np.ndarray,
        det: _Detection,
        num_faces: int,
        notes: list[str],
        where: str,
        models: dict[str, Any],
        timings: dict[str, float],
    ) -> tuple[FaceAnalysis, list[str]]:
        _, _, h, w = photo.shape
        size = self.crop_size
        five3 = self._five(landmarks)
        five = five3[:, :2]
        face_size = float(np.linalg.norm((five[3] + five[4]) / 2 - (five[0] + five[1]) / 2))
        matrix, info = geo.eg3d_crop_matrix(five, size=size, upright=self.align == "upright")
        k = float(info["scale"])
        if face_size < self.min_face_size:
            raise FaceNotFoundError(
                f"{where}the face is too small: {face_size:.0f} px between the eyes and the mouth (minimum "
                f"{self.min_face_size:.0f} px); the {size}x{size} crop would be upsampled {k:.1f}x.",
                hint="use a higher-resolution photo in which the face is larger; min_face_size=0 tries anyway.",
            )
        pending: list[str] = []
        if face_size < self.warn_face_size:
            pending.append(
                f"{where}the face is small ({face_size:.0f} px between the eyes and the mouth, below "
                f"{self.warn_face_size:.0f} px): the {size}x{size} crop is upsampled {k:.1f}x from the photo; "
                "expect a blurry reconstruction."
            )

        mesh2d = landmarks[:NUM_MESH_POINTS, :2]
        cut = float(
            np.mean(
                (mesh2d[:, 0] < 0) | (mesh2d[:, 0] > w) | (mesh2d[:, 1] < 0) | (mesh2d[:, 1] > h)
            )
        )
        if cut > 0.05:
            pending.append(
                f"{where}the face is cut by the photo's border ({100 * cut:.0f}% of the landmarks lie outside it); "
                "the hidden part, the pose and the crop are guesses."
            )

        # Camera.
        t = time.perf_counter()
        mesh = landmarks[:NUM_MESH_POINTS]
        head = geo.head_rotation(mesh, self._mirror[:NUM_MESH_POINTS], five3)
        photo_cam = geo.camera_from_head_rotation(head)
        _, _, head_roll = (float(v) for v in yaw_pitch_roll(photo_cam[0]))
        crop_head = geo.rotate_in_image_plane(head, info["angle"])
        camera = geo.camera_from_head_rotation(crop_head)
        yaw, pitch, roll = (float(v) for v in yaw_pitch_roll(camera[0]))
        timings["camera"] = time.perf_counter() - t
        if abs(math.degrees(yaw)) > self.max_yaw_degrees:
            pending.append(
                f"{where}the head is turned {abs(math.degrees(yaw)):.0f} degrees (yaw); landmarks and the estimated "
                f"pose are unreliable beyond about {self.max_yaw_degrees:.0f} degrees."
            )

        # Crop.
        t = time.perf_counter()
        crop = geo.warp_crop(photo, matrix, size, padding=self.padding)
        outside = geo.outside_fraction(matrix, size, h, w)
        if outside > 0.005:
            fill = {
                "fade": "the photo's blurred border fading to its median colour",
                "reflect": "mirroring the photo",
                "zeros": "black",
                "replicate": "repeating the border",
            }[self.padding]
            notes.append(
                f"the crop extends beyond the photo ({100 * outside:.0f}% of the crop); filled by {fill}."
            )
        timings["crop"] = time.perf_counter() - t

        # Landmarks, masks and regions in the crop.
        t = time.perf_counter()
        lm_crop = geo.apply_matrix(matrix, landmarks[:, :2])
        polys = [lm_crop[tri] for tri in self._triangles] + [
            geo.convex_hull(lm_crop[idx]) for idx in self._holes
        ]
        grow = size / 256.0  # 2 px at 512
        face_mask = geo.fill_polygons(polys, size, grow=grow, device=photo.device)
        if self.foreground == "segmentation":
            seg = models["selfie"].process(_to_uint8(crop.cpu())).segmentation_mask
            fg = torch.from_numpy(np.array(seg, dtype=np.float32))[None, None].to(photo.device)
            fg = torch.maximum(fg.clamp(0.0, 1.0), face_mask)
        else:
            fg = self._hull_foreground(lm_crop, size, photo.device)
        regions = {
            name: geo.padded_box(lm_crop[idx], self.region_padding[name], size)
            for name, idx in self._regions.items()
        }
        timings["masks"] = time.perf_counter() - t

        for msg in pending:
            notes.append(msg[len(where) :] if where and msg.startswith(where) else msg)

        obs = FaceObservation(
            image=crop,
            camera=camera.to(photo.device),
            face_mask=face_mask,
            foreground_mask=fg,
            landmarks=torch.as_tensor(lm_crop, dtype=torch.float32, device=photo.device)[None],
            landmark_format=f"mediapipe{len(landmarks)}",
            regions=regions,
            confidence=float(min(1.0, max(0.0, det.score))),
            notes=tuple(notes),
        )
        analysis = FaceAnalysis(
            observation=obs,
            yaw=yaw,
            pitch=pitch,
            roll=roll,
            head_roll=head_roll,
            crop_angle=float(info["angle"]),
            crop_matrix=matrix,
            landmarks=landmarks,
            five_points=five,
            face_box=tuple(float(v) for v in det.box),
            num_faces=num_faces,
            face_size=face_size,
            upsampling=k,
        )
        return analysis, pending

    def _hull_foreground(
        self, lm_crop: np.ndarray, size: int, device: torch.device
    ) -> torch.Tensor:
        """Head-shaped fallback: the face hull grown sideways and upward to cover hair and ears."""
        pts = lm_crop[:NUM_MESH_POINTS]
        centre = pts.mean(axis=0)
        top = pts[:, 1].min()
        bottom = pts[:, 1].max()
        height = bottom - top
        grown = (pts - centre) * np.array([1.25, 1.1]) + centre
        crown = grown.copy()
        crown[:, 1] -= 0.35 * height  # the skull above the mesh's forehead edge
        return geo.convex_polygon_mask(np.concatenate([grown, crown]), size, device=device)
