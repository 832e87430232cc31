from __future__ import annotations

import math

import pytest
import torch

from sym3d.app.export.views import novel_view_grid, render_views, yaw_labels
from sym3d.camera import look_at
from sym3d.errors import RangeError, ShapeError, UserInputError


def test_render_views_chunks_equal_one_call(tiny, tiny_ws):
    cams = look_at(torch.linspace(-0.6, 0.6, 5), 0.1)
    one = render_views(tiny, tiny_ws, cams, batch=100)
    chunked = render_views(tiny, tiny_ws, cams, batch=2)
    assert one.image.shape == (1, 5, 3, 32, 32)
    assert chunked.depth.shape == (1, 5, 1, 32, 32)
    for name in ("image", "image_raw", "depth", "depth_z", "opacity"):
        torch.testing.assert_close(getattr(chunked, name), getattr(one, name))
    assert not chunked.image.requires_grad


def test_render_views_calls_render_once_per_chunk(tiny, tiny_ws, monkeypatch):
    calls = []
    real = type(tiny).render

    def spy(self, ws, cameras, **kw):
        calls.append(cameras.shape[1])
        assert not torch.is_grad_enabled()
        return real(self, ws, cameras, **kw)

    monkeypatch.setattr(type(tiny), "render", spy)
    progress = []
    render_views(
        tiny,
        tiny_ws,
        look_at(torch.zeros(7), 0.0),
        batch=3,
        progress=lambda d, t: progress.append((d, t)),
    )
    assert calls == [3, 3, 1]
    assert progress == [(3, 7), (6, 7), (7, 7)]


def test_render_views_per_latent_cameras(tiny, tiny_ws):
    ws = tiny_ws.expand(2, -1, -1)
    cams = look_at(torch.tensor([[0.0, 0.3], [0.1, -0.2]]), 0.0)  # [2, 2, 25]
    out = render_views(tiny, ws, cams, batch=1)
    assert out.image.shape == (2, 2, 3, 32, 32)


def test_render_views_bad_input(tiny, tiny_ws):
    cams = look_at(torch.zeros(2), 0.0)
    with pytest.raises(UserInputError, match="batch"):
        render_views(tiny, tiny_ws, cams, batch=0)
    with pytest.raises(ShapeError):
        render_views(tiny, tiny_ws, cams[:, :24])
    with pytest.raises(ShapeError):
        render_views(tiny, tiny_ws[:, :2], cams)


def test_grid_shape_and_labels():
    imgs = torch.rand(5, 3, 32, 40) * 0.2  # dark images on a white background
    grid = novel_view_grid(imgs, [f"view {i}" for i in range(5)], ncols=3, padding=4)
    scale = 4  # 32 px images are enlarged to >= 128 px
    h, w = 32 * scale, 40 * scale
    assert grid.shape[0] == 3 and grid.shape[2] == 3 * w + 4 * 4
    strip = grid.shape[1] - 2 * h - 3 * 4
    assert strip > 0 and strip % 2 == 0
    assert 0.0 <= float(grid.min()) and float(grid.max()) <= 1.0
    # the label strip under the first image has ink in it
    label_area = grid[:, 4 + h : 4 + h + strip // 2, 4 : 4 + w]
    assert float(label_area.min()) < 0.5


def test_grid_native_size_without_labels():
    imgs = torch.rand(4, 3, 16, 16)
    grid = novel_view_grid(imgs, None, ncols=2, padding=2, min_size=0)
    assert grid.shape == (3, 2 * 16 + 3 * 2, 2 * 16 + 3 * 2)
    torch.testing.assert_close(grid[:, 2:18, 2:18], imgs[0])


def test_grid_long_labels_fit():
    grid = novel_view_grid(
        torch.rand(2, 3, 32, 32), ["a very long label that cannot fit " * 3, "b"], ncols=2
    )
    assert grid.shape[-1] == 2 * 128 + 3 * 4


def test_grid_bad_input():
    with pytest.raises(UserInputError, match="labels"):
        novel_view_grid(torch.rand(3, 3, 8, 8), ["a", "b"])
    with pytest.raises(RangeError):
        novel_view_grid(torch.rand(2, 3, 8, 8) * 2 - 1, None)
    with pytest.raises(ShapeError):
        novel_view_grid(torch.rand(3, 8, 8), None)
    with pytest.raises(UserInputError, match="ncols"):
        novel_view_grid(torch.rand(2, 3, 8, 8), None, ncols=0)


def test_yaw_labels():
    cams = look_at(torch.tensor([-0.8, 0.0, 0.5]), 0.0, orbit_center=None)
    assert yaw_labels(cams) == [
        f"yaw {math.degrees(-0.8):+.0f}°",
        "yaw 0°",
        f"yaw {math.degrees(0.5):+.0f}°",
    ]
    assert yaw_labels(look_at(torch.tensor([0.3]), 0.2, orbit_center=None), with_pitch=True) == [
        "yaw +17° pitch +11°"
    ]
