from __future__ import annotations

import numpy as np
import pytest
import torch

from sym3d.app.export.depth import depth_to_image, load_depth, save_depth, save_depth_image
from sym3d.errors import ShapeError, UserInputError


def _depth() -> tuple[torch.Tensor, torch.Tensor]:
    """A ramp from 2.4 (left) to 2.9 (right) with a background border."""
    d = torch.linspace(2.4, 2.9, 40).expand(30, 40).clone()
    mask = torch.zeros(30, 40)
    mask[5:25, 5:35] = 1
    return d, mask


def test_depth_image_colours_and_background():
    d, mask = _depth()
    img = depth_to_image(d[None], mask[None], clip_percentile=0)
    assert img.shape == (3, 30, 40)
    assert 0 <= float(img.min()) and float(img.max()) <= 1
    torch.testing.assert_close(img[:, 0, 0], torch.full((3,), 0.5))  # neutral background
    near, far = img[:, 15, 5], img[:, 15, 34]
    assert near[0] > near[2]  # turbo: near is red
    assert far[2] > far[0]  # far is blue


def test_depth_image_shapes_and_default_mask():
    d, _ = _depth()
    d[:, :3] = float("inf")  # no hit
    a = depth_to_image(d)
    b = depth_to_image(d[None, None])
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a[:, 0, 0], torch.full((3,), 0.5))
    with pytest.raises(ShapeError):
        depth_to_image(torch.rand(2, 8, 8))
    with pytest.raises(ShapeError):
        depth_to_image(torch.rand(8, 8), torch.ones(4, 4))
    with pytest.raises(UserInputError, match="cmap"):
        depth_to_image(torch.rand(8, 8), cmap="no-such-map")


def test_fixed_range_and_empty_mask():
    d, _ = _depth()
    img = depth_to_image(d, near=2.0, far=3.0, cmap="gray")
    # gray: near is white; 2.4 -> 0.6
    assert abs(float(img[0, 0, 0]) - 0.6) < 0.01
    empty = depth_to_image(d, torch.zeros_like(d))
    torch.testing.assert_close(empty, torch.full_like(empty, 0.5))


def test_save_depth_image_png(tmp_path):
    import imageio.v3 as iio

    d, mask = _depth()
    p = save_depth_image(d, tmp_path / "depth.png", mask)
    arr = iio.imread(p)
    assert arr.shape == (30, 40, 3) and arr.dtype == np.uint8


def test_raw_depth_npy_round_trip(tmp_path):
    d, mask = _depth()
    p = save_depth(d, tmp_path / "depth.npy", mask=mask, kind="z")
    arr, meta = load_depth(p)
    assert meta == {} and arr.dtype == np.float32 and arr.shape == (30, 40)
    assert np.isnan(arr[0, 0]) and np.isnan(arr).sum() == 30 * 40 - 20 * 30
    np.testing.assert_allclose(arr[mask.numpy() > 0], d[mask > 0].numpy(), rtol=0, atol=0)


def test_raw_depth_png16_round_trip(tmp_path):
    from PIL import Image

    d, mask = _depth()
    p = save_depth(d[None, None], tmp_path / "depth16.png", mask=mask, kind="ray")
    with Image.open(p) as img:
        assert img.mode.startswith("I;16")
    arr, meta = load_depth(p)
    assert meta["kind"] == "ray" and meta["units"] == "world"
    fg = mask.numpy() > 0
    assert np.isnan(arr[~fg]).all()
    np.testing.assert_allclose(arr[fg], d.numpy()[fg], atol=1e-5)


def test_raw_depth_bad_arguments(tmp_path):
    d, _ = _depth()
    with pytest.raises(UserInputError, match="npy or .png"):
        save_depth(d, tmp_path / "depth.exr")
    with pytest.raises(UserInputError, match="kind"):
        save_depth(d, tmp_path / "depth.npy", kind="disparity")  # type: ignore[arg-type]
    save_depth_image(d, tmp_path / "colour.png")
    with pytest.raises(UserInputError, match="not a sym3d"):
        load_depth(tmp_path / "colour.png")
