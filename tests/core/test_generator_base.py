"""The render-input checks every built-in generator shares (GeneratorMixin)."""

from __future__ import annotations

import pytest
import torch

from sym3d.camera import look_at
from sym3d.errors import ShapeError
from sym3d.testing import TinyGenerator3D


@pytest.fixture(scope="module")
def tiny() -> TinyGenerator3D:
    return TinyGenerator3D()


def test_render_takes_ws_and_cameras_with_a_view_dimension(tiny) -> None:
    ws = tiny.mapping(torch.randn(2, tiny.z_dim), look_at(0.0)[None].expand(2, 25))
    cameras = look_at(torch.tensor([[-0.2, 0.0, 0.2]]).expand(2, 3))  # [2, 3, 25]
    assert tiny._check_render_inputs(ws, cameras) == (2, 3)
    assert tiny.render(ws, cameras).image.shape[:2] == (2, 3)


def test_render_refuses_cameras_without_a_view_dimension_with_a_hint(tiny) -> None:
    ws = tiny.mapping(torch.randn(1, tiny.z_dim), look_at(0.0)[None])
    with pytest.raises(ShapeError, match="add a view dimension"):
        tiny.render(ws, look_at(0.0)[None])  # [1, 25]


@pytest.mark.parametrize(
    ("ws_shape", "cameras_shape", "name"),
    [
        ((1, 4, 7), (1, 1, 25), "ws"),
        ((1, 4, 8), (2, 1, 25), "cameras"),
        ((1, 4, 8), (1, 1, 24), "cameras"),
    ],
)
def test_render_names_the_wrong_input(tiny, ws_shape, cameras_shape, name) -> None:
    with pytest.raises(ShapeError, match=name):
        tiny.render(torch.zeros(ws_shape), torch.zeros(cameras_shape))
