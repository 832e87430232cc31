"""The symmetry-prior figure: what the mirror terms were given for a photo."""

from __future__ import annotations

import math

import imageio.v3 as iio
import pytest
import torch

from sym3d.app.export.prior import symmetry_prior_images, write_symmetry_prior_figure
from sym3d.camera import look_at, mirror_camera
from sym3d_extras.benchmarks.quality import condition_asymmetry
from sym3d_extras.synthetic import SymHeadsGenerator, SymHeadsScene

WORLD = SymHeadsGenerator()
CAM = look_at(math.radians(40.0), 0.0)[None]


def _images(condition: str):
    scene = SymHeadsScene(0, condition_asymmetry(condition), world=WORLD)
    r = scene.render(torch.cat([CAM, mirror_camera(CAM)]))
    out = symmetry_prior_images(r.image[:1], r.depth_z[:1], CAM, r.face_mask[:1])
    return out, r


def _err(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    m = (mask > 0.5).expand_as(a)
    return float((a - b).abs()[m].mean())


def test_side_light_relit_mirror_is_closer_to_the_true_mirrored_view(tmp_path):
    out, r = _images("detail+sidelight")
    truth, face = r.image[1], r.face_mask[1]
    assert out.note.startswith("relit: light asymmetry")
    # measured on this head: flipped 0.148, relit 0.050 mean absolute error inside the face
    assert _err(out.relit, truth, face) < 0.7 * _err(out.flipped, truth, face)
    assert torch.equal(out.photo, r.image[0])
    # the estimated shading is brighter on the lit side (the light turns toward world +x,
    # which a camera at +40 degrees sees on the image's right half)
    grey = out.shading.mean(0)
    w = grey.shape[-1]
    inside = r.face_mask[0, 0] > 0.5
    right = grey[:, w // 2 :][inside[:, w // 2 :]].mean()
    left = grey[:, : w // 2][inside[:, : w // 2]].mean()
    assert float(right) > float(left)
    path = write_symmetry_prior_figure(out, tmp_path / "prior.png")
    img = iio.imread(path)
    assert img.ndim == 3 and img.shape[1] > 3 * img.shape[0] // 2  # four tiles side by side


@pytest.mark.parametrize("condition", ["detail", "detail+toplight"])
def test_symmetric_light_gives_the_plain_mirror(condition):
    out, _ = _images(condition)
    assert torch.equal(out.relit, out.flipped)
    assert "plain mirror" in out.note
