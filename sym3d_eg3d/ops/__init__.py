"""Public EG3D ops with a selectable implementation (``impl="auto" | "ref" | "cuda"``).

Every op has a pure-PyTorch reference in :mod:`sym3d_eg3d.ops.reference`, which is the
specification, and a CUDA kernel (:mod:`sym3d_eg3d.ops._cuda`, sources in ``ops/csrc``, built
on first use by :mod:`sym3d_eg3d.ops._build`). :func:`resolve_impl` is the single place that
decides which one runs:

* ``impl="ref"``: the reference, on any device.
* ``impl="cuda"``: the kernel. A tensor that is not on a CUDA device is a
  :class:`~sym3d.errors.UserInputError`; a kernel that does not build raises
  :class:`~sym3d.errors.KernelBuildError` with the path of the build log.
* ``impl="auto"`` (default): CPU tensors use the reference, silently (that is the design, not a
  fallback). CUDA tensors use the kernel; if it does not build, a
  :class:`~sym3d.errors.KernelFallbackWarning` with the reason and the log path is shown once
  per op and process, and the reference is used. ``bias_act`` with a bias whose dtype or device
  differs from ``x`` also uses the reference (which promotes), so results never depend on it.

The environment variable ``SYM3D_EG3D_IMPL`` (``auto``, ``ref`` or ``cuda``) replaces
``impl="auto"``, i.e. the default; an explicit ``"ref"`` or ``"cuda"`` always wins.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

import torch

from sym3d.errors import ConfigError, UserInputError
from sym3d_eg3d.ops import _build, _cuda, reference
from sym3d_eg3d.ops.reference import ACTIVATIONS, ActivationSpec, setup_filter

__all__ = [
    "ImplName",
    "IMPL_NAMES",
    "IMPL_ENV",
    "default_impl",
    "resolve_impl",
    "ACTIVATIONS",
    "ActivationSpec",
    "bias_act",
    "setup_filter",
    "upfirdn2d",
    "filter2d",
    "upsample2d",
    "downsample2d",
]

ImplName = Literal["auto", "ref", "cuda"]
IMPL_NAMES: tuple[str, ...] = ("auto", "ref", "cuda")
IMPL_ENV = "SYM3D_EG3D_IMPL"

# Op name -> the kernel (key of _build.EXTENSIONS) that implements it.
_KERNEL_OF = {"bias_act": "bias_act", "upfirdn2d": "upfirdn2d"}


def default_impl() -> str:
    """What ``impl="auto"`` means in this process: ``$SYM3D_EG3D_IMPL`` or ``"auto"``.

    Raises:
        ConfigError: the variable holds something else than ``auto``, ``ref`` or ``cuda``.

    """
    value = os.environ.get(IMPL_ENV, "").strip().lower()
    if not value:
        return "auto"
    if value not in IMPL_NAMES:
        raise ConfigError(
            f"{IMPL_ENV} must be one of {', '.join(IMPL_NAMES)}; got {os.environ[IMPL_ENV]!r}.",
            hint=f"unset {IMPL_ENV} or set it to auto, ref or cuda.",
        )
    return value


def _on_cuda(x: torch.Tensor) -> bool:
    return x.device.type == "cuda"


def resolve_impl(
    op: str, impl: str, x: torch.Tensor, *, unsupported: str | None = None
) -> Literal["ref", "cuda"]:
    """Decide which implementation of ``op`` runs on ``x``.

    Args:
        op: ``"bias_act"`` or ``"upfirdn2d"``; also used in messages.
        impl: ``"auto"``, ``"ref"`` or ``"cuda"``; ``"auto"`` is first replaced by
            :func:`default_impl` (the ``SYM3D_EG3D_IMPL`` variable).
        x: the op's main input; its device decides what is possible.
        unsupported: a reason why the kernel cannot take these particular inputs, or ``None``.
            Under ``"auto"`` it selects the reference; under ``"cuda"`` it is a user error.

    Returns:
        ``"ref"`` or ``"cuda"``. For ``"cuda"`` the kernel has been built or loaded.

    Raises:
        ConfigError: ``impl`` (or ``SYM3D_EG3D_IMPL``) is not one of :data:`IMPL_NAMES`.
        UserInputError: ``"cuda"`` for a tensor that is not on a CUDA device, or for inputs the
            kernel does not take (``unsupported``).
        KernelBuildError: ``"cuda"`` and the kernel cannot be built; ``log_path`` has the log.

    """
    if impl not in IMPL_NAMES:
        raise ConfigError(f"{op}: impl must be one of {', '.join(IMPL_NAMES)}; got {impl!r}.")
    source = "impl"
    if impl == "auto":
        impl = default_impl()
        source = IMPL_ENV if impl != "auto" else source
    if impl == "ref":
        return "ref"
    on_cuda = _on_cuda(x)
    if impl == "cuda":
        if not on_cuda:
            raise UserInputError(
                f"{op}: {source}='cuda' needs a tensor on a CUDA device, got one on {x.device}.",
                hint="use impl='auto' or impl='ref' on CPU"
                + (f", or unset {IMPL_ENV}." if source == IMPL_ENV else "."),
            )
        if unsupported is not None:
            raise UserInputError(
                f"{op}: the CUDA kernel cannot take these inputs: {unsupported}.",
                hint="use impl='auto' or 'ref'.",
            )
        _build.KERNELS.get(_KERNEL_OF[op])
        return "cuda"
    if not on_cuda or unsupported is not None:
        return "ref"
    return "cuda" if _build.KERNELS.get_or_warn(_KERNEL_OF[op]) is not None else "ref"


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    *,
    impl: str = "auto",
) -> torch.Tensor:
    """Fused bias + activation + gain + clamp; see :func:`reference.bias_act`.

    ``impl`` picks the implementation (module docstring); the kernel computes in the dtype of
    ``x`` and keeps first- and second-order gradients.
    """
    unsupported = _cuda.bias_act_unsupported(x, b) if isinstance(x, torch.Tensor) else None
    if resolve_impl("bias_act", impl, x, unsupported=unsupported) == "cuda":
        return _cuda.bias_act(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)
    return reference.bias_act(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int | Sequence[int] = 1,
    down: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    flip_filter: bool = False,
    gain: float = 1,
    *,
    impl: str = "auto",
) -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample ``[N, C, H, W]``; see :func:`reference.upfirdn2d`.

    ``impl`` picks the implementation (module docstring); the kernel's gradient is again an
    ``upfirdn2d``, so gradients of every order are available.
    """
    if resolve_impl("upfirdn2d", impl, x) == "cuda":
        return _cuda.upfirdn2d(
            x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain
        )
    return reference.upfirdn2d(
        x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain
    )


def filter2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    padding: int | Sequence[int] = 0,
    flip_filter: bool = False,
    gain: float = 1,
    *,
    impl: str = "auto",
) -> torch.Tensor:
    """Size-preserving FIR filter; see :func:`reference.filter2d`."""
    pad = reference.filter2d_padding(f, padding)
    return upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int | Sequence[int] = 2,
    padding: int | Sequence[int] = 0,
    flip_filter: bool = False,
    gain: float = 1,
    *,
    impl: str = "auto",
) -> torch.Tensor:
    """FIR upsampling by ``up``; see :func:`reference.upsample2d`."""
    upx, upy = reference.parse_scaling(up, "up")
    pad = reference.upsample2d_padding(f, (upx, upy), padding)
    return upfirdn2d(
        x, f, up=(upx, upy), padding=pad, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl
    )


def downsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    down: int | Sequence[int] = 2,
    padding: int | Sequence[int] = 0,
    flip_filter: bool = False,
    gain: float = 1,
    *,
    impl: str = "auto",
) -> torch.Tensor:
    """FIR downsampling by ``down``; see :func:`reference.downsample2d`."""
    pad = reference.downsample2d_padding(f, down, padding)
    return upfirdn2d(x, f, down=down, padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)
