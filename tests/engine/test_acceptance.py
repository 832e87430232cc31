"""Acceptance: with ground truth, SPI's error on the unseen side is lower than PTI's.

The truth is the tiny analytic generator with symmetric residual detail its latent cannot
express, seen only from yaw +0.6 rad. Both methods run the same engine with the same steps,
learning rates and tunable capacity; only the priors differ (the presets). Measured on the
unseen side (yaw -0.6 and -0.3 rad).
"""

import torch

import sym3d
from sym3d.camera import look_at
from sym3d.image import from_model_range
from sym3d.testing import TinyGenerator3D

from .conftest import FAST, make_truth


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * torch.log10((a - b).square().mean()))


def test_spi_beats_pti_on_the_unseen_side():
    gen, ws = make_truth(seed=5)
    cam = look_at(0.6, 0.0)[None]
    unseen = look_at(torch.tensor([-0.6, -0.3]), 0.0)[None]
    with torch.no_grad():
        photo = from_model_range(gen.render(ws, cam[:, None]).image[:, 0]).clamp(0, 1)
        truth = from_model_range(gen.render(ws, unseen).image)
    scores = {}
    for preset in ("pti", "spi"):
        r = sym3d.invert(
            photo,
            cam,
            generator=TinyGenerator3D(),
            preset=preset,
            overrides=[*FAST, "latent.steps=40", "tune.steps=40"],
        )
        out = from_model_range(r.render(r.apply(TinyGenerator3D()), unseen).image)
        scores[preset] = [_psnr(out[0, i], truth[0, i]) for i in range(2)]
    # Measured (seed 5, one and two threads): PTI 26.53 / 24.76 dB, SPI 27.28 / 25.87 (27.58 / 26.14
    # with the anchor's occlusion test at the projection only, 29.05 / 27.41 without the anchor,
    # which here holds some of what stage 2's mirror regions would teach).
    # Require a clear margin on both views, with room for other CPUs' float32 rounding.
    for v in range(2):
        assert scores["spi"][v] > scores["pti"][v] + 0.5, scores
