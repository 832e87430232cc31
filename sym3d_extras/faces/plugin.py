"""Entry module ``mediapipe``: the offline MediaPipe pose estimator; imports nothing heavy."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from sym3d.hookspecs import DoctorCheck, hookimpl


def _mediapipe(**options: Any) -> Any:
    from sym3d_extras.faces import build_pose_estimator

    return build_pose_estimator(**options)


@hookimpl
def register_pose_estimators(register) -> None:  # noqa: ANN001
    """The offline MediaPipe pose estimator (photo -> EG3D crop, camera, masks, regions)."""
    register(
        "mediapipe",
        _mediapipe,
        description="Offline MediaPipe face detection and landmarks -> EG3D crop, camera label, "
        "masks and eye/mouth regions.",
        requires=("mediapipe",),
        extra="faces",
    )


@hookimpl
def doctor_checks() -> list[DoctorCheck]:
    """MediaPipe's face landmark model (when mediapipe is installed)."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(list(spec.submodule_search_locations)[0])
    model = root / "modules" / "face_landmark" / "face_landmark.tflite"
    ok = model.exists()
    detail = str(model) if ok else "face_landmark.tflite missing"
    fix = "" if ok else "pip install 'mediapipe==0.10.21'"
    return [DoctorCheck("face landmark model", ok, detail, fix)]
