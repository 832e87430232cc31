"""Basic StyleGAN2 layers: equalised-lr linear and conv layers and the modulated convolution.

Parameter names (``weight``, ``bias``) and shapes match the official state_dict. Weights are
stored unscaled and multiplied by their He-init gain at run time ("equalised learning rate").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from sym3d_eg3d import ops
from sym3d_eg3d.networks.resample import conv2d_resample
from sym3d_eg3d.ops.reference import activation_spec

__all__ = [
    "normalize_2nd_moment",
    "modulated_conv2d",
    "FullyConnectedLayer",
    "Conv2dLayer",
]


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale ``x`` to unit root-mean-square along ``dim``: ``x * rsqrt(mean(x^2) + eps)``."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int | Sequence[int] = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool = True,
    *,
    impl: str = "auto",
) -> torch.Tensor:
    """StyleGAN2 modulated (and optionally demodulated) convolution.

    Each sample ``n`` is convolved with ``weight * styles[n]`` along the input channels; with
    ``demodulate`` every output channel's kernel is rescaled to unit L2 norm.

    Args:
        x: ``[N, I, H, W]`` activations.
        weight: ``[O, I, kh, kw]`` unmodulated kernel.
        styles: ``[N, I]`` per-sample input-channel scales.
        noise: optional, broadcastable to the output ``[N, O, H', W']``; added after the conv.
        up: integer upsampling factor.
        down: integer downsampling factor.
        padding: with respect to the upsampled image.
        resample_filter: FIR filter for resampling (from :func:`ops.setup_filter`).
        demodulate: normalise each output kernel.
        flip_weight: ``True`` correlates (as ``F.conv2d``), ``False`` convolves.
        fused_modconv: ``True`` builds per-sample kernels and runs one grouped conv;
            ``False`` scales the activations before and after one shared conv. The two differ
            by float rounding only (about 1e-6 relative).
        impl: op implementation for the resampling filter.

    Returns:
        ``[N, O, H', W']`` in the dtype of ``x``.

    """
    batch = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape

    # Keep float16 activations away from overflow: pre-scale weights and styles (demodulation
    # removes the scale again).
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (
            1 / math.sqrt(in_ch * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True)
        )
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    w = None
    dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(batch, 1, -1, 1, 1)  # [N, O, I, kh, kw]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, O]
    if demodulate and fused_modconv:
        w = w * dcoefs.reshape(batch, -1, 1, 1, 1)

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(batch, -1, 1, 1)
        x = conv2d_resample(
            x,
            weight.to(x.dtype),
            f=resample_filter,
            up=up,
            down=down,
            padding=padding,
            flip_weight=flip_weight,
            impl=impl,
        )
        if demodulate and noise is not None:
            return torch.addcmul(noise.to(x.dtype), x, dcoefs.to(x.dtype).reshape(batch, -1, 1, 1))
        if demodulate:
            return x * dcoefs.to(x.dtype).reshape(batch, -1, 1, 1)
        if noise is not None:
            return x + noise.to(x.dtype)
        return x

    # Fused: fold the batch into the channel axis and run one grouped convolution.
    x = x.reshape(1, -1, *x.shape[2:])
    x = conv2d_resample(
        x,
        w.reshape(-1, in_ch, kh, kw).to(x.dtype),
        f=resample_filter,
        up=up,
        down=down,
        padding=padding,
        groups=batch,
        flip_weight=flip_weight,
        impl=impl,
    )
    x = x.reshape(batch, -1, *x.shape[2:])
    if noise is not None:
        # Add in the promoted dtype and cast back, as an in-place add into x would.
        x = (x + noise).to(x.dtype)
    return x


class FullyConnectedLayer(nn.Module):
    """Equalised-lr linear layer with a fused bias + activation.

    Args:
        in_features: input width.
        out_features: output width.
        bias: learn an additive bias.
        activation: a name from :data:`ops.ACTIVATIONS`.
        lr_multiplier: learning-rate multiplier; the weight is stored divided by it and
            scaled by ``lr_multiplier / sqrt(in_features)`` at run time, the bias by
            ``lr_multiplier``.
        bias_init: initial bias value.

    Shape:
        ``[N, in_features] -> [N, out_features]``.

    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1,
        bias_init: float = 0,
    ) -> None:
        super().__init__()
        activation_spec(activation)
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.ops_impl = "auto"
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer to ``x [N, in_features]``."""
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        # Quirk (official numerics): linear layers use one addmm, the others matmul + bias_act;
        # the two round differently, and the released outputs depend on which one runs.
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        x = x.matmul(w.t())
        return ops.bias_act(x, b, act=self.activation, impl=self.ops_impl)

    def extra_repr(self) -> str:
        """One-line summary shown by ``repr``."""
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class Conv2dLayer(nn.Module):
    """Equalised-lr convolution with optional FIR resampling and fused bias + activation.

    EG3D generators only use it as the 1x1 skip of the ``resnet`` block architecture.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel size.
        bias: learn an additive bias.
        activation: a name from :data:`ops.ACTIVATIONS`.
        up: integer upsampling factor.
        down: integer downsampling factor.
        resample_filter: FIR taps for resampling.
        conv_clamp: clamp the output to ``[-conv_clamp, conv_clamp]``; ``None`` disables it.
        channels_last: store the weight in channels-last memory format.
        trainable: ``False`` stores weight and bias as buffers.

    Shape:
        ``[N, in_channels, H, W] -> [N, out_channels, H * up / down, W * up / down]``.

    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        down: int = 1,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        channels_last: bool = False,
        trainable: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.ops_impl = "auto"
        self.register_buffer("resample_filter", ops.setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = activation_spec(activation).default_gain

        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(
            memory_format=memory_format
        )
        bias_t = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = nn.Parameter(weight)
            self.bias = nn.Parameter(bias_t) if bias_t is not None else None
        else:
            self.register_buffer("weight", weight)
            if bias_t is not None:
                self.register_buffer("bias", bias_t)
            else:
                self.bias = None

    def forward(self, x: torch.Tensor, gain: float = 1) -> torch.Tensor:
        """Apply the layer; ``gain`` scales both the activation gain and the clamp."""
        w = self.weight * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        x = conv2d_resample(
            x,
            w.to(x.dtype),
            f=self.resample_filter,
            up=self.up,
            down=self.down,
            padding=self.padding,
            flip_weight=(self.up == 1),
            impl=self.ops_impl,
        )
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(
            x, b, act=self.activation, gain=act_gain, clamp=act_clamp, impl=self.ops_impl
        )

    def extra_repr(self) -> str:
        """One-line summary shown by ``repr``."""
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"activation={self.activation}, up={self.up}, down={self.down}"
        )
