"""Public EG3D ops with a selectable implementation (``impl="auto" | "ref" | "cuda"``).

Every op has a pure-PyTorch reference in :mod:`sym3d_eg3d.ops.reference`, which is the
specification. :func:`resolve_impl` is the single place that decides which implementation runs;
the CUDA kernels plug in there. Until they exist, ``"auto"`` always runs the reference and
``"cuda"`` fails loudly instead of silently falling back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from sym3d.errors import ConfigError, UserInputError
from sym3d_eg3d.ops import reference
from sym3d_eg3d.ops.reference import ACTIVATIONS, ActivationSpec, setup_filter

__all__ = [
    "ImplName",
    "IMPL_NAMES",
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


def resolve_impl(op: str, impl: str, x: torch.Tensor) -> Literal["ref"]:
    """Decide which implementation of ``op`` runs on ``x``.

    Args:
        op: the op name, used in messages.
        impl: ``"auto"`` (fastest available), ``"ref"`` (reference) or ``"cuda"`` (kernel only).
        x: the op's main input; its device decides what is possible.

    Returns:
        The implementation to run. For now always ``"ref"``.

    Raises:
        ConfigError: ``impl`` is not one of :data:`IMPL_NAMES`.
        UserInputError: ``impl="cuda"`` for a tensor that is not on a CUDA device.
        NotImplementedError: ``impl="cuda"`` on CUDA before the kernels are installed.

    """
    if impl not in IMPL_NAMES:
        raise ConfigError(f"{op}: impl must be one of {', '.join(IMPL_NAMES)}; got {impl!r}.")
    if impl == "cuda":
        if x.device.type != "cuda":
            raise UserInputError(
                f"{op}: impl='cuda' needs a tensor on a CUDA device, got one on {x.device}.",
                hint="use impl='auto' or impl='ref' on CPU.",
            )
        raise NotImplementedError("CUDA kernels are added by sym3d_eg3d.ops._cuda")
    return "ref"


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
    """Fused bias + activation + gain + clamp; see :func:`reference.bias_act`."""
    resolve_impl("bias_act", impl, x)
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
    """Upsample, pad, FIR-filter and downsample ``[N, C, H, W]``; see :func:`reference.upfirdn2d`."""
    resolve_impl("upfirdn2d", impl, x)
    return reference.upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)


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
    return upfirdn2d(x, f, up=(upx, upy), padding=pad, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


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
