"""2-D convolution combined with FIR up- or downsampling (StyleGAN2's ``conv2d_resample``).

The padding is applied once, with respect to the upsampled image, and the operation order of
each case below is kept as in the official implementation because the released weights (and
the parity fixtures) depend on it bit for bit: a transposed convolution followed by the FIR
filter for upsampling, the FIR filter followed by a strided convolution for downsampling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from sym3d_eg3d import ops
from sym3d_eg3d.ops.reference import filter_size, parse_padding

__all__ = ["conv2d_resample"]


def _conv(
    x: torch.Tensor,
    w: torch.Tensor,
    *,
    stride: int = 1,
    padding: int | Sequence[int] = 0,
    groups: int = 1,
    transpose: bool = False,
    correlate: bool = True,
) -> torch.Tensor:
    """Plain or transposed conv2d; ``correlate=False`` flips the kernel (true convolution)."""
    kh, kw = w.shape[2], w.shape[3]
    if not correlate and (kh > 1 or kw > 1):
        w = w.flip([2, 3])
    one_by_one = kh == kw == 1 and not transpose and stride == 1 and padding in (0, [0, 0])
    if one_by_one and x.device.type == "cpu":
        return _conv1x1(x, w, groups)
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def _conv1x1(x: torch.Tensor, w: torch.Tensor, groups: int) -> torch.Tensor:
    """A 1x1 (grouped) convolution as one batched matrix product over the pixels.

    Same sums as ``F.conv2d``; on the CPU ``conv2d`` takes a slow im2col route for some of
    these shapes (the per-sample weights of the fused modulated convolution), the GEMM does not.
    CPU only: on CUDA cuDNN keeps the memory format (channels-last) and is fast already.
    """
    n, c_in, h, wd = x.shape
    c_out = w.shape[0]
    y = torch.matmul(
        w.reshape(groups, c_out // groups, c_in // groups),
        x.reshape(n, groups, c_in // groups, h * wd),
    )  # [N, groups, C_out / groups, H * W]
    return y.reshape(n, c_out, h, wd)


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int | Sequence[int] = 0,
    groups: int = 1,
    flip_weight: bool = True,
    flip_filter: bool = False,
    *,
    impl: str = "auto",
) -> torch.Tensor:
    """Convolve ``x`` with ``w`` and resample by an integer factor with the FIR filter ``f``.

    Args:
        x: ``[N, C_in, H, W]``.
        w: ``[C_out, C_in // groups, kh, kw]`` in the dtype of ``x``.
        f: float32 FIR filter from :func:`ops.setup_filter`, or ``None`` (identity).
        up: integer upsampling factor >= 1.
        down: integer downsampling factor >= 1.
        padding: with respect to the upsampled image; ``int``, ``(x, y)`` or ``(x0, x1, y0, y1)``.
        groups: grouped convolution (the fused modulated conv uses one group per sample).
        flip_weight: ``True`` correlates like ``F.conv2d``; ``False`` convolves.
        flip_filter: ``True`` correlates with ``f``; ``False`` convolves.
        impl: op implementation passed to :func:`ops.upfirdn2d`.

    Returns:
        ``[N, C_out, H', W']``.

    """
    c_out, c_in_per_group, kh, kw = (int(s) for s in w.shape)
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = parse_padding(padding)

    # Extend the padding so the FIR filter's footprint is centred on the resampled grid.
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2

    # 1x1 kernel, downsampling only: decimate first, then convolve (cheaper).
    if kw == 1 and kh == 1 and down > 1 and up == 1:
        x = ops.upfirdn2d(
            x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter, impl=impl
        )
        return _conv(x, w, groups=groups, correlate=flip_weight)

    # 1x1 kernel, upsampling only: convolve first, then upsample.
    if kw == 1 and kh == 1 and up > 1 and down == 1:
        x = _conv(x, w, groups=groups, correlate=flip_weight)
        return ops.upfirdn2d(
            x,
            f,
            up=up,
            padding=[px0, px1, py0, py1],
            gain=up**2,
            flip_filter=flip_filter,
            impl=impl,
        )

    # Downsampling only: FIR filter, then a strided convolution.
    if down > 1 and up == 1:
        x = ops.upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter, impl=impl)
        return _conv(x, w, stride=down, groups=groups, correlate=flip_weight)

    # Upsampling (optionally followed by downsampling): transposed strided conv, then FIR filter.
    if up > 1:
        if groups == 1:
            w = w.transpose(0, 1)
        else:
            w = w.reshape(groups, c_out // groups, c_in_per_group, kh, kw)
            w = w.transpose(1, 2)
            w = w.reshape(groups * c_in_per_group, c_out // groups, kh, kw)
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        # The transposed conv can absorb the common (cropping) part of the padding.
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = _conv(
            x,
            w,
            stride=up,
            padding=[pyt, pxt],
            groups=groups,
            transpose=True,
            correlate=not flip_weight,
        )
        x = ops.upfirdn2d(
            x,
            f,
            padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt],
            gain=up**2,
            flip_filter=flip_filter,
            impl=impl,
        )
        if down > 1:
            x = ops.upfirdn2d(x, f, down=down, flip_filter=flip_filter, impl=impl)
        return x

    # No resampling and symmetric non-negative padding: conv2d pads by itself.
    if up == 1 and down == 1 and px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=[py0, px0], groups=groups, correlate=flip_weight)

    # General case: pad (asymmetric or cropping) via upfirdn2d, convolve, then decimate.
    x = ops.upfirdn2d(
        x,
        f if up > 1 else None,
        up=up,
        padding=[px0, px1, py0, py1],
        gain=up**2,
        flip_filter=flip_filter,
        impl=impl,
    )
    x = _conv(x, w, groups=groups, correlate=flip_weight)
    if down > 1:
        x = ops.upfirdn2d(x, f, down=down, flip_filter=flip_filter, impl=impl)
    return x
