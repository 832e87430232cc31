"""The one resize (``sym3d.resize``) and the modules that use it."""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

from sym3d.resize import resize


def _rand(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(0))


def test_same_size_is_the_input() -> None:
    x = _rand(1, 3, 16, 12)
    assert resize(x, (16, 12)) is x
    y = _rand(1, 1, 8, 8)
    assert resize(y, 8) is y


def test_halving_is_the_2x2_mean() -> None:
    x = _rand(2, 3, 16, 20)
    want = x.reshape(2, 3, 8, 2, 10, 2).mean((3, 5))
    torch.testing.assert_close(resize(x, (8, 10)), want, rtol=1e-6, atol=1e-6)


def test_shrinking_does_not_alias() -> None:
    """A 1-pixel checkerboard shrunk by a non-integer factor averages to about grey."""
    i = torch.arange(64)
    board = ((i[:, None] + i[None, :]) % 2).float()[None, None]
    out = resize(board, 21)
    assert out.shape == (1, 1, 21, 21)
    assert float((out - 0.5).abs().max()) <= 1.0 / 9.0 + 1e-6  # windows of 3 or 4 pixels a side
    aliased = F.interpolate(board, size=(21, 21), mode="bilinear", align_corners=False)
    assert float((aliased - 0.5).abs().max()) > 0.4  # what plain bilinear sampling gives


def test_enlarging_is_bilinear() -> None:
    x = _rand(1, 2, 5, 7)
    want = F.interpolate(x, size=(11, 13), mode="bilinear", align_corners=False)
    torch.testing.assert_close(resize(x, (11, 13)), want, rtol=0, atol=0)


def test_each_axis_on_its_own() -> None:
    """Taller and narrower: box average along the width, bilinear along the height."""
    x = _rand(1, 1, 6, 8)
    got = resize(x, (9, 4))
    pooled = x.reshape(1, 1, 6, 4, 2).mean(-1)  # [1, 1, 6, 4]
    want = F.interpolate(pooled, size=(9, 4), mode="bilinear", align_corners=False)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_gradient_flows() -> None:
    x = _rand(1, 3, 10, 10).requires_grad_(True)
    resize(x, (7, 13)).sum().backward()
    assert x.grad is not None and bool((x.grad > 0).all())


@pytest.mark.parametrize(
    "module",
    [
        "sym3d.lighting",
        "sym3d.warp",
        "sym3d.engine.inputs",
        "sym3d.terms.losses",
        "sym3d_extras.faces.estimator",
    ],
)
def test_callers_use_the_one_resize(module: str) -> None:
    mod = importlib.import_module(module)
    assert mod.resize is resize


def test_loss_resize_checks_both_sides() -> None:
    """The perceptual-loss resize used to compare only the width: a 48x32 image stayed 48x32."""
    from sym3d.terms.losses import _resize

    x = _rand(1, 3, 48, 32)
    assert _resize(x, 32).shape == (1, 3, 32, 32)
    assert _resize(None, 32) is None and _resize(x, 0) is x
