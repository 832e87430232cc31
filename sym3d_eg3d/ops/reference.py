"""Pure-PyTorch reference implementations of the EG3D custom ops (the specification).

The CUDA kernels added later in :mod:`sym3d_eg3d.ops._cuda` must reproduce these functions. Each
function here is built from differentiable torch ops only, so first- and higher-order gradients
come for free. The semantics (defaults, padding conventions, filter flipping, gains) follow the
official StyleGAN2/EG3D ``bias_act`` and ``upfirdn2d`` ops, because the released weights were
trained with them.

Conventions used throughout:

* Images are ``[N, C, H, W]``. Scaling factors and paddings given as pairs are ``(x, y)``, i.e.
  width first; a 4-tuple padding is ``(x_before, x_after, y_before, y_after)``.
* A FIR filter is ``[fh, fw]`` (non-separable) or ``[taps]`` (separable, applied along x then
  along y). Filters are float32 and never receive gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F

from sym3d.errors import ConfigError, ShapeError, UserInputError

__all__ = [
    "ActivationSpec",
    "ACTIVATIONS",
    "activation_spec",
    "bias_act",
    "parse_scaling",
    "parse_padding",
    "filter_size",
    "setup_filter",
    "upfirdn2d",
    "filter2d_padding",
    "upsample2d_padding",
    "downsample2d_padding",
    "filter2d",
    "upsample2d",
    "downsample2d",
]

_SQRT2 = math.sqrt(2.0)


# ---------------------------------------------------------------------------------------------
# bias_act
# ---------------------------------------------------------------------------------------------


def _linear(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return x


def _relu(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return F.relu(x)


def _lrelu(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return F.leaky_relu(x, alpha)


def _tanh(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return torch.tanh(x)


def _sigmoid(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return torch.sigmoid(x)


def _elu(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return F.elu(x)


def _selu(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return F.selu(x)


def _softplus(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return F.softplus(x)


def _swish(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return torch.sigmoid(x) * x


@dataclass(frozen=True)
class ActivationSpec:
    """One row of the activation table shared by the reference and the CUDA kernels.

    Attributes:
        name: the activation name accepted by :func:`bias_act`.
        func: ``func(x, alpha) -> y``; ``alpha`` is only used by ``lrelu``.
        default_alpha: the shape parameter used when the caller passes ``alpha=None``.
        default_gain: the output scale used when the caller passes ``gain=None``. Activations
            that halve the signal energy (relu, lrelu, swish) default to ``sqrt(2)``.
        cuda_index: the kernel's integer code for this activation.
        grad_uses: which saved tensor the kernel's gradient formula reads: ``""`` (none),
            ``"x"`` (the input) or ``"y"`` (the output).
        has_second_grad: whether the kernel has a non-zero second derivative to propagate.

    """

    name: str
    func: Callable[[torch.Tensor, float], torch.Tensor]
    default_alpha: float
    default_gain: float
    cuda_index: int
    grad_uses: str
    has_second_grad: bool


ACTIVATIONS: Mapping[str, ActivationSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            ActivationSpec("linear", _linear, 0.0, 1.0, 1, "", False),
            ActivationSpec("relu", _relu, 0.0, _SQRT2, 2, "y", False),
            ActivationSpec("lrelu", _lrelu, 0.2, _SQRT2, 3, "y", False),
            ActivationSpec("tanh", _tanh, 0.0, 1.0, 4, "y", True),
            ActivationSpec("sigmoid", _sigmoid, 0.0, 1.0, 5, "y", True),
            ActivationSpec("elu", _elu, 0.0, 1.0, 6, "y", True),
            ActivationSpec("selu", _selu, 0.0, 1.0, 7, "y", True),
            ActivationSpec("softplus", _softplus, 0.0, 1.0, 8, "y", True),
            ActivationSpec("swish", _swish, 0.0, _SQRT2, 9, "x", True),
        )
    }
)
"""Immutable activation table, keyed by name."""


def activation_spec(act: str) -> ActivationSpec:
    """Return the :class:`ActivationSpec` for ``act``.

    Raises:
        ConfigError: if ``act`` is not a known activation; the message lists the known names.

    """
    try:
        return ACTIVATIONS[act]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown activation {act!r}; expected one of {', '.join(ACTIVATIONS)}."
        ) from None


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """Add a bias, apply an activation, scale, and clamp, in that order.

    Args:
        x: input of any shape and floating dtype.
        b: optional bias ``[x.shape[dim]]``, broadcast along every other dimension.
        dim: the dimension of ``x`` that ``b`` runs along (ignored without ``b``).
        act: a name from :data:`ACTIVATIONS`.
        alpha: activation shape parameter; ``None`` uses the table default (0.2 for lrelu).
        gain: output scale; ``None`` uses the table default (``sqrt(2)`` for relu/lrelu/swish).
        clamp: if not ``None``, the output is clamped to ``[-clamp, clamp]`` after the gain.

    Returns:
        A tensor with the shape and dtype of ``x``.

    Raises:
        ConfigError: unknown ``act`` or a negative ``clamp``.
        ShapeError: ``b`` is not 1-D or does not match ``x.shape[dim]``.

    """
    spec = activation_spec(act)
    if clamp is not None and clamp < 0:
        raise ConfigError(f"bias_act: clamp must be None or >= 0, got {clamp}.")
    alpha_f = float(spec.default_alpha if alpha is None else alpha)
    gain_f = float(spec.default_gain if gain is None else gain)

    if b is not None:
        if not 0 <= dim < x.ndim:
            raise ShapeError("x", f"a tensor with dimension {dim}", x.shape)
        if b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ShapeError("b", f"[{x.shape[dim]}] (x.shape[{dim}])", b.shape)
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = spec.func(x, alpha_f)
    if gain_f != 1:
        x = x * gain_f
    if clamp is not None:
        x = x.clamp(-float(clamp), float(clamp))
    return x


# ---------------------------------------------------------------------------------------------
# upfirdn2d and its helpers
# ---------------------------------------------------------------------------------------------


def parse_scaling(scaling: int | Sequence[int], name: str = "scaling") -> tuple[int, int]:
    """Normalise an up/down factor to ``(sx, sy)``; each must be an int >= 1."""
    pair = [scaling, scaling] if isinstance(scaling, int) else list(scaling)
    if len(pair) != 2 or not all(isinstance(s, int) and s >= 1 for s in pair):
        raise ConfigError(
            f"{name}: expected an int >= 1 or a pair (x, y) of them, got {scaling!r}."
        )
    return pair[0], pair[1]


def parse_padding(padding: int | Sequence[int], name: str = "padding") -> tuple[int, int, int, int]:
    """Normalise a padding to ``(x0, x1, y0, y1)``; negative values crop."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    pad = list(padding)
    if not all(isinstance(p, int) for p in pad) or len(pad) not in (2, 4):
        raise ConfigError(
            f"{name}: expected an int, (x, y) or (x0, x1, y0, y1) of ints, got {padding!r}."
        )
    if len(pad) == 2:
        return pad[0], pad[0], pad[1], pad[1]
    return pad[0], pad[1], pad[2], pad[3]


def filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """Return ``(fw, fh)`` of a filter; ``None`` is the 1x1 identity."""
    if f is None:
        return 1, 1
    if not isinstance(f, torch.Tensor) or f.ndim not in (1, 2):
        raise ShapeError("f", "[fh, fw] or [taps]", getattr(f, "shape", ()))
    fw = int(f.shape[-1])
    fh = int(f.shape[0])
    if fw < 1 or fh < 1:
        raise ShapeError("f", "a non-empty filter", f.shape)
    return fw, fh


def setup_filter(
    f: Any,
    device: torch.device | str = "cpu",
    normalize: bool = True,
    flip_filter: bool = False,
    gain: float = 1,
    separable: bool | None = None,
) -> torch.Tensor:
    """Build a float32 FIR filter for :func:`upfirdn2d` from taps or a 2-D kernel.

    Args:
        f: ``None`` (identity), a scalar, 1-D taps, or a 2-D kernel (tensor, array or list).
        device: where to put the result.
        normalize: divide by the sum so a constant signal keeps its magnitude.
        flip_filter: flip the filter along every axis.
        gain: overall signal gain; a 2-D filter is multiplied by ``gain``, a separable one by
            ``sqrt(gain)`` (it is applied twice).
        separable: return separable taps; ``None`` picks separable only for 1-D input with at
            least 8 taps. Short 1-D taps become their outer product.

    Returns:
        ``[fh, fw]`` or ``[taps]`` float32.

    """
    f = torch.as_tensor(1 if f is None else f, dtype=torch.float32)
    if f.ndim > 2 or f.numel() == 0:
        raise ShapeError("f", "a scalar, [taps] or [fh, fw] with at least one tap", f.shape)
    if f.ndim == 0:
        f = f.reshape(1)
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if f.ndim != (1 if separable else 2):
        raise ConfigError("setup_filter: a 2-D kernel cannot be made separable.")
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int | Sequence[int] = 1,
    down: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    flip_filter: bool = False,
    gain: float = 1,
) -> torch.Tensor:
    """Upsample by zero insertion, pad (or crop), convolve with a FIR filter, then decimate.

    For each channel: (1) insert ``up-1`` zeros after every pixel, (2) pad with zeros, negative
    padding cropping, (3) convolve with ``f`` keeping only outputs whose footprint lies inside
    the padded image, (4) keep every ``down``-th pixel.

    Args:
        x: ``[N, C, H, W]`` float16/32/64.
        f: float32 filter ``[fh, fw]`` or separable ``[taps]``, or ``None`` for identity.
        up: integer upsampling factor, ``int`` or ``(x, y)``.
        down: integer downsampling factor, ``int`` or ``(x, y)``.
        padding: with respect to the upsampled image: ``int``, ``(x, y)`` or
            ``(x0, x1, y0, y1)``.
        flip_filter: ``False`` convolves (the filter is flipped), ``True`` correlates.
        gain: signal gain; the filter is scaled by ``gain ** (f.ndim / 2)``.

    Returns:
        ``[N, C, (H*up_y + pad_y0 + pad_y1 - fh) // down_y + 1, ...]`` in ``x.dtype``.

    Raises:
        ShapeError: ``x`` is not 4-D or the padded image is smaller than the filter.
        UserInputError: the filter is not float32 or requires grad.

    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ShapeError("x", "[N,C,H,W]", getattr(x, "shape", ()))
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    fw, fh = filter_size(f)
    if f.dtype != torch.float32:
        raise UserInputError(
            f"f: expected a float32 filter, got {f.dtype}.", hint="use setup_filter()."
        )
    if f.requires_grad:
        raise UserInputError("f: the filter must not require grad; gradients flow to x only.")
    batch, channels, in_h, in_w = x.shape
    upx, upy = parse_scaling(up, "up")
    downx, downy = parse_scaling(down, "down")
    px0, px1, py0, py1 = parse_padding(padding)

    padded_w = in_w * upx + px0 + px1
    padded_h = in_h * upy + py0 + py1
    if padded_w < fw or padded_h < fh:
        raise ShapeError(
            "x",
            f"an image that is at least {fh}x{fw} after upsampling and padding",
            x.shape,
            hint=f"the padded image is {padded_h}x{padded_w}.",
        )

    if (upx > 1 or upy > 1) and x.dtype in (torch.float32, torch.float64):
        return _upfirdn2d_transposed(
            x, f, (upx, upy), (downx, downy), (px0, px1, py0, py1), flip_filter, gain
        )

    # Zero insertion: give every pixel a trailing block of (up-1) zeros along each axis.
    x = x.reshape(batch, channels, in_h, 1, in_w, 1)
    x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
    x = x.reshape(batch, channels, in_h * upy, in_w * upx)

    # Positive padding first, then crop where the padding is negative.
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]

    # conv2d correlates, so a true convolution needs the flipped filter.
    f = f * (gain ** (f.ndim / 2))
    f = f.to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    kernel = f[None, None].repeat([channels, 1] + [1] * f.ndim)  # depthwise: [C, 1, ...]
    if f.ndim == 2:
        x = F.conv2d(x, kernel, groups=channels)
    else:
        x = F.conv2d(x, kernel.unsqueeze(2), groups=channels)  # along x: [C, 1, 1, taps]
        x = F.conv2d(x, kernel.unsqueeze(3), groups=channels)  # along y: [C, 1, taps, 1]

    return x[:, :, ::downy, ::downx]


def _upfirdn2d_transposed(
    x: torch.Tensor,
    f: torch.Tensor,
    up: tuple[int, int],
    down: tuple[int, int],
    padding: tuple[int, int, int, int],
    flip_filter: bool,
    gain: float,
) -> torch.Tensor:
    """:func:`upfirdn2d` with ``up > 1`` as a strided transposed convolution (the same sums).

    Zero insertion followed by a convolution spends ``up_x * up_y`` times the work on inserted
    zeros; a transposed convolution with stride ``up`` multiplies only the real pixels (about
    twice as fast on the CPU for the 4x4 filter at 2x, forward and backward). Output ``o`` of
    the zero-insertion route is output ``o + taps - 1 - pad_before`` of the full transposed
    convolution along each axis, so the padding becomes a crop (or zero padding) of that
    result. Values differ from the zero-insertion route by float rounding only.
    """
    _, channels, in_h, in_w = x.shape
    (upx, upy), (downx, downy), (px0, px1, py0, py1) = up, down, padding
    fw, fh = filter_size(f)
    # The transposed convolution convolves; the zero-insertion route correlates with the
    # flipped filter unless flip_filter, so the weight is f itself unless flip_filter.
    w = (f * (gain ** (f.ndim / 2))).to(x.dtype)
    if flip_filter:
        w = w.flip(list(range(w.ndim)))
    if w.ndim == 2:
        x = F.conv_transpose2d(
            x, w[None, None].expand(channels, 1, fh, fw), stride=(upy, upx), groups=channels
        )
    else:
        x = F.conv_transpose2d(
            x, w.view(1, 1, 1, fw).expand(channels, 1, 1, fw), stride=(1, upx), groups=channels
        )
        x = F.conv_transpose2d(
            x, w.view(1, 1, fh, 1).expand(channels, 1, fh, 1), stride=(upy, 1), groups=channels
        )
    out_h = in_h * upy + py0 + py1 - fh + 1
    out_w = in_w * upx + px0 + px1 - fw + 1
    sy, sx = fh - 1 - py0, fw - 1 - px0  # where output 0 sits in the transposed result
    x = F.pad(x, [-sx, out_w + sx - x.shape[3], -sy, out_h + sy - x.shape[2]])
    return x[:, :, ::downy, ::downx]


def filter2d_padding(
    f: torch.Tensor | None, padding: int | Sequence[int] = 0
) -> tuple[int, int, int, int]:
    """The :func:`upfirdn2d` padding that makes :func:`filter2d` keep the input size."""
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    return px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2


def upsample2d_padding(
    f: torch.Tensor | None, up: int | Sequence[int] = 2, padding: int | Sequence[int] = 0
) -> tuple[int, int, int, int]:
    """The :func:`upfirdn2d` padding that makes :func:`upsample2d` output ``up`` times the input."""
    upx, upy = parse_scaling(up, "up")
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    return (
        px0 + (fw + upx - 1) // 2,
        px1 + (fw - upx) // 2,
        py0 + (fh + upy - 1) // 2,
        py1 + (fh - upy) // 2,
    )


def downsample2d_padding(
    f: torch.Tensor | None, down: int | Sequence[int] = 2, padding: int | Sequence[int] = 0
) -> tuple[int, int, int, int]:
    """The :func:`upfirdn2d` padding that makes :func:`downsample2d` output ``1/down`` of the input."""
    downx, downy = parse_scaling(down, "down")
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    return (
        px0 + (fw - downx + 1) // 2,
        px1 + (fw - downx) // 2,
        py0 + (fh - downy + 1) // 2,
        py1 + (fh - downy) // 2,
    )


def filter2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    padding: int | Sequence[int] = 0,
    flip_filter: bool = False,
    gain: float = 1,
) -> torch.Tensor:
    """Filter ``[N, C, H, W]`` images, keeping their size; ``padding`` is added on top."""
    return upfirdn2d(x, f, padding=filter2d_padding(f, padding), flip_filter=flip_filter, gain=gain)


def upsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int | Sequence[int] = 2,
    padding: int | Sequence[int] = 0,
    flip_filter: bool = False,
    gain: float = 1,
) -> torch.Tensor:
    """Upsample ``[N, C, H, W]`` images by ``up`` with the FIR filter ``f``.

    The filter gain is multiplied by ``up_x * up_y`` so that zero insertion does not darken the
    signal; ``padding`` is with respect to the output and added on top of the default.
    """
    upx, upy = parse_scaling(up, "up")
    return upfirdn2d(
        x,
        f,
        up=(upx, upy),
        padding=upsample2d_padding(f, (upx, upy), padding),
        flip_filter=flip_filter,
        gain=gain * upx * upy,
    )


def downsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    down: int | Sequence[int] = 2,
    padding: int | Sequence[int] = 0,
    flip_filter: bool = False,
    gain: float = 1,
) -> torch.Tensor:
    """Low-pass filter ``[N, C, H, W]`` images with ``f`` and keep every ``down``-th pixel."""
    return upfirdn2d(
        x,
        f,
        down=down,
        padding=downsample2d_padding(f, down, padding),
        flip_filter=flip_filter,
        gain=gain,
    )
