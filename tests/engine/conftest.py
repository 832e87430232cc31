"""Shared pieces of the engine tests: a tiny ground-truth world and fast settings."""

from __future__ import annotations

import pytest
import torch

from sym3d.camera import look_at
from sym3d.image import from_model_range
from sym3d.testing import TinyGenerator3D

# Fast settings for the tiny generator: MSE as the perceptual loss (no weights needed), the
# weight-free filter-bank features for the contextual loss, and loss weights rescaled to the
# MSE's magnitude (SPI's weights are tuned for LPIPS + VGG features).
FAST = [
    "perceptual=mse",
    "perceptual_resize=0",
    "contextual_features=filterbank",
    "latent.lr=0.05",
    "tune.lr=0.02",
    "tune.early_stop=0",
    "tune.aux_every=2",
    "tune.num_views=2",
    "tune.terms.mirror_regions.crop_size=32",
    "tune.terms.mirror_regions.weight=0.0002",
]


def make_truth(seed: int = 5) -> tuple[TinyGenerator3D, torch.Tensor]:
    """A tiny head with symmetric detail its latent cannot express (non-zero residual planes)."""
    truth = TinyGenerator3D()
    with torch.no_grad():
        ws = truth.mapping(
            torch.randn(1, 8, generator=torch.Generator().manual_seed(seed)),
            look_at(0.0, 0.0)[None],
        )
        planes = torch.randn(3, 4, 16, 16, generator=torch.Generator().manual_seed(seed + 1)) * 0.6
        planes[0] = 0.5 * (planes[0] + planes[0].flip(-1))  # xy plane symmetric in x
        planes[1] = 0.5 * (planes[1] + planes[1].flip(-1))  # xz plane symmetric in x
        planes[:, 0] *= 0.3
        truth.planes.copy_(planes)
    return truth, ws


@pytest.fixture(scope="session")
def truth():
    return make_truth()


@pytest.fixture(scope="session")
def side_view(truth):
    """The truth seen from yaw 0.6 rad: (image [1,3,32,32] in [0,1], camera [1,25])."""
    gen, ws = truth
    cam = look_at(0.6, 0.0)[None]
    with torch.no_grad():
        img = from_model_range(gen.render(ws, cam[:, None]).image[:, 0]).clamp(0, 1)
    return img, cam
