"""The built-in MediaPipe pose estimator passes the pose-estimator conformance suite."""

import warnings

from sym3d.testing.components import PoseOptions, check_pose_estimator

from .conftest import needs_faces

pytestmark = needs_faces


def test_mediapipe_passes_pose_conformance(estimator, astronaut):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the astronaut's face is small (QualityWarning)
        check_pose_estimator(estimator, PoseOptions(photo=astronaut))
