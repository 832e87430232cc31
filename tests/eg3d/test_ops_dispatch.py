"""Kernel dispatch, build cache and autograd wrappers of the EG3D ops, without a GPU or a compiler.

* dispatch rules of ``impl`` / ``SYM3D_EG3D_IMPL`` on CPU and on a simulated CUDA path;
* simulated build failures (warn once under auto, raise with the log path under cuda);
* the real build-or-load code with the toolchain call replaced (log, failed dir, atomic rename,
  concurrent finish, cache hit, environment untouched, cache key);
* the autograd wrappers of ``_cuda`` driven by a pure-PyTorch stand-in for the compiled module
  (``FakeKernels`` below implements the kernels' contract), checked against the reference with
  gradcheck and gradgradcheck.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch

from sym3d.errors import (
    ConfigError,
    KernelBuildError,
    KernelFallbackWarning,
    ShapeError,
    UserInputError,
)
from sym3d_eg3d import ops
from sym3d_eg3d.ops import _build, _cuda
from sym3d_eg3d.ops import reference as ref

# Shared with test_ops_build.py and test_ops_cuda.py.
BIAS_ACT_CASES = [
    # act, alpha, gain, clamp, dim
    ("linear", None, None, None, 1),
    ("linear", None, 0.5, 0.8, 1),
    ("relu", None, None, None, 1),
    ("lrelu", None, None, 1.0, 1),
    ("lrelu", 0.3, 2.0, None, 2),
    ("lrelu", -0.4, None, None, 1),  # negative slope: gradient from x
    ("tanh", None, None, None, 0),
    ("tanh", None, -1.5, 0.9, 1),
    ("sigmoid", None, None, None, 1),
    ("elu", None, None, None, 1),
    ("selu", None, None, 1.2, 1),
    ("softplus", None, None, None, 1),
    ("swish", None, None, None, 1),
    ("swish", None, 1.0, 0.7, 2),
    ("tanh", None, 0.0, None, 1),  # zero gain: gradient from x
]

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
    ([1.0, 2.0, 3.0, 4.0, 4.0, 3.0, 2.0, 1.0], 2, 1, (4, 3), False, 4.0),  # separable
    (
        [1.0, -2.0, 3.0, 4.0, 0.5, 3.0, 2.0, 1.5, 1.0],
        1,
        3,
        (1, 5, 2, 3),
        True,
        2.0,
    ),  # separable, odd
    (
        [[1.0, 3.0, 3.0, 1.0]] * 4,
        1,
        1,
        (5, -2, 0, 4),
        False,
        1.0,
    ),  # pad > taps on one side, crop on other
]


def bias_act_inputs(
    dim: int, dtype: torch.dtype = torch.float64, device: str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs away from the kinks of relu/lrelu/clamp so finite differences are valid."""
    shape = [2, 3, 4]
    x = (torch.rand(shape, dtype=torch.float64) * 1.6 + 0.1) * torch.where(
        torch.rand(shape) < 0.5, -1.0, 1.0
    ).double()
    b = torch.randn(shape[dim], dtype=torch.float64) * 0.02
    return x.to(device=device, dtype=dtype), b.to(device=device, dtype=dtype)


def away_from_clamp(
    x: torch.Tensor, b: torch.Tensor, act: str, alpha, gain, clamp, dim: int
) -> torch.Tensor:
    """Move elements whose pre-clamp value is within 0.05 of the clamp limit (finite differences)."""
    if clamp is None:
        return x
    spec = ref.ACTIVATIONS[act]
    a = spec.default_alpha if alpha is None else alpha
    g = spec.default_gain if gain is None else gain
    shape = [-1 if i == dim else 1 for i in range(x.ndim)]
    v = g * spec.func(x + b.reshape(shape), a)
    near = (v.abs() - clamp).abs() < 0.05
    return torch.where(near, x * 0.5, x)


def second_grads(
    first: torch.Tensor, w: torch.Tensor, inputs: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, ...]:
    """d(sum(first * w)) / d inputs, zeros where ``first`` does not depend on an input."""
    if not first.requires_grad:
        return tuple(torch.zeros_like(t) for t in inputs)
    return torch.autograd.grad((first * w).sum(), inputs, allow_unused=True, materialize_grads=True)


# ---------------------------------------------------------------------------------------------
# A pure-PyTorch stand-in for the compiled modules (the contract of csrc/*.h)
# ---------------------------------------------------------------------------------------------

_BY_INDEX = {spec.cuda_index: spec for spec in ref.ACTIVATIONS.values()}
SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def _slope_curve_from_y(
    name: str, a: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    one, zero = torch.ones_like(a), torch.zeros_like(a)
    if name == "linear":
        return one, zero
    if name == "relu":
        return (a > 0).to(a.dtype), zero
    if name == "lrelu":
        return torch.where(a > 0, one, alpha * one), zero
    if name == "tanh":
        return 1 - a * a, -2 * a
    if name == "sigmoid":
        return a * (1 - a), 1 - 2 * a
    if name == "elu":
        return torch.where(a > 0, one, a + 1), torch.where(a > 0, zero, one)
    if name == "selu":
        return torch.where(a > 0, SELU_SCALE * one, a + SELU_SCALE * SELU_ALPHA), torch.where(
            a > 0, zero, one
        )
    if name == "softplus":
        return torch.where(a > 20, one, -torch.expm1(-a)), torch.where(a > 20, zero, torch.exp(-a))
    raise AssertionError(f"no from-y formula for {name}")


class FakeKernels(ModuleType):
    """Implements ``bias_act`` and ``upfirdn2d`` with the compiled modules' signatures."""

    def __init__(self) -> None:
        super().__init__("fake_kernels")
        self.calls: list[str] = []

    def bias_act(self, a, refv, b, mode, act, alpha, gain, clamp, dim):
        self.calls.append(f"bias_act:{mode}")
        assert a.is_contiguous() and (refv.numel() == 0 or refv.is_contiguous())
        spec = _BY_INDEX[act]
        bias = b.reshape([-1 if i == dim else 1 for i in range(a.ndim)]) if b.numel() else 0
        if mode == 0:
            v = gain * spec.func(a + bias, alpha)
            return v.clamp(-clamp, clamp) if clamp >= 0 else v
        if mode in (1, 3):
            with torch.enable_grad():
                u = (refv + bias).detach().requires_grad_(True)
                out = spec.func(u, alpha)
                (d1,) = torch.autograd.grad(out.sum(), u, create_graph=True)
                d2 = (
                    torch.autograd.grad(d1.sum(), u)[0] if d1.requires_grad else torch.zeros_like(u)
                )
                mask = (
                    (gain * out).abs() <= clamp
                    if clamp >= 0
                    else torch.ones_like(u, dtype=torch.bool)
                )
            d = d1 if mode == 1 else d2
            return (a * gain * d.detach() * mask).to(a.dtype)
        mask = refv.abs() < clamp if clamp >= 0 else torch.ones_like(refv, dtype=torch.bool)
        slope, curve = _slope_curve_from_y(spec.name, refv / gain, alpha)
        return (a * gain * slope if mode == 2 else a * curve) * mask

    def upfirdn2d(self, x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip, gain):
        self.calls.append("upfirdn2d")
        assert x.is_contiguous()
        return ref.upfirdn2d(
            x,
            f,
            up=(upx, upy),
            down=(downx, downy),
            padding=(px0, px1, py0, py1),
            flip_filter=flip,
            gain=gain,
        )


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


def _never_build(spec, settings):
    raise AssertionError(f"the {spec.name} kernel must not be built here")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test: its own cache dir, no SYM3D_EG3D_IMPL, a fresh registry that must not build."""
    monkeypatch.setenv("SYM3D_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SYM3D_EG3D_IMPL", raising=False)
    monkeypatch.setattr(_build, "KERNELS", _build.KernelRegistry(builder=_never_build))
    return tmp_path


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the dispatcher treat every tensor as a CUDA tensor (the computation stays on CPU)."""
    monkeypatch.setattr(ops, "_on_cuda", lambda x: True)


def failing_builder(log_path: Path):
    calls: list[str] = []

    def build(spec, settings):
        calls.append(spec.name)
        raise KernelBuildError(
            f"building the CUDA kernel {spec.name!r} failed: nvcc fatal: simulated.",
            log_path=str(log_path),
        )

    build.calls = calls  # type: ignore[attr-defined]
    return build


def fake_builder(kernels: FakeKernels):
    def build(spec, settings):
        return kernels

    return build


# ---------------------------------------------------------------------------------------------
# Dispatch rules
# ---------------------------------------------------------------------------------------------


class TestDispatchRules:
    def test_cpu_auto_is_reference_without_warning(self) -> None:
        x, b = torch.randn(2, 3, 8, 8), torch.randn(3)
        f = ops.setup_filter([1, 3, 3, 1])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert torch.equal(
                ops.bias_act(x, b, act="lrelu", clamp=1.0),
                ref.bias_act(x, b, act="lrelu", clamp=1.0),
            )
            assert torch.equal(ops.upsample2d(x, f), ref.upsample2d(x, f))
            assert torch.equal(ops.downsample2d(x, f, impl="auto"), ref.downsample2d(x, f))
            assert ops.resolve_impl("upfirdn2d", "auto", x) == "ref"
        assert _build.KERNELS.loaded() == {}

    def test_cuda_on_cpu_is_a_user_error(self) -> None:
        x = torch.randn(1, 1, 8, 8)
        f = ops.setup_filter([1, 3, 3, 1])
        for call in (
            lambda: ops.bias_act(x, impl="cuda"),
            lambda: ops.upfirdn2d(x, f, impl="cuda"),
            lambda: ops.filter2d(x, f, impl="cuda"),
            lambda: ops.upsample2d(x, f, impl="cuda"),
            lambda: ops.downsample2d(x, f, impl="cuda"),
        ):
            with pytest.raises(UserInputError, match="CUDA device"):
                call()

    def test_unknown_impl_and_bad_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        with pytest.raises(ConfigError, match="auto"):
            ops.bias_act(torch.randn(2), impl="triton")
        monkeypatch.setenv("SYM3D_EG3D_IMPL", "fast")
        with pytest.raises(ConfigError, match="SYM3D_EG3D_IMPL"):
            ops.bias_act(torch.randn(2))
        assert torch.equal(ops.bias_act(torch.ones(2), impl="ref"), torch.ones(2))  # explicit wins

    def test_env_sets_the_default(self, monkeypatch: pytest.MonkeyPatch, fake_cuda: None) -> None:
        x = torch.randn(2, 3)
        monkeypatch.setenv("SYM3D_EG3D_IMPL", "ref")
        assert ops.default_impl() == "ref"
        assert ops.resolve_impl("bias_act", "auto", x) == "ref"  # no build attempted
        monkeypatch.setenv("SYM3D_EG3D_IMPL", "cuda")
        monkeypatch.setattr(ops, "_on_cuda", lambda x: False)
        with pytest.raises(UserInputError, match="SYM3D_EG3D_IMPL"):
            ops.bias_act(x)
        assert ops.resolve_impl("bias_act", "ref", x) == "ref"  # explicit ref beats the variable

    def test_build_failure_under_auto_warns_once_and_falls_back(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_cuda: None
    ) -> None:
        log = tmp_path / "bias_act.log"
        builder = failing_builder(log)
        monkeypatch.setattr(_build, "KERNELS", _build.KernelRegistry(builder=builder))
        x, b = torch.randn(2, 3, 4, 4), torch.randn(3)
        f = ops.setup_filter([1, 3, 3, 1])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(3):
                assert torch.equal(ops.bias_act(x, b, act="lrelu"), ref.bias_act(x, b, act="lrelu"))
                assert torch.equal(ops.upsample2d(x, f), ref.upsample2d(x, f))
        fallback = [w for w in caught if issubclass(w.category, KernelFallbackWarning)]
        assert len(fallback) == 2, [str(w.message) for w in caught]  # one per kernel, not per call
        texts = sorted(str(w.message) for w in fallback)
        assert "'bias_act'" in texts[0] and "'upfirdn2d'" in texts[1]
        for text in texts:
            assert "nvcc fatal: simulated" in text and str(log) in text and "reference" in text
        assert builder.calls == ["bias_act", "upfirdn2d"]  # failures are remembered, not retried

    def test_build_failure_under_cuda_raises_with_log_path(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_cuda: None
    ) -> None:
        log = tmp_path / "bias_act.log"
        monkeypatch.setattr(_build, "KERNELS", _build.KernelRegistry(builder=failing_builder(log)))
        x = torch.randn(2, 3, 4, 4)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no fallback warning: an error instead
            for _ in range(2):
                with pytest.raises(KernelBuildError) as info:
                    ops.bias_act(x, impl="cuda")
                assert info.value.log_path == str(log)
                assert str(log) in str(info.value)
            with pytest.raises(KernelBuildError):
                ops.filter2d(x, ops.setup_filter([1, 3, 3, 1]), impl="cuda")

    def test_reset_retries_a_failed_build(self, tmp_path: Path) -> None:
        builder = failing_builder(tmp_path / "x.log")
        registry = _build.KernelRegistry(builder=builder)
        for _ in range(2):
            with pytest.raises(KernelBuildError):
                registry.get("bias_act")
        assert builder.calls == ["bias_act"] and registry.failure("bias_act") is not None
        registry.reset()
        with pytest.raises(KernelBuildError):
            registry.get("bias_act")
        assert builder.calls == ["bias_act", "bias_act"]

    def test_auto_uses_the_kernel_when_it_builds(
        self, monkeypatch: pytest.MonkeyPatch, fake_cuda: None
    ) -> None:
        kernels = FakeKernels()
        monkeypatch.setattr(_build, "KERNELS", _build.KernelRegistry(builder=fake_builder(kernels)))
        x, b = torch.randn(2, 3, 8, 8), torch.randn(3)
        f = ops.setup_filter([1, 3, 3, 1])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            torch.testing.assert_close(
                ops.bias_act(x, b, act="lrelu", clamp=1.0),
                ref.bias_act(x, b, act="lrelu", clamp=1.0),
            )
            torch.testing.assert_close(ops.upsample2d(x, f), ref.upsample2d(x, f))
            torch.testing.assert_close(
                ops.filter2d(x, f, padding=1, gain=2), ref.filter2d(x, f, padding=1, gain=2)
            )
        assert kernels.calls == ["bias_act:0", "upfirdn2d", "upfirdn2d"]

    def test_bias_of_another_dtype(self, monkeypatch: pytest.MonkeyPatch, fake_cuda: None) -> None:
        kernels = FakeKernels()
        monkeypatch.setattr(_build, "KERNELS", _build.KernelRegistry(builder=fake_builder(kernels)))
        x, b = torch.randn(2, 3, dtype=torch.float64), torch.randn(3)
        y = ops.bias_act(x, b)  # auto: the reference, which promotes
        assert y.dtype == torch.float64 and kernels.calls == []
        torch.testing.assert_close(y, ref.bias_act(x, b))
        with pytest.raises(UserInputError, match="dtype"):
            ops.bias_act(x, b, impl="cuda")

    def test_kernel_path_validates_like_the_reference(self) -> None:
        kernels = FakeKernels()
        x = torch.randn(2, 3)
        with pytest.raises(ConfigError, match="lrelu"):
            _cuda.bias_act(x, act="gelu", kernel=kernels)
        with pytest.raises(ConfigError):
            _cuda.bias_act(x, clamp=-1, kernel=kernels)
        with pytest.raises(ShapeError):
            _cuda.bias_act(x, torch.zeros(4), kernel=kernels)
        f = ops.setup_filter([1, 3, 3, 1])
        with pytest.raises(ShapeError):
            _cuda.upfirdn2d(torch.randn(1, 1, 2, 2), f, kernel=kernels)
        with pytest.raises(ShapeError):
            _cuda.upfirdn2d(torch.randn(3, 8, 8), f, kernel=kernels)
        with pytest.raises(UserInputError):
            _cuda.upfirdn2d(torch.randn(1, 1, 8, 8), f.double(), kernel=kernels)
        with pytest.raises(ConfigError):
            _cuda.upfirdn2d(torch.randn(1, 1, 8, 8), f, up=0, kernel=kernels)
        assert kernels.calls == []


# ---------------------------------------------------------------------------------------------
# Autograd wrappers (with the stand-in kernels)
# ---------------------------------------------------------------------------------------------


class TestWrappers:
    @pytest.mark.parametrize("act,alpha,gain,clamp,dim", BIAS_ACT_CASES)
    def test_bias_act_gradients(self, act, alpha, gain, clamp, dim) -> None:
        kernels = FakeKernels()
        x, b = bias_act_inputs(dim)
        x = away_from_clamp(x, b, act, alpha, gain, clamp, dim)
        kw = dict(dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)
        torch.testing.assert_close(
            _cuda.bias_act(x, b, **kw, kernel=kernels),
            ref.bias_act(x, b, **kw),
            rtol=1e-12,
            atol=1e-12,
        )
        x.requires_grad_(True)
        b.requires_grad_(True)
        fn = lambda x, b: _cuda.bias_act(x, b, **kw, kernel=kernels)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x, b))
        assert torch.autograd.gradgradcheck(fn, (x, b))
        # the second derivative equals the reference's, term by term
        dy = torch.randn_like(x)
        got = torch.autograd.grad(fn(x, b), (x, b), dy, create_graph=True)
        exp = torch.autograd.grad(ref.bias_act(x, b, **kw), (x, b), dy, create_graph=True)
        for g, e in zip(got, exp, strict=True):
            torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)
        w = torch.randn_like(x)
        for g, e in zip(
            second_grads(got[0], w, (x, b)), second_grads(exp[0], w, (x, b)), strict=True
        ):
            torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-9)

    def test_bias_act_without_bias_and_1d(self) -> None:
        kernels = FakeKernels()
        x = torch.randn(5, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradgradcheck(
            lambda x: _cuda.bias_act(x, act="tanh", kernel=kernels), (x,)
        )
        b = torch.randn(5, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(
            lambda x, b: _cuda.bias_act(x, b, dim=0, act="swish", kernel=kernels), (x, b)
        )

    def test_bias_act_noncontiguous_input_keeps_second_order(self) -> None:
        kernels = FakeKernels()
        x = (
            torch.randn(4, 3, dtype=torch.float64).t().requires_grad_(True)
        )  # [3, 4], not contiguous
        b = torch.randn(3, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradgradcheck(
            lambda x, b: _cuda.bias_act(x, b, dim=0, act="swish", kernel=kernels), (x, b)
        )

    def test_bias_act_third_order_is_refused(self) -> None:
        kernels = FakeKernels()
        x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
        y = _cuda.bias_act(x, act="tanh", kernel=kernels)
        (g1,) = torch.autograd.grad(y.sum(), x, create_graph=True)
        (g2,) = torch.autograd.grad(g1.sum(), x, create_graph=True)
        with pytest.raises(RuntimeError, match="impl='ref'"):
            torch.autograd.grad(g2.sum(), x)

    @pytest.mark.parametrize("taps,up,down,padding,flip,gain", UPFIRDN_CASES)
    def test_upfirdn2d_gradients(self, taps, up, down, padding, flip, gain) -> None:
        kernels = FakeKernels()
        x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
        f = torch.tensor(taps, dtype=torch.float32)
        kw = dict(up=up, down=down, padding=padding, flip_filter=flip, gain=gain)
        torch.testing.assert_close(
            _cuda.upfirdn2d(x, f, **kw, kernel=kernels), ref.upfirdn2d(x, f, **kw)
        )
        fn = lambda x: _cuda.upfirdn2d(x, f, **kw, kernel=kernels)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x,), fast_mode=True)
        assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=True)
        dy = torch.randn_like(fn(x))
        (got,) = torch.autograd.grad(fn(x), x, dy)
        (exp,) = torch.autograd.grad(ref.upfirdn2d(x, f, **kw), x, dy)
        torch.testing.assert_close(got, exp)

    @pytest.mark.parametrize("size", [(1, 1), (3, 2), (7, 9)])
    @pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2), (3, 2), (2, 3)])
    def test_adjoint_padding_gives_input_shape(self, size, up, down) -> None:
        # <upfirdn(x), g> == <x, adjoint(g)> for random shapes and paddings (pure reference).
        gen = torch.Generator().manual_seed(hash((size, up, down)) % 2**31)
        for _ in range(5):
            fh, fw = (int(v) for v in torch.randint(1, 6, (2,), generator=gen))
            pad = tuple(int(v) for v in torch.randint(-1, 5, (4,), generator=gen))
            h, w = size[0] + 4, size[1] + 4
            f = torch.rand(fh, fw, generator=gen)
            cfg = _cuda.Upfirdn2dConfig((up, up), (down, down), pad, False, 1.0)
            x = torch.randn(1, 1, h, w, dtype=torch.float64, generator=gen)
            y = ref.upfirdn2d(x, f, up=up, down=down, padding=pad)
            adj = _cuda.adjoint_config(cfg, (h, w), (y.shape[2], y.shape[3]), (fh, fw))
            g = torch.randn(y.shape, dtype=torch.float64, generator=gen)
            back = ref.upfirdn2d(
                g, f, up=adj.up, down=adj.down, padding=adj.padding, flip_filter=adj.flip
            )
            assert back.shape == x.shape
            torch.testing.assert_close((y * g).sum(), (x * back).sum())


# ---------------------------------------------------------------------------------------------
# Build cache (real build_or_load; only the toolchain call is replaced)
# ---------------------------------------------------------------------------------------------


def _ok_toolchain(variant: str = "cuda") -> _build.Toolchain:
    return _build.Toolchain("/opt/cuda", "/opt/cuda/bin/nvcc", "13.0", True, True)


class FakeCompile:
    """Stands in for torch.utils.cpp_extension.load: records the call, then succeeds or fails."""

    def __init__(self, *, fail: str | None = None, before_return=None) -> None:
        self.fail, self.before_return = fail, before_return
        self.calls: list[dict] = []

    def __call__(
        self, module_name, sources, include_dir, build_dir, cflags, cuda_cflags, with_cuda
    ):
        self.calls.append(
            dict(
                module_name=module_name,
                sources=sources,
                cuda_cflags=cuda_cflags,
                with_cuda=with_cuda,
                environ=dict(os.environ),
            )
        )
        assert all(Path(s).is_file() for s in sources)
        if self.fail:
            raise RuntimeError(
                f"Error building extension '{module_name}': [1/3] nvcc ...\n{self.fail}\nninja: build stopped"
            )
        lib = Path(build_dir) / f"{module_name}.so"
        lib.write_bytes(b"not really a library")
        if self.before_return:
            self.before_return()
        module = ModuleType(module_name)
        module.__file__ = str(lib)
        module.bias_act = module.upfirdn2d = lambda *a: None
        return module


@pytest.fixture
def build_env(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(_build, "inspect_toolchain", _ok_toolchain)
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
    return monkeypatch


class TestBuildCache:
    def test_failed_build_writes_a_log_and_leaves_environ_alone(
        self, tmp_path: Path, build_env
    ) -> None:
        compile_ = FakeCompile(fail='bias_act.cu(12): error: identifier "nope" is undefined')
        build_env.setattr(_build, "_compile_and_import", compile_)
        before = dict(os.environ)
        registry = _build.KernelRegistry(cache_dir=tmp_path / "k", arch_list="8.0")
        with pytest.raises(KernelBuildError) as info:
            registry.get("bias_act")
        assert dict(os.environ) == before
        assert compile_.calls[0]["environ"] == before  # not even during the build
        assert "-gencode=arch=compute_80,code=sm_80" in compile_.calls[0]["cuda_cflags"]
        log = Path(info.value.log_path)
        assert log.is_file() and log.parent.parent == tmp_path / "k" / "failed"
        text = log.read_text()
        assert 'identifier "nope" is undefined' in text and "8.0" in text
        assert 'identifier "nope" is undefined' in str(
            info.value
        )  # the telling line, in the message
        assert not list((tmp_path / "k").glob(".tmp-*"))

    def test_successful_build_is_cached_and_reloaded(self, tmp_path: Path, build_env) -> None:
        compile_ = FakeCompile()
        build_env.setattr(_build, "_compile_and_import", compile_)
        root = tmp_path / "k"
        module = _build.KernelRegistry(cache_dir=root, arch_list="8.6").get("upfirdn2d")
        entries = [p for p in root.iterdir()]
        assert len(entries) == 1 and entries[0].name.startswith("upfirdn2d-cuda-")
        meta = json.loads((entries[0] / "meta.json").read_text())
        assert (
            meta["key"]["arch_list"] == ["8.6"]
            and meta["key"]["torch_version"] == torch.__version__
        )
        assert (entries[0] / meta["library"]).is_file() and (
            entries[0] / "src" / "upfirdn2d.cu"
        ).is_file()
        assert "OK: built" in (entries[0] / "build.log").read_text()
        assert module.__file__.endswith(".so")

        loaded: list[Path] = []
        build_env.setattr(
            _build,
            "_import_library",
            lambda name, path: loaded.append(path) or SimpleNamespace(upfirdn2d=1),
        )
        fresh = _build.KernelRegistry(cache_dir=root, arch_list="8.6")
        assert fresh.cached_dir("upfirdn2d") == entries[0]
        fresh.get("upfirdn2d")
        assert len(compile_.calls) == 1 and loaded == [entries[0] / meta["library"]]
        # another architecture is another entry
        _build.KernelRegistry(cache_dir=root, arch_list="8.9").get("upfirdn2d")
        assert len(compile_.calls) == 2 and len(list(root.iterdir())) == 2

    def test_concurrent_finish_keeps_the_first_entry(self, tmp_path: Path, build_env) -> None:
        root = tmp_path / "k"
        settings = _build.BuildSettings(cache_dir=root, arch_list="8.0")
        key = _build.make_key(
            _build.EXTENSIONS["bias_act"],
            "cuda",
            ("8.0",),
            _build.read_sources(_build.EXTENSIONS["bias_act"]),
        )

        def other_process_finishes() -> None:
            other = root / key.dirname
            other.mkdir(parents=True)
            (other / "meta.json").write_text(json.dumps({"status": "ok", "who": "other"}))

        build_env.setattr(
            _build, "_compile_and_import", FakeCompile(before_return=other_process_finishes)
        )
        module = _build.build_or_load(_build.EXTENSIONS["bias_act"], settings)
        assert hasattr(module, "bias_act")
        assert json.loads((root / key.dirname / "meta.json").read_text())["who"] == "other"
        assert not list(root.glob(".tmp-*"))

    def test_missing_toolchain_fails_before_compiling(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(
            _build,
            "inspect_toolchain",
            lambda variant="cuda": _build.Toolchain(
                None, None, None, False, True, (("no CUDA toolkit (nvcc) was found", "install it"),)
            ),
        )
        compile_ = FakeCompile()
        monkeypatch.setattr(_build, "_compile_and_import", compile_)
        with pytest.raises(KernelBuildError, match="no CUDA toolkit") as info:
            _build.KernelRegistry(cache_dir=tmp_path, arch_list="8.0").get("bias_act")
        assert compile_.calls == [] and "install it" in str(info.value)
        assert "no CUDA toolkit" in Path(info.value.log_path).read_text()

    def test_no_architecture_is_a_build_error_with_a_log(self, tmp_path: Path, build_env) -> None:
        if torch.cuda.is_available():
            pytest.skip("a visible CUDA device always tells the architecture")
        with pytest.raises(KernelBuildError, match="TORCH_CUDA_ARCH_LIST") as info:
            _build.KernelRegistry(cache_dir=tmp_path).get("bias_act")
        assert Path(info.value.log_path).is_file()
        build_env.setenv("TORCH_CUDA_ARCH_LIST", "Ampere")
        with pytest.raises(KernelBuildError, match="not understood"):
            _build.KernelRegistry(cache_dir=tmp_path).get("bias_act")

    def test_cache_key_follows_sources_and_settings(self, tmp_path: Path) -> None:
        src = tmp_path / "csrc"
        shutil.copytree(_build.CSRC_DIR, src)
        spec = _build.EXTENSIONS["bias_act"]

        def key(arch: tuple[str, ...] = ("8.0",), variant: str = "cuda") -> _build.BuildKey:
            return _build.make_key(spec, variant, arch, _build.read_sources(spec, src))

        k0 = key()
        assert key() == k0 and key().digest == k0.digest
        header = src / "common.h"
        header.write_text(header.read_text() + "\n// changed\n")
        k1 = key()
        assert k1.digest != k0.digest and k1.source_sha256 != k0.source_sha256
        assert key(("8.6",)).digest != k1.digest
        assert key((), "host").digest != k1.digest
        assert len({k0.dirname, k1.dirname, k0.module_name, k1.module_name}) == 4
        # the upfirdn2d kernel does not depend on bias_act's files
        up = _build.EXTENSIONS["upfirdn2d"]
        (src / "bias_act.cu").write_text("// other")
        assert _build.source_digest(_build.read_sources(up, src)) == _build.source_digest(
            _build.read_sources(up, src)
        )

    def test_error_summary_picks_the_telling_line(self) -> None:
        link = (
            "Error building extension 'm': [1/3] c++ ...\nFAILED: m.so\n"
            "/usr/bin/ld: cannot find -lcudart: No such file or directory\n"
            "collect2: error: ld returned 1 exit status\nninja: build stopped: subcommand failed."
        )
        assert (
            _build._summary(link) == "/usr/bin/ld: cannot find -lcudart: No such file or directory"
        )
        header = "Error building extension 'm': [1/3] nvcc ...\nFAILED: m.cuda.o\nx.h:10:10: fatal error: cusparse.h: No such file"
        assert _build._summary(header).endswith("fatal error: cusparse.h: No such file")
        assert (
            _build._summary("CUDA_HOME environment variable is not set.")
            == "CUDA_HOME environment variable is not set."
        )

    def test_default_cache_dir(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("SYM3D_CACHE_DIR", str(tmp_path))
        assert _build.default_cache_dir() == tmp_path / "kernels"
        monkeypatch.delenv("SYM3D_CACHE_DIR")
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert _build.default_cache_dir() == tmp_path / "xdg" / "sym3d" / "kernels"

    def test_arch_lists(self, monkeypatch: pytest.MonkeyPatch) -> None:
        assert _build.parse_arch_list("8.6;8.0, 9.0a 8.6") == ("8.0", "8.6", "9.0a")
        assert _build.parse_arch_list("10.0+ptx;7.5") == ("7.5", "10.0+PTX")
        with pytest.raises(ValueError):
            _build.parse_arch_list("sm_86")
        assert _build.gencode_flags(("8.0", "9.0+PTX")) == [
            "-gencode=arch=compute_80,code=sm_80",
            "-gencode=arch=compute_90,code=sm_90",
            "-gencode=arch=compute_90,code=compute_90",
        ]
        monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.6 7.5")
        assert _build.resolve_arch_list(None) == (("7.5", "8.6"), "TORCH_CUDA_ARCH_LIST=8.6 7.5")
        assert _build.resolve_arch_list("8.9")[0] == ("8.9",)

    def test_doctor_checks(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        from sym3d.cli.doctor import DoctorCheck

        monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.0")
        checks = _build.kernel_doctor_checks()
        assert checks and all(isinstance(c, DoctorCheck) and not c.required for c in checks)
        names = [c.name for c in checks]
        assert (
            "EG3D kernels: nvcc and CUDA_HOME" in names
            and "EG3D kernels: GPU architecture" in names
        )
        builds = [c for c in checks if c.name.endswith(" build")]
        assert len(builds) == 2 and not any(c.ok for c in builds)  # nothing built in this cache
        assert all("python -m sym3d_eg3d.ops" in c.fix for c in builds)
        for c in checks:
            assert c.ok or c.fix, c


def test_kernel_sources_ship_with_the_package() -> None:
    for spec in _build.EXTENSIONS.values():
        for name in spec.files():
            assert (_build.CSRC_DIR / name).is_file(), name
