"""Fixtures of the face-pipeline tests: photos that ship in packages (offline) and one shared estimator."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
import torch

HAS_MEDIAPIPE = importlib.util.find_spec("mediapipe") is not None
HAS_SKIMAGE = importlib.util.find_spec("skimage") is not None

needs_faces = [
    pytest.mark.faces,
    pytest.mark.skipif(
        not HAS_MEDIAPIPE, reason="needs the `faces` extra (mediapipe==0.10.21 is not installed)"
    ),
    pytest.mark.skipif(not HAS_SKIMAGE, reason="needs scikit-image for its bundled test photos"),
]
"""Marks for tests that run the MediaPipe models (``pytestmark = needs_faces``)."""


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """``uint8 [H, W]`` or ``[H, W, 3]`` -> ``[1, 3, H, W]`` float in [0, 1]."""
    a = np.array(array)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    return (
        torch.from_numpy(a[..., :3].astype(np.float32) / 255.0).permute(2, 0, 1)[None].contiguous()
    )


@pytest.fixture(scope="session")
def astronaut() -> torch.Tensor:
    """Eileen Collins, NASA portrait (public domain), 512x512, from ``skimage.data``."""
    from skimage import data

    return to_tensor(data.astronaut())


@pytest.fixture(scope="session")
def estimator():
    """One estimator for the whole session (its MediaPipe graphs load once)."""
    from sym3d_extras.faces import build_pose_estimator

    est = build_pose_estimator()
    yield est
    est.close()


@pytest.fixture(scope="session")
def astronaut_analysis(estimator, astronaut):
    """The analysis of the astronaut photo (its face is small: the QualityWarning is expected)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return estimator.analyze(astronaut)
