"""The reference ops against naive formulas written here, plus gradchecks and the impl dispatch."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from sym3d.errors import ConfigError, ShapeError, UserInputError
from sym3d_eg3d import ops
from sym3d_eg3d.ops import reference as ref

SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805


def _sigmoid(x: torch.Tensor) -> torch.Tensor:
    return 1 / (1 + torch.exp(-x))


NAIVE_ACTS = {
    "linear": (lambda x, a: x, 1.0),
    "relu": (lambda x, a: torch.where(x > 0, x, torch.zeros_like(x)), math.sqrt(2)),
    "lrelu": (lambda x, a: torch.where(x >= 0, x, a * x), math.sqrt(2)),
    "tanh": (lambda x, a: (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x)), 1.0),
    "sigmoid": (lambda x, a: _sigmoid(x), 1.0),
    "elu": (lambda x, a: torch.where(x > 0, x, torch.exp(x) - 1), 1.0),
    "selu": (lambda x, a: SELU_SCALE * torch.where(x > 0, x, SELU_ALPHA * (torch.exp(x) - 1)), 1.0),
    "softplus": (lambda x, a: torch.log1p(torch.exp(x)), 1.0),
    "swish": (lambda x, a: x * _sigmoid(x), math.sqrt(2)),
}


# ---------------------------------------------------------------------------------------------
# bias_act
# ---------------------------------------------------------------------------------------------


class TestBiasAct:
    def test_table_is_complete_and_immutable(self) -> None:
        assert set(ref.ACTIVATIONS) == set(NAIVE_ACTS)
        assert ref.ACTIVATIONS["lrelu"].default_alpha == pytest.approx(0.2)
        for name, (_, gain) in NAIVE_ACTS.items():
            assert ref.ACTIVATIONS[name].default_gain == pytest.approx(gain)
        assert sorted(s.cuda_index for s in ref.ACTIVATIONS.values()) == list(range(1, 10))
        with pytest.raises(TypeError):
            ref.ACTIVATIONS["new"] = ref.ACTIVATIONS["relu"]  # type: ignore[index]
        with pytest.raises(dataclasses.FrozenInstanceError):
            ref.ACTIVATIONS["relu"].default_gain = 1.0  # type: ignore[misc]

    @pytest.mark.parametrize("act", list(NAIVE_ACTS))
    def test_defaults_match_naive_formula(self, act: str) -> None:
        x = torch.randn(2, 5, 3, 4, dtype=torch.float64) * 3
        b = torch.randn(5, dtype=torch.float64)
        func, gain = NAIVE_ACTS[act]
        expected = func(x + b.reshape(1, 5, 1, 1), 0.2) * gain
        torch.testing.assert_close(ref.bias_act(x, b, act=act), expected, rtol=1e-12, atol=1e-12)

    @pytest.mark.parametrize("act", ["lrelu", "tanh", "swish"])
    def test_alpha_gain_clamp_and_dim(self, act: str) -> None:
        x = torch.randn(3, 4, 6, dtype=torch.float64) * 4
        b = torch.randn(6, dtype=torch.float64)
        func, _ = NAIVE_ACTS[act]
        expected = (func(x + b.reshape(1, 1, 6), 0.3) * 2.5).clamp(-1.5, 1.5)
        got = ref.bias_act(x, b, dim=2, act=act, alpha=0.3, gain=2.5, clamp=1.5)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)

    def test_no_bias_keeps_dtype(self) -> None:
        x = torch.randn(4, 7)
        y = ref.bias_act(x, None, act="lrelu")
        assert y.dtype == torch.float32 and y.shape == x.shape
        torch.testing.assert_close(y, torch.nn.functional.leaky_relu(x, 0.2) * math.sqrt(2))

    def test_errors(self) -> None:
        x = torch.randn(2, 3)
        with pytest.raises(ConfigError, match="lrelu"):
            ref.bias_act(x, act="gelu")
        with pytest.raises(ShapeError):
            ref.bias_act(x, torch.zeros(4))
        with pytest.raises(ShapeError):
            ref.bias_act(x, torch.zeros(3, 1))
        with pytest.raises(ConfigError):
            ref.bias_act(x, clamp=-1)

    @pytest.mark.parametrize("act", list(NAIVE_ACTS))
    def test_gradcheck(self, act: str) -> None:
        # Values away from the kinks of relu/lrelu/clamp so finite differences are valid.
        signs = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
        x = (torch.rand(2, 3, 4, dtype=torch.float64) + 0.1) * signs
        b = torch.randn(3, dtype=torch.float64) * 0.01
        x.requires_grad_(True)
        b.requires_grad_(True)
        assert torch.autograd.gradcheck(
            lambda x, b: ref.bias_act(x, b, act=act, clamp=10.0), (x, b), fast_mode=True
        )
        if ref.ACTIVATIONS[act].has_second_grad:
            assert torch.autograd.gradgradcheck(
                lambda x, b: ref.bias_act(x, b, act=act), (x, b), fast_mode=True
            )


# ---------------------------------------------------------------------------------------------
# upfirdn2d
# ---------------------------------------------------------------------------------------------


def naive_upfirdn2d(x, taps, up, down, pad, flip_filter, gain):
    """Direct definition with loops: zero insertion, pad/crop, correlation with the (flipped) filter, decimation."""
    x = x.numpy()
    f = np.asarray(taps, dtype=np.float64)
    if f.ndim == 1:
        f = np.outer(f, f)
    if not flip_filter:
        f = f[::-1, ::-1]
    f = f * gain
    (ux, uy), (dx, dy), (x0, x1, y0, y1) = up, down, pad
    n, c, h, w = x.shape
    up_img = np.zeros((n, c, h * uy, w * ux))
    up_img[:, :, ::uy, ::ux] = x
    ph, pw = h * uy + y0 + y1, w * ux + x0 + x1
    padded = np.zeros((n, c, ph, pw))
    for a in range(ph):
        for b in range(pw):
            src_a, src_b = a - y0, b - x0
            if 0 <= src_a < h * uy and 0 <= src_b < w * ux:
                padded[:, :, a, b] = up_img[:, :, src_a, src_b]
    fh, fw = f.shape
    out = np.zeros((n, c, ph - fh + 1, pw - fw + 1))
    for a in range(out.shape[2]):
        for b in range(out.shape[3]):
            out[:, :, a, b] = (padded[:, :, a : a + fh, b : b + fw] * f).sum(axis=(2, 3))
    return torch.from_numpy(out[:, :, ::dy, ::dx].copy())


UPFIRDN_CASES = [
    # taps/kernel, up, down, padding, flip_filter, gain
    ([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0], [0.25, 0.0, 1.0]], 1, 1, 0, False, 1.0),
    ([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0], [0.25, 0.0, 1.0]], 2, 1, (2, 1, 2, 1), False, 4.0),
    (
        [[1.0, 2.0, 0.5, -0.5], [0.0, -1.0, 3.0, 2.0], [0.25, 0.0, 1.0, 1.0]],
        (2, 1),
        (1, 2),
        (1, 2, 0, 3),
        True,
        3.0,
    ),
    ([[1.0, 3.0], [3.0, 1.0]], 1, 2, -1, False, 1.0),
    ([[1.0, 3.0, 3.0, 1.0]] * 4, 3, 2, (-1, 2, 1, -1), True, 0.5),
    ([1.0, 2.0, 3.0, 4.0, 4.0, 3.0, 2.0, 1.0], 2, 1, (4, 3), False, 4.0),  # separable (8 taps)
    (
        [1.0, -2.0, 3.0, 4.0, 0.5, 3.0, 2.0, 1.5, 1.0],
        1,
        3,
        (1, 5, 2, 3),
        True,
        2.0,
    ),  # separable, odd
]


class TestUpfirdn2d:
    @pytest.mark.parametrize("taps,up,down,padding,flip,gain", UPFIRDN_CASES)
    def test_matches_naive_definition(self, taps, up, down, padding, flip, gain) -> None:
        x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
        f = torch.tensor(taps, dtype=torch.float32)
        got = ref.upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip, gain=gain)
        expected = naive_upfirdn2d(
            x,
            taps,
            ref.parse_scaling(up),
            ref.parse_scaling(down),
            ref.parse_padding(padding),
            flip,
            gain,
        )
        assert got.dtype == torch.float64
        torch.testing.assert_close(
            got, expected, rtol=1e-6, atol=1e-6
        )  # the filter itself is float32

    def test_float32_and_identity_filter(self) -> None:
        x = torch.randn(1, 2, 4, 4)
        torch.testing.assert_close(ref.upfirdn2d(x, None), x)
        y = ref.upfirdn2d(x, None, up=2)
        assert (
            y.shape == (1, 2, 8, 8)
            and torch.equal(y[:, :, ::2, ::2], x)
            and y[:, :, 1::2].abs().sum() == 0
        )

    def test_setup_filter(self) -> None:
        f = ref.setup_filter([1, 3, 3, 1])
        assert f.shape == (4, 4) and f.dtype == torch.float32
        torch.testing.assert_close(
            f, torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64
        )
        sep = ref.setup_filter(np.ones(8), gain=4)
        assert sep.shape == (8,)
        torch.testing.assert_close(sep, torch.full((8,), 2.0 / 8))  # sqrt(gain) per pass
        assert ref.setup_filter(None).shape == (1, 1)
        flipped = ref.setup_filter([[1.0, 2.0], [3.0, 4.0]], normalize=False, flip_filter=True)
        torch.testing.assert_close(flipped, torch.tensor([[4.0, 3.0], [2.0, 1.0]]))

    def test_resampling_helpers_use_the_official_paddings(self) -> None:
        x = torch.randn(2, 3, 8, 6, dtype=torch.float64)
        f = ref.setup_filter([1, 3, 3, 1])
        up = ref.upsample2d(x, f)
        assert up.shape == (2, 3, 16, 12)
        torch.testing.assert_close(up, ref.upfirdn2d(x, f, up=2, padding=(2, 1, 2, 1), gain=4))
        down = ref.downsample2d(x, f)
        assert down.shape == (2, 3, 4, 3)
        torch.testing.assert_close(down, ref.upfirdn2d(x, f, down=2, padding=(1, 1, 1, 1)))
        same = ref.filter2d(x, f)
        assert same.shape == x.shape
        torch.testing.assert_close(same, ref.upfirdn2d(x, f, padding=(2, 1, 2, 1)))

    def test_resampling_preserves_dc(self) -> None:
        x = torch.full((1, 1, 8, 8), 0.7, dtype=torch.float64)
        f = ref.setup_filter([1, 3, 3, 1])
        torch.testing.assert_close(
            ref.upsample2d(x, f)[..., 3:-3, 3:-3],
            torch.full((1, 1, 10, 10), 0.7, dtype=torch.float64),
        )
        torch.testing.assert_close(
            ref.downsample2d(x, f)[..., 1:-1, 1:-1],
            torch.full((1, 1, 2, 2), 0.7, dtype=torch.float64),
        )

    def test_errors(self) -> None:
        f = ref.setup_filter([1, 3, 3, 1])
        with pytest.raises(ShapeError):
            ref.upfirdn2d(torch.randn(3, 8, 8), f)
        with pytest.raises(ShapeError):
            ref.upfirdn2d(torch.randn(1, 1, 2, 2), f)  # smaller than the filter
        with pytest.raises(UserInputError):
            ref.upfirdn2d(torch.randn(1, 1, 8, 8), f.double())
        with pytest.raises(ConfigError):
            ref.upfirdn2d(torch.randn(1, 1, 8, 8), f, up=0)
        with pytest.raises(ConfigError):
            ref.upfirdn2d(torch.randn(1, 1, 8, 8), f, padding=(1, 2, 3))

    @pytest.mark.parametrize(
        "taps,up,down,padding,flip,gain", UPFIRDN_CASES[1:3] + UPFIRDN_CASES[5:6]
    )
    def test_gradcheck(self, taps, up, down, padding, flip, gain) -> None:
        x = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
        f = torch.tensor(taps, dtype=torch.float32)

        def fn(x):
            return ref.upfirdn2d(
                x, f, up=up, down=down, padding=padding, flip_filter=flip, gain=gain
            )

        assert torch.autograd.gradcheck(fn, (x,), fast_mode=True)
        assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=True)


# ---------------------------------------------------------------------------------------------
# Public dispatch
# ---------------------------------------------------------------------------------------------


class TestDispatch:
    def test_auto_and_ref_equal_reference(self) -> None:
        x = torch.randn(2, 3, 8, 8)
        b = torch.randn(3)
        f = ops.setup_filter([1, 3, 3, 1])
        for impl in ("auto", "ref"):
            assert torch.equal(
                ops.bias_act(x, b, act="lrelu", clamp=1.0, impl=impl),
                ref.bias_act(x, b, act="lrelu", clamp=1.0),
            )
            assert torch.equal(
                ops.upfirdn2d(x, f, up=2, padding=1, impl=impl),
                ref.upfirdn2d(x, f, up=2, padding=1),
            )
            assert torch.equal(ops.upsample2d(x, f, impl=impl), ref.upsample2d(x, f))
            assert torch.equal(ops.downsample2d(x, f, impl=impl), ref.downsample2d(x, f))
            assert torch.equal(
                ops.filter2d(x, f, padding=1, impl=impl), ref.filter2d(x, f, padding=1)
            )

    def test_cuda_on_cpu_is_a_user_error(self) -> None:
        x = torch.randn(1, 1, 4, 4)
        with pytest.raises(UserInputError, match="CUDA"):
            ops.bias_act(x, impl="cuda")
        with pytest.raises(UserInputError, match="CUDA"):
            ops.upsample2d(x, ops.setup_filter([1, 3, 3, 1]), impl="cuda")

    def test_unknown_impl(self) -> None:
        with pytest.raises(ConfigError, match="auto"):
            ops.bias_act(torch.randn(2), impl="triton")


# ---------------------------------------------------------------------------------------------
# conv2d_resample: every fast path equals the generic pad -> conv -> decimate definition
# ---------------------------------------------------------------------------------------------


def generic_conv2d_resample(x, w, f, up, down, padding, groups, flip_weight):
    fw, fh = f.shape[-1], f.shape[0]
    px0, px1, py0, py1 = ref.parse_padding(padding)
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    y = ref.upfirdn2d(x, f if up > 1 else None, up=up, padding=(px0, px1, py0, py1), gain=up**2)
    y = torch.nn.functional.conv2d(y, w if flip_weight else w.flip([2, 3]), groups=groups)
    return ref.upfirdn2d(y, f, down=down) if down > 1 else y


class TestConv2dResample:
    @pytest.mark.parametrize("k", [1, 3])
    @pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2), (2, 2)])
    @pytest.mark.parametrize("groups", [1, 2])
    @pytest.mark.parametrize("flip_weight", [True, False])
    def test_fast_paths_equal_generic(self, k, up, down, groups, flip_weight) -> None:
        from sym3d_eg3d.networks.resample import conv2d_resample

        x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
        w = torch.randn(6, 4 // groups, k, k, dtype=torch.float64)
        f = ref.setup_filter([1, 3, 3, 1])
        padding = k // 2
        got = conv2d_resample(
            x, w, f=f, up=up, down=down, padding=padding, groups=groups, flip_weight=flip_weight
        )
        expected = generic_conv2d_resample(x, w, f, up, down, padding, groups, flip_weight)
        assert got.shape == expected.shape == (2, 6, 8 * up // down, 8 * up // down)
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
