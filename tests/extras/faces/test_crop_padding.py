"""Crops that reach beyond the photo: the ``"fade"`` fill adds no mirrored features.

A synthetic portrait (skin-coloured face with two dark eyes and a mouth) whose crop lies 40%
beyond the photo's left edge. ``"reflect"`` puts a second copy of the left eye into the fill;
``"fade"`` blurs the reflection and fades it to the photo's median colour, and leaves every
pixel whose source is inside the photo as it was.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sym3d_extras.faces import geometry as geo

W, H = 160, 200  # photo
SIZE = 256  # crop side
SCALE = SIZE / 200  # the crop covers photo x in [-80, 120], y in [0, 200]
SKIN = torch.tensor([0.80, 0.62, 0.52])
EYE = (45.0, 80.0)  # the left eye; its mirror image across x = 0 is at x = -45
EYE_R = 9.0


def _portrait(eye_x: float = EYE[0]) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    img = SKIN[:, None, None] * (1 - 0.1 * yy / H)  # slight shading
    img = img.expand(3, H, W).clone()
    for cx in (eye_x, 115.0):
        eye = (xx - cx) ** 2 + (yy - EYE[1]) ** 2 < EYE_R**2
        img[:, eye] = 0.08
    mouth = ((xx - 80).abs() < 25) & ((yy - 150).abs() < 4)
    img[:, mouth] = torch.tensor([0.55, 0.2, 0.2])[:, None]
    return img[None]


def _matrix() -> np.ndarray:
    return np.array([[SCALE, 0.0, 80 * SCALE], [0.0, SCALE, 0.0], [0.0, 0.0, 1.0]])


def _crop_px(x: float, y: float) -> tuple[int, int]:
    return round((x + 80) * SCALE), round(y * SCALE)


@pytest.fixture(scope="module")
def crops() -> dict[str, torch.Tensor]:
    photo = _portrait()
    return {
        mode: geo.warp_crop(photo, _matrix(), SIZE, padding=mode) for mode in ("reflect", "fade")
    }


def _patch(img: torch.Tensor, x: float, y: float, r: int) -> torch.Tensor:
    cx, cy = _crop_px(x, y)
    return img[0, :, cy - r : cy + r + 1, cx - r : cx + r + 1]


def test_the_crop_is_40_percent_outside() -> None:
    assert geo.outside_fraction(_matrix(), SIZE, H, W) == pytest.approx(0.4, abs=0.01)


def _contrast(patch: torch.Tensor) -> float:
    """Largest per-channel range of a ``[C, h, w]`` patch."""
    return (patch.amax(dim=(1, 2)) - patch.amin(dim=(1, 2))).max().item()


@pytest.mark.parametrize("eye_x", [EYE[0], 30.0])  # its mirror image 58 and 38 crop px outside
def test_reflect_duplicates_the_eye_and_fade_does_not(eye_x: float) -> None:
    photo = _portrait(eye_x)
    crops = {
        mode: geo.warp_crop(photo, _matrix(), SIZE, padding=mode) for mode in ("reflect", "fade")
    }
    r = round(1.5 * EYE_R * SCALE)
    real = _patch(crops["reflect"], eye_x, EYE[1], r)
    mirrored_reflect = _patch(crops["reflect"], -eye_x, EYE[1], r)
    mirrored_fade = _patch(crops["fade"], -eye_x, EYE[1], r)
    assert _contrast(real) > 0.6  # a high-contrast feature
    # The old fill has a second eye as strong as the real one (the control: the measure sees it) ...
    assert _contrast(mirrored_reflect) > 0.9 * _contrast(real)
    flat_ref = (mirrored_reflect - mirrored_reflect.mean()).flatten()
    flat_real = (real.flip(-1) - real.flip(-1).mean()).flatten()
    assert torch.corrcoef(torch.stack([flat_ref, flat_real]))[0, 1] > 0.9
    # ... the new one keeps less than 5% of its contrast.
    assert _contrast(mirrored_fade) < 0.05 * _contrast(real)


def test_fade_fill_is_smooth_and_ends_at_the_median(crops) -> None:
    fade = crops["fade"][0]
    inside_x = round(80 * SCALE)  # crop column of photo x = 0
    fill = fade[:, :, : inside_x - 2]
    # Smooth: neighbouring pixels of the fill differ by little (the photo's eyes are edges of ~0.7).
    assert fill.diff(dim=-1).abs().max() < 0.05 and fill.diff(dim=-2).abs().max() < 0.05
    far = fade[:, :, : inside_x - round(geo.FADE_MEDIAN_RAMP * SIZE) - 1]
    # One flat colour: the median of the photo under the crop (x < 126 with the warp's margin).
    median = _portrait()[..., :126].flatten(2).median(dim=-1).values[0]
    torch.testing.assert_close(far, median[:, None, None].expand_as(far), atol=1e-6, rtol=0)


def test_pixels_from_inside_the_photo_are_untouched(crops) -> None:
    inside_x = round(80 * SCALE) + 1  # first crop column whose source is inside (x >= 0)
    assert torch.equal(crops["fade"][..., inside_x:], crops["reflect"][..., inside_x:])
    # A crop entirely inside the photo is the same in every mode.
    m = np.array([[2.0, 0.0, -20.0], [0.0, 2.0, -40.0], [0.0, 0.0, 1.0]])
    photo = _portrait()
    inside = geo.warp_crop(photo, m, 128, padding="fade")
    assert geo.outside_fraction(m, 128, H, W) == 0.0
    assert torch.equal(inside, geo.warp_crop(photo, m, 128, padding="reflect"))


def test_unknown_padding_is_refused() -> None:
    with pytest.raises(ValueError, match="fade"):
        geo.warp_crop(_portrait(), _matrix(), SIZE, padding="mirror")
