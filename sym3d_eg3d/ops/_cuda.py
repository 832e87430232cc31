"""Autograd wrappers around the compiled kernels (built by :mod:`sym3d_eg3d.ops._build`).

The public functions here take the arguments of their twins in :mod:`sym3d_eg3d.ops.reference`,
validate them with the same typed errors, and run the kernels. Normally they are reached through
:func:`sym3d_eg3d.ops.bias_act` / :func:`sym3d_eg3d.ops.upfirdn2d` with ``impl="cuda"`` or
``"auto"``. The ``kernel`` argument selects the compiled module; by default it is the one in
:data:`sym3d_eg3d.ops._build.KERNELS`. Tests pass the host build instead, which runs the same
per-element code on CPU tensors.

Gradients:

* ``upfirdn2d`` is linear in ``x``; its gradient is another ``upfirdn2d`` of the incoming gradient
  with the filter flipped, up and down swapped, and the padding mirrored (:func:`adjoint_config`).
  The gradient is computed by the same autograd function, so every order is available.
* ``bias_act``: ``dx = dy * S`` with ``S`` the local slope (``gain * act'`` inside the clamp, 0
  outside) and ``db`` the sum of ``dx`` over every dimension but ``dim``. ``S`` is recomputed from
  the saved output ``y`` when the activation allows it (cheaper on memory: ``y`` is usually kept
  alive by the next layer anyway), otherwise from the saved input ``x`` and ``b``. The first-order
  gradient is itself differentiable, giving second-order gradients (for activations with a
  non-zero second derivative; zero for the piecewise-linear ones, as in the reference). A third
  derivative raises :class:`NotImplementedError`; use ``impl="ref"`` for that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch

from sym3d.errors import ConfigError, ShapeError, UserInputError
from sym3d_eg3d.ops import _build
from sym3d_eg3d.ops.reference import activation_spec, filter_size, parse_padding, parse_scaling

__all__ = [
    "BiasActConfig",
    "Upfirdn2dConfig",
    "bias_act",
    "bias_act_config",
    "bias_act_unsupported",
    "upfirdn2d",
    "upfirdn2d_config",
    "adjoint_config",
]

# Kernel modes; they equal the Mode enum in csrc/bias_act.h.
MODE_FORWARD = 0
MODE_SLOPE_FROM_X = 1
MODE_SLOPE_FROM_Y = 2
MODE_CURVE_FROM_X = 3
MODE_CURVE_FROM_Y = 4

_NO_CLAMP = -1.0


def _empty_like(x: torch.Tensor) -> torch.Tensor:
    return x.new_empty([0])


# ---------------------------------------------------------------------------------------------
# bias_act
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BiasActConfig:
    """The resolved scalar arguments of one ``bias_act`` call.

    Attributes:
        act: the kernel's activation code (``ActivationSpec.cuda_index``).
        alpha: activation shape parameter.
        gain: output scale.
        clamp: clamp limit, or -1 for none.
        dim: the dimension the bias runs along.
        from_y: the gradient is computed from the output ``y`` (else from ``x`` and ``b``).
        has_curve: the activation has a non-zero second derivative.

    """

    act: int
    alpha: float
    gain: float
    clamp: float
    dim: int
    from_y: bool
    has_curve: bool

    def kernel_args(self) -> tuple[int, float, float, float, int]:
        """``(act, alpha, gain, clamp, dim)`` as the kernel takes them."""
        return self.act, self.alpha, self.gain, self.clamp, self.dim


def bias_act_config(
    x: torch.Tensor,
    b: torch.Tensor | None,
    dim: int,
    act: str,
    alpha: float | None,
    gain: float | None,
    clamp: float | None,
) -> BiasActConfig:
    """Validate the arguments like :func:`reference.bias_act` and resolve the defaults.

    Raises:
        ConfigError: unknown ``act`` or a negative ``clamp``.
        ShapeError: ``b`` does not fit ``x``.
        UserInputError: ``x`` is not floating, or ``b`` differs from ``x`` in dtype or device.

    """
    spec = activation_spec(act)
    if clamp is not None and clamp < 0:
        raise ConfigError(f"bias_act: clamp must be None or >= 0, got {clamp}.")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise UserInputError(
            f"bias_act: x must be a floating-point tensor, got {getattr(x, 'dtype', type(x))}."
        )
    alpha_f = float(spec.default_alpha if alpha is None else alpha)
    gain_f = float(spec.default_gain if gain is None else gain)
    if b is not None:
        if not 0 <= dim < x.ndim:
            raise ShapeError("x", f"a tensor with dimension {dim}", x.shape)
        if b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ShapeError("b", f"[{x.shape[dim]}] (x.shape[{dim}])", b.shape)
        reason = bias_act_unsupported(x, b)
        if reason:
            raise UserInputError(f"bias_act: {reason}.", hint="pass b.to(x) or use impl='ref'.")
    # S can be recovered from y = gain * act(u) when gain != 0 and act(u) tells u's side of the
    # kink; lrelu with a negative slope maps both sides to positive values, so it needs x.
    from_y = spec.grad_uses != "x" and gain_f != 0 and not (spec.name == "lrelu" and alpha_f < 0)
    return BiasActConfig(
        act=spec.cuda_index,
        alpha=alpha_f,
        gain=gain_f,
        clamp=_NO_CLAMP if clamp is None else float(clamp),
        dim=int(dim),
        from_y=from_y,
        has_curve=spec.has_second_grad,
    )


def bias_act_unsupported(x: torch.Tensor, b: torch.Tensor | None) -> str | None:
    """Why the kernel cannot take ``(x, b)`` as given (``None`` when it can).

    The kernel computes in the dtype of ``x``; the reference would promote a bias of another
    dtype, so ``impl="auto"`` routes such calls to the reference to keep its result.
    """
    if b is None:
        return None
    if b.dtype != x.dtype:
        return f"b has dtype {b.dtype} but x has {x.dtype}; the kernel needs them equal"
    if b.device != x.device:
        return f"b is on {b.device} but x is on {x.device}"
    return None


def _sum_except(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sum over every dimension but ``dim`` (the bias gradient)."""
    others = [d for d in range(t.ndim) if d != dim]
    return t.sum(dim=others) if others else t


class _BiasAct(torch.autograd.Function):
    """y = clamp(gain * act(x + b))."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, b: torch.Tensor | None, cfg: BiasActConfig, kernel: ModuleType
    ) -> torch.Tensor:
        # Inputs arrive contiguous (made so outside, where autograd sees it): a copy made in
        # here would be saved disconnected from the graph and lose second-order gradients.
        b_arg = _empty_like(x) if b is None else b
        y = kernel.bias_act(x, _empty_like(x), b_arg, MODE_FORWARD, *cfg.kernel_args())
        ctx.cfg, ctx.kernel, ctx.has_bias = cfg, kernel, b is not None
        if cfg.from_y:
            ctx.save_for_backward(y)
        else:
            ctx.save_for_backward(x, b_arg)
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        cfg, kernel = ctx.cfg, ctx.kernel
        need_x, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_x or need_b):
            return None, None, None, None
        if cfg.from_y:
            (y,) = ctx.saved_tensors
            dx = _BiasActSlope.apply(dy.contiguous(), y, None, cfg, kernel)
        else:
            x, b = ctx.saved_tensors
            dx = _BiasActSlope.apply(dy.contiguous(), x, b if ctx.has_bias else None, cfg, kernel)
        db = _sum_except(dx, cfg.dim) if need_b else None
        return (dx if need_x else None), db, None, None


class _BiasActSlope(torch.autograd.Function):
    """dx = dy * S(ref), with ref = y (from_y) or ref = x plus bias b."""

    @staticmethod
    def forward(
        ctx: Any,
        dy: torch.Tensor,
        ref: torch.Tensor,
        b: torch.Tensor | None,
        cfg: BiasActConfig,
        kernel: ModuleType,
    ) -> torch.Tensor:
        b_arg = _empty_like(dy) if b is None else b
        mode = MODE_SLOPE_FROM_Y if cfg.from_y else MODE_SLOPE_FROM_X
        dx = kernel.bias_act(dy, ref, b_arg, mode, *cfg.kernel_args())
        ctx.cfg, ctx.kernel, ctx.has_bias = cfg, kernel, b is not None
        ctx.save_for_backward(dy, ref, b_arg)
        return dx

    @staticmethod
    def backward(ctx: Any, ddx: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        cfg, kernel = ctx.cfg, ctx.kernel
        dy, ref, b = ctx.saved_tensors
        b_opt = b if ctx.has_bias else None
        need_dy, need_ref, need_b = ctx.needs_input_grad[:3]
        d_dy = _BiasActSlope.apply(ddx.contiguous(), ref, b_opt, cfg, kernel) if need_dy else None
        d_ref = d_b = None
        if cfg.has_curve and (need_ref or need_b):
            # d(dy * S(ref)) / d ref = dy * dS/dref; for ref = x + b the same goes to b, summed.
            d_ref = _BiasActCurve.apply((ddx * dy).contiguous(), ref, b_opt, cfg, kernel)
            if need_b and b_opt is not None:
                d_b = _sum_except(d_ref, cfg.dim)
            if not need_ref:
                d_ref = None
        return d_dy, d_ref, d_b, None, None


class _BiasActCurve(torch.autograd.Function):
    """t * dS/dref; the end of the chain (no third derivative)."""

    @staticmethod
    def forward(
        ctx: Any,
        t: torch.Tensor,
        ref: torch.Tensor,
        b: torch.Tensor | None,
        cfg: BiasActConfig,
        kernel: ModuleType,
    ) -> torch.Tensor:
        b_arg = _empty_like(t) if b is None else b
        mode = MODE_CURVE_FROM_Y if cfg.from_y else MODE_CURVE_FROM_X
        return kernel.bias_act(t, ref, b_arg, mode, *cfg.kernel_args())

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        raise RuntimeError(
            "bias_act: the CUDA kernel provides first- and second-order gradients only; "
            "use impl='ref' for third-order gradients."
        )


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    *,
    kernel: ModuleType | None = None,
) -> torch.Tensor:
    """Kernel version of :func:`sym3d_eg3d.ops.reference.bias_act` (same arguments and errors).

    Args:
        x: input of any shape; float16, bfloat16, float32 or float64.
        b: optional bias ``[x.shape[dim]]`` with the dtype and device of ``x``.
        dim: the dimension ``b`` runs along.
        act: a name from :data:`sym3d_eg3d.ops.reference.ACTIVATIONS`.
        alpha: activation shape parameter (``None``: table default).
        gain: output scale (``None``: table default).
        clamp: clamp limit after the gain, or ``None``.
        kernel: the compiled module; ``None`` builds or loads it through ``KERNELS``.

    Raises:
        KernelBuildError: ``kernel`` is ``None`` and the kernel cannot be built.

    """
    cfg = bias_act_config(x, b, dim, act, alpha, gain, clamp)
    module = kernel if kernel is not None else _build.KERNELS.get("bias_act")
    return _BiasAct.apply(x.contiguous(), None if b is None else b.contiguous(), cfg, module)


# ---------------------------------------------------------------------------------------------
# upfirdn2d
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upfirdn2dConfig:
    """Resolved scalar arguments of one ``upfirdn2d`` call (pairs are ``(x, y)``)."""

    up: tuple[int, int]
    down: tuple[int, int]
    padding: tuple[int, int, int, int]  # x0, x1, y0, y1
    flip: bool
    gain: float

    def kernel_args(self) -> tuple[Any, ...]:
        """The kernel's scalar arguments after ``x`` and ``f``."""
        (ux, uy), (dx, dy), (px0, px1, py0, py1) = self.up, self.down, self.padding
        return ux, uy, dx, dy, px0, px1, py0, py1, self.flip, self.gain


def upfirdn2d_config(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int | Sequence[int],
    down: int | Sequence[int],
    padding: int | Sequence[int],
    flip_filter: bool,
    gain: float,
) -> Upfirdn2dConfig:
    """Validate like :func:`reference.upfirdn2d` and resolve the arguments.

    Raises:
        ShapeError: ``x`` is not 4-D or the padded image is smaller than the filter.
        UserInputError: the filter is not float32, requires grad, or is on another device.
        ConfigError: bad ``up``, ``down`` or ``padding``.

    """
    fw, fh = filter_size(f)
    if f.dtype != torch.float32:
        raise UserInputError(
            f"f: expected a float32 filter, got {f.dtype}.", hint="use setup_filter()."
        )
    if f.requires_grad:
        raise UserInputError("f: the filter must not require grad; gradients flow to x only.")
    if not x.is_floating_point():
        raise UserInputError(f"upfirdn2d: x must be a floating-point tensor, got {x.dtype}.")
    if f.device != x.device:
        raise UserInputError(
            f"f: expected the filter on {x.device} like x, got {f.device}.",
            hint="move it with f.to(x.device).",
        )
    upx, upy = parse_scaling(up, "up")
    downx, downy = parse_scaling(down, "down")
    px0, px1, py0, py1 = parse_padding(padding)
    in_h, in_w = x.shape[2], x.shape[3]
    padded_w = in_w * upx + px0 + px1
    padded_h = in_h * upy + py0 + py1
    if padded_w < fw or padded_h < fh:
        raise ShapeError(
            "x",
            f"an image that is at least {fh}x{fw} after upsampling and padding",
            x.shape,
            hint=f"the padded image is {padded_h}x{padded_w}.",
        )
    return Upfirdn2dConfig(
        (upx, upy), (downx, downy), (px0, px1, py0, py1), bool(flip_filter), float(gain)
    )


def output_size(cfg: Upfirdn2dConfig, in_h: int, in_w: int, fh: int, fw: int) -> tuple[int, int]:
    """``(out_h, out_w)`` of an upfirdn2d call."""
    (ux, uy), (dx, dy), (px0, px1, py0, py1) = cfg.up, cfg.down, cfg.padding
    return (in_h * uy + py0 + py1 - fh) // dy + 1, (in_w * ux + px0 + px1 - fw) // dx + 1


def adjoint_config(
    cfg: Upfirdn2dConfig, in_hw: tuple[int, int], out_hw: tuple[int, int], f_hw: tuple[int, int]
) -> Upfirdn2dConfig:
    """The upfirdn2d that maps an output gradient ``[.., out_h, out_w]`` to the input gradient.

    Along one axis (input n, output m, up u, down d, padding p0, filter taps k) the forward op
    reads input pixel i at output pixel o with tap ``i*u + p0 - o*d``. Upsampling the gradient by
    d, padding it by ``k - 1 - p0`` in front, filtering with the flipped filter and decimating by
    u reads exactly those taps; the padding at the end, ``(n-1)*u + k - m*d - (k - 1 - p0)``,
    makes the result n pixels long.
    """
    (ux, uy), (dx, dy), (px0, _, py0, _) = cfg.up, cfg.down, cfg.padding
    (in_h, in_w), (out_h, out_w), (fh, fw) = in_hw, out_hw, f_hw
    ax0 = fw - 1 - px0
    ax1 = (in_w - 1) * ux + fw - out_w * dx - ax0
    ay0 = fh - 1 - py0
    ay1 = (in_h - 1) * uy + fh - out_h * dy - ay0
    return Upfirdn2dConfig((dx, dy), (ux, uy), (ax0, ax1, ay0, ay1), not cfg.flip, cfg.gain)


class _Upfirdn2d(torch.autograd.Function):
    """Linear in x; the backward is the adjoint upfirdn2d (itself differentiable)."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, f: torch.Tensor, cfg: Upfirdn2dConfig, kernel: ModuleType
    ) -> torch.Tensor:
        y = kernel.upfirdn2d(x, f, *cfg.kernel_args())
        ctx.cfg, ctx.kernel = cfg, kernel
        ctx.in_hw, ctx.out_hw = (x.shape[2], x.shape[3]), (y.shape[2], y.shape[3])
        ctx.save_for_backward(f)
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        (f,) = ctx.saved_tensors
        fw, fh = filter_size(f)
        adj = adjoint_config(ctx.cfg, ctx.in_hw, ctx.out_hw, (fh, fw))
        return _Upfirdn2d.apply(dy.contiguous(), f, adj, ctx.kernel), None, None, None


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int | Sequence[int] = 1,
    down: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    flip_filter: bool = False,
    gain: float = 1,
    *,
    kernel: ModuleType | None = None,
) -> torch.Tensor:
    """Kernel version of :func:`sym3d_eg3d.ops.reference.upfirdn2d` (same arguments and errors).

    Raises:
        KernelBuildError: ``kernel`` is ``None`` and the kernel cannot be built.

    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ShapeError("x", "[N,C,H,W]", getattr(x, "shape", ()))
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    cfg = upfirdn2d_config(x, f, up, down, padding, flip_filter, gain)
    module = kernel if kernel is not None else _build.KERNELS.get("upfirdn2d")
    return _Upfirdn2d.apply(x.contiguous(), f.contiguous(), cfg, module)
