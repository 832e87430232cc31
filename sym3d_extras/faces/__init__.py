"""Offline face alignment and camera estimation for real photos (the ``faces`` extra).

Public API:

* :class:`MediaPipePoseEstimator` - the :class:`sym3d.protocols.PoseEstimator` (registry name
  ``"mediapipe"``): face detection, 478 mesh landmarks, EG3D's alignment crop, an EG3D camera
  label, face/foreground masks and facial-feature regions. :meth:`~MediaPipePoseEstimator.analyze`
  returns a :class:`FaceAnalysis` with the measurements behind the observation.
* :func:`build_pose_estimator` - the registry factory.
* :func:`observe_photo` - one call from a file (or tensor) to a :class:`~sym3d.protocols.FaceObservation`.

Importing this package is light: MediaPipe, OpenCV and dlib are imported when an estimator first
runs. See ``docs/faces.md``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Hashable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from sym3d.protocols import FaceObservation
    from sym3d_extras.faces.estimator import FaceAnalysis, MediaPipePoseEstimator

__all__ = [
    "FaceAnalysis",
    "MediaPipePoseEstimator",
    "SPI_REGION_PADDING",
    "build_pose_estimator",
    "observe_photo",
    "analyze_photo",
]

_CACHE: dict[tuple, Any] = {}
_CACHE_LOCK = threading.Lock()


def __getattr__(name: str) -> Any:
    if name in ("FaceAnalysis", "MediaPipePoseEstimator", "SPI_REGION_PADDING"):
        from sym3d_extras.faces import estimator

        return getattr(estimator, name)
    raise AttributeError(f"module 'sym3d_extras.faces' has no attribute {name!r}")


def build_pose_estimator(**options: Any) -> MediaPipePoseEstimator:
    """Registry factory of the ``"mediapipe"`` pose estimator (options: see :class:`MediaPipePoseEstimator`)."""
    from sym3d_extras.faces.estimator import MediaPipePoseEstimator

    return MediaPipePoseEstimator(**options)


def _shared_estimator(options: dict[str, Any]) -> MediaPipePoseEstimator:
    """One estimator per distinct option set, reused across calls (the models load once)."""
    try:
        key = tuple(
            sorted((k, v if isinstance(v, Hashable) else repr(v)) for k, v in options.items())
        )
    except TypeError:
        return build_pose_estimator(**options)
    with _CACHE_LOCK:
        est = _CACHE.get(key)
        if est is None:
            est = _CACHE[key] = build_pose_estimator(**options)
        return est


def analyze_photo(
    photo: str | os.PathLike | torch.Tensor,
    *,
    estimator: MediaPipePoseEstimator | None = None,
    **options: Any,
) -> FaceAnalysis:
    """Like :func:`observe_photo` but returns the full :class:`FaceAnalysis` (angles, crop transform, ...)."""
    import torch

    if estimator is not None and options:
        from sym3d.errors import UserInputError

        raise UserInputError("pass either an estimator or estimator options, not both.")
    est = estimator if estimator is not None else _shared_estimator(options)
    if isinstance(photo, torch.Tensor):
        return est.analyze(photo)
    from sym3d.image import load_image

    path = Path(photo)
    return est.analyze(load_image(path), source=str(path))


def observe_photo(
    photo: str | os.PathLike | torch.Tensor,
    *,
    estimator: MediaPipePoseEstimator | None = None,
    **options: Any,
) -> FaceObservation:
    """Aligned crop, camera, masks and regions of the largest face in a photo.

    Args:
        photo: an image file (any format :func:`sym3d.image.load_image` reads) or a tensor
            ``[1, 3, H, W]`` in ``[0, 1]``.
        estimator: an estimator to use; by default one shared estimator per option set.
        **options: :class:`MediaPipePoseEstimator` options (e.g. ``align="eg3d"``).

    Raises:
        sym3d.errors.ImageLoadError: the file cannot be read.
        sym3d.errors.FaceNotFoundError: no usable face (the message names the file).
        sym3d.errors.MissingDependencyError: the ``faces`` extra is not installed.
    """
    return analyze_photo(photo, estimator=estimator, **options).observation


def __dir__() -> list[str]:
    return sorted(__all__)
