"""CUDA kernels against the reference on a GPU (marker ``gpu``; skipped without a CUDA device).

Forward values, first- and second-order gradients in float32 and float16 (and a bfloat16 smoke
check), gradcheck/gradgradcheck in float64 on the device, the ``auto`` dispatch, and a second
device when there is one. The expected values are the reference evaluated in float64 on the same
(rounded) inputs. The kernels are built into the normal cache (``SYM3D_CACHE_DIR`` or
``~/.cache/sym3d/kernels``) on first use; a build failure fails these tests with the log path.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from sym3d.errors import KernelBuildError
from sym3d_eg3d import ops
from sym3d_eg3d.ops import _build, _cuda
from sym3d_eg3d.ops import reference as ref
from tests.eg3d.test_ops_dispatch import (
    BIAS_ACT_CASES,
    UPFIRDN_CASES,
    away_from_clamp,
    bias_act_inputs,
    second_grads,
)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="needs a CUDA device (torch.cuda.is_available() is False)",
    ),
]

TOL = {torch.float32: 2e-5, torch.float16: 1e-2, torch.bfloat16: 5e-2}


@pytest.fixture(scope="module")
def kernels() -> dict:
    try:
        return _build.KERNELS.build_all()
    except KernelBuildError as exc:
        pytest.fail(f"the CUDA kernels do not build on this GPU machine: {exc}")


def _close(
    got: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, scale: float = 1.0
) -> None:
    tol = TOL.get(dtype, 1e-10) * scale
    torch.testing.assert_close(got.double().cpu(), expected.double().cpu(), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("act,alpha,gain,clamp,dim", BIAS_ACT_CASES)
def test_bias_act_parity(kernels: dict, act, alpha, gain, clamp, dim, dtype) -> None:
    x64, b64 = bias_act_inputs(dim)
    x64 = away_from_clamp(x64, b64, act, alpha, gain, clamp, dim)
    x = x64.to("cuda", dtype).requires_grad_(True)
    b = b64.to("cuda", dtype).requires_grad_(True)
    xr = x.detach().double().requires_grad_(True)  # the same rounded values, in float64
    br = b.detach().double().requires_grad_(True)
    kw = dict(dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)

    y = ops.bias_act(x, b, **kw, impl="cuda")
    yr = ref.bias_act(xr, br, **kw)
    assert y.dtype == dtype and y.device == x.device
    _close(y, yr, dtype)

    dy = torch.randn_like(yr)
    g = torch.autograd.grad(y, (x, b), dy.to(dtype), create_graph=True)
    gr = torch.autograd.grad(yr, (xr, br), dy, create_graph=True)
    _close(g[0], gr[0], dtype, 2)
    _close(g[1], gr[1], dtype, 10)  # a sum over many elements
    w = torch.randn_like(xr)
    for got, exp in zip(
        second_grads(g[0], w.to(dtype), (x, b)), second_grads(gr[0], w, (xr, br)), strict=True
    ):
        _close(got, exp, dtype, 10)


@pytest.mark.parametrize("act,alpha,gain,clamp,dim", BIAS_ACT_CASES)
def test_bias_act_gradcheck_float64(kernels: dict, act, alpha, gain, clamp, dim) -> None:
    x, b = bias_act_inputs(dim, device="cuda")
    x = away_from_clamp(x, b, act, alpha, gain, clamp, dim).requires_grad_(True)
    b.requires_grad_(True)

    def fn(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ops.bias_act(
            x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp, impl="cuda"
        )

    torch.testing.assert_close(
        fn(x, b),
        ref.bias_act(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp),
        rtol=1e-12,
        atol=1e-12,
    )
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_bias_act_large_and_bfloat16(kernels: dict) -> None:
    x = torch.randn(4, 512, 32, 32, device="cuda")
    b = torch.randn(512, device="cuda")
    _close(
        ops.bias_act(x, b, act="lrelu", clamp=256, impl="cuda"),
        ref.bias_act(x.double(), b.double(), act="lrelu", clamp=256),
        torch.float32,
    )
    xb, bb = x.bfloat16(), b.bfloat16()
    _close(
        ops.bias_act(xb, bb, act="lrelu", impl="cuda"),
        ref.bias_act(xb.double(), bb.double(), act="lrelu"),
        torch.bfloat16,
        4,
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("taps,up,down,padding,flip,gain", UPFIRDN_CASES)
def test_upfirdn2d_parity(kernels: dict, taps, up, down, padding, flip, gain, dtype) -> None:
    x = torch.randn(2, 3, 9, 10, device="cuda").to(dtype).requires_grad_(True)
    xr = x.detach().double().requires_grad_(True)
    f = torch.tensor(taps, dtype=torch.float32, device="cuda")
    kw = dict(up=up, down=down, padding=padding, flip_filter=flip, gain=gain)
    y = ops.upfirdn2d(x, f, **kw, impl="cuda")
    yr = ref.upfirdn2d(xr, f, **kw)
    scale = max(1.0, yr.abs().max().item())
    _close(y, yr, dtype, scale)
    dyr = torch.randn_like(yr).requires_grad_(True)
    dy = dyr.detach().to(dtype).requires_grad_(True)
    (g,) = torch.autograd.grad(y, x, dy, create_graph=True)
    (gr,) = torch.autograd.grad(yr, xr, dyr, create_graph=True)
    _close(g, gr, dtype, scale * 4)
    # Second order: the op is linear, so the gradient depends on dy only; differentiating it
    # with respect to dy runs the backward of the backward (the forward op again).
    w = torch.randn_like(gr)
    (gg,) = torch.autograd.grad((g * w.to(dtype)).sum(), dy)
    (ggr,) = torch.autograd.grad((gr * w).sum(), dyr)
    _close(gg, ggr, dtype, scale * 4)


@pytest.mark.parametrize("taps,up,down,padding,flip,gain", UPFIRDN_CASES)
def test_upfirdn2d_gradcheck_float64(kernels: dict, taps, up, down, padding, flip, gain) -> None:
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, device="cuda", requires_grad=True)
    f = torch.tensor(taps, dtype=torch.float32, device="cuda")

    def fn(x: torch.Tensor) -> torch.Tensor:
        return ops.upfirdn2d(
            x, f, up=up, down=down, padding=padding, flip_filter=flip, gain=gain, impl="cuda"
        )

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_resampling_helpers_at_network_sizes(kernels: dict) -> None:
    f = ops.setup_filter([1, 3, 3, 1], device="cuda")
    for dtype in (torch.float32, torch.float16):
        x = torch.randn(2, 128, 64, 64, device="cuda", dtype=dtype)
        for name, kwargs in (
            ("upsample2d", {}),
            ("downsample2d", {}),
            ("filter2d", {"padding": 1}),
        ):
            got = getattr(ops, name)(x, f, **kwargs, impl="cuda")
            expected = getattr(ref, name)(x.double(), f, **kwargs)
            _close(got, expected, dtype, 2)
        x_cl = x.to(memory_format=torch.channels_last)
        _close(ops.upsample2d(x_cl, f, impl="cuda"), ref.upsample2d(x.double(), f), dtype, 2)


def test_auto_uses_the_kernel_without_warning(kernels: dict) -> None:
    x = torch.randn(2, 3, 8, 8, device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ops.resolve_impl("bias_act", "auto", x) == "cuda"
        assert ops.resolve_impl("upfirdn2d", "auto", x) == "cuda"
        ops.upsample2d(x, ops.setup_filter([1, 3, 3, 1], device="cuda"))


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs a second CUDA device")
def test_second_device(kernels: dict) -> None:
    x = torch.randn(2, 3, 8, 8, device="cuda:1")
    b = torch.randn(3, device="cuda:1")
    f = ops.setup_filter([1, 3, 3, 1], device="cuda:1")
    y = ops.bias_act(x, b, act="lrelu", impl="cuda")
    assert y.device == x.device
    _close(y, ref.bias_act(x.double(), b.double(), act="lrelu"), torch.float32)
    _close(ops.upsample2d(x, f, impl="cuda"), ref.upsample2d(x.double(), f), torch.float32, 2)


def test_kernels_are_used_through_the_wrappers(kernels: dict) -> None:
    assert kernels["bias_act"].HAS_CUDA and kernels["upfirdn2d"].HAS_CUDA
    x = torch.randn(1, 1, 4, 4, device="cuda")
    torch.testing.assert_close(_cuda.upfirdn2d(x, None), x)
