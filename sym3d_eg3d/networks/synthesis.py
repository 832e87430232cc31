"""StyleGAN2 synthesis network (the EG3D tri-plane backbone) and its building blocks.

EG3D uses the ``skip`` architecture at a fixed 256x256 with 96 output channels (three 32-channel
planes); the same blocks also make up the superresolution modules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from sym3d.checks import check_shape
from sym3d.errors import ConfigError
from sym3d_eg3d import ops
from sym3d_eg3d.networks.layers import Conv2dLayer, FullyConnectedLayer, modulated_conv2d
from sym3d_eg3d.networks.mapping import MappingNetwork
from sym3d_eg3d.ops.reference import activation_spec

__all__ = [
    "NOISE_MODES",
    "resolve_fused_modconv",
    "SynthesisLayer",
    "ToRGBLayer",
    "SynthesisBlock",
    "SynthesisNetwork",
    "Generator",
]

NOISE_MODES = ("random", "const", "none")
ARCHITECTURES = ("orig", "skip", "resnet")


def _check_noise_mode(noise_mode: str) -> None:
    if noise_mode not in NOISE_MODES:
        raise ConfigError(
            f"noise_mode must be one of {', '.join(NOISE_MODES)}; got {noise_mode!r}."
        )


def resolve_fused_modconv(
    fused_modconv: bool | str | None, default: bool | str, training: bool
) -> bool:
    """Resolve the fused-modconv choice of a block.

    ``None`` uses the block default; ``"inference_only"`` means fused in eval mode and non-fused
    in train mode (the official FFHQ setting).
    """
    choice = default if fused_modconv is None else fused_modconv
    if choice == "inference_only":
        return not training
    if not isinstance(choice, bool):
        raise ConfigError(
            f"fused_modconv must be a bool, None or 'inference_only'; got {choice!r}."
        )
    return choice


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution + per-pixel noise + bias + activation.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        w_dim: width of ``w``.
        resolution: output resolution (the noise map size).
        kernel_size: kernel size.
        up: 1, or 2 to upsample by a transposed conv followed by the FIR filter.
        use_noise: register ``noise_const`` / ``noise_strength``.
        activation: activation name.
        resample_filter: FIR taps for upsampling.
        conv_clamp: clamp after activation and gain; ``None`` disables it.
        channels_last: store the weight channels-last.

    Shape:
        ``x [N, in_channels, R/up, R/up], w [N, w_dim] -> [N, out_channels, R, R]``.

    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        activation: str = "lrelu",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.ops_impl = "auto"
        self.register_buffer("resample_filter", ops.setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.act_gain = activation_spec(activation).default_gain

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(
                memory_format=memory_format
            )
        )
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: str = "random",
        fused_modconv: bool = True,
        gain: float = 1,
    ) -> torch.Tensor:
        """Apply the layer.

        Args:
            x: ``[N, in_channels, R/up, R/up]``.
            w: ``[N, w_dim]``.
            noise_mode: ``"random"`` (fresh ``randn`` from the global RNG), ``"const"`` (the
                stored ``noise_const``) or ``"none"``.
            fused_modconv: grouped-conv (True) or activation-scaling (False) modulation.
            gain: extra gain on the activation (and clamp).

        """
        _check_noise_mode(noise_mode)
        in_res = self.resolution // self.up
        check_shape(x, ["N", self.in_channels, in_res, in_res], "x")
        styles = self.affine(w)

        noise = None
        if self.use_noise and noise_mode == "random":
            noise = (
                torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device)
                * self.noise_strength
            )
        if self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength

        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            noise=noise,
            up=self.up,
            padding=self.padding,
            resample_filter=self.resample_filter,
            flip_weight=(self.up == 1),
            fused_modconv=fused_modconv,
            impl=self.ops_impl,
        )
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(
            x,
            self.bias.to(x.dtype),
            act=self.activation,
            gain=act_gain,
            clamp=act_clamp,
            impl=self.ops_impl,
        )

    def extra_repr(self) -> str:
        """One-line summary shown by ``repr``."""
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, w_dim={self.w_dim}, "
            f"resolution={self.resolution}, up={self.up}, activation={self.activation}"
        )


class ToRGBLayer(nn.Module):
    """Modulated (not demodulated) 1x1 convolution to image channels, + bias, + clamp.

    Shape:
        ``x [N, in_channels, R, R], w [N, w_dim] -> [N, out_channels, R, R]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        kernel_size: int = 1,
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.conv_clamp = conv_clamp
        self.ops_impl = "auto"
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(
                memory_format=memory_format
            )
        )
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        """Project ``x [N, in_channels, R, R]`` to ``[N, out_channels, R, R]``."""
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            demodulate=False,
            fused_modconv=fused_modconv,
            impl=self.ops_impl,
        )
        return ops.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp, impl=self.ops_impl)

    def extra_repr(self) -> str:
        """One-line summary shown by ``repr``."""
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, w_dim={self.w_dim}"
        )


class SynthesisBlock(nn.Module):
    """One resolution level: (upsampling) conv0, conv1, and a ToRGB added to the running image.

    Args:
        in_channels: input channels; 0 makes this the first block, starting from a learned
            constant.
        out_channels: output channels.
        w_dim: width of ``w``.
        resolution: output resolution of this block.
        img_channels: channels of the running image (3, or 96 for the tri-plane backbone).
        is_last: the last block always has a ToRGB.
        architecture: ``"skip"`` (EG3D), ``"orig"`` or ``"resnet"``.
        resample_filter: FIR taps for up-sampling.
        conv_clamp: clamp of every conv output; ``None`` disables it.
        use_fp16: run in float16 (only on CUDA and unless ``force_fp32``).
        fp16_channels_last: channels-last memory format for float16.
        fused_modconv_default: ``True``, ``False`` or ``"inference_only"``.
        **layer_kwargs: forwarded to :class:`SynthesisLayer` (kernel_size, use_noise,
            activation).

    The block takes ``num_conv + num_torgb`` rows of ``ws``.

    """

    #: Whether conv0 and the running image are upsampled 2x (False in :class:`SynthesisBlockNoUp`).
    upsamples: bool = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        architecture: str = "skip",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = 256,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        fused_modconv_default: bool | str = True,
        **layer_kwargs: object,
    ) -> None:
        if architecture not in ARCHITECTURES:
            raise ConfigError(
                f"architecture must be one of {', '.join(ARCHITECTURES)}; got {architecture!r}."
            )
        super().__init__()
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.fused_modconv_default = fused_modconv_default
        self.ops_impl = "auto"
        self.register_buffer("resample_filter", ops.setup_filter(list(resample_filter)))
        self.num_conv = 0
        self.num_torgb = 0
        conv0_up = 2 if self.upsamples else 1

        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels,
                out_channels,
                w_dim=w_dim,
                resolution=resolution,
                up=conv0_up,
                resample_filter=resample_filter,
                conv_clamp=conv_clamp,
                channels_last=self.channels_last,
                **layer_kwargs,
            )
            self.num_conv += 1

        self.conv1 = SynthesisLayer(
            out_channels,
            out_channels,
            w_dim=w_dim,
            resolution=resolution,
            conv_clamp=conv_clamp,
            channels_last=self.channels_last,
            **layer_kwargs,
        )
        self.num_conv += 1

        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(
                out_channels,
                img_channels,
                w_dim=w_dim,
                conv_clamp=conv_clamp,
                channels_last=self.channels_last,
            )
            self.num_torgb += 1

        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(
                in_channels,
                out_channels,
                kernel_size=1,
                bias=False,
                up=conv0_up,
                resample_filter=resample_filter,
                channels_last=self.channels_last,
            )

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        *,
        noise_mode: str = "random",
        force_fp32: bool = False,
        fused_modconv: bool | str | None = None,
        update_emas: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the block.

        Args:
            x: features ``[N, in_channels, r, r]`` (``r = R/2``, or ``R`` without upsampling);
                ignored for the first block.
            img: running image ``[N, img_channels, r, r]`` or ``None``.
            ws: ``[N, num_conv + num_torgb, w_dim]``.
            noise_mode: see :class:`SynthesisLayer`.
            force_fp32: never use float16 (always the case off CUDA).
            fused_modconv: override of ``fused_modconv_default``.
            update_emas: unused; accepted for signature compatibility.

        Returns:
            ``(x [N, out_channels, R, R], img [N, img_channels, R, R] float32 or None)``.
            ``img`` is always a new tensor; the input ``img`` is never modified.

        """
        del update_emas
        check_shape(ws, ["N", self.num_conv + self.num_torgb, self.w_dim], "ws")
        w_iter = iter(ws.unbind(dim=1))
        if ws.device.type != "cuda":
            force_fp32 = True
        dtype = torch.float16 if self.use_fp16 and not force_fp32 else torch.float32
        memory_format = (
            torch.channels_last
            if self.channels_last and not force_fp32
            else torch.contiguous_format
        )
        fused = resolve_fused_modconv(fused_modconv, self.fused_modconv_default, self.training)
        in_res = self.resolution // 2 if self.upsamples else self.resolution

        if self.in_channels == 0:
            x = self.const.to(dtype=dtype, memory_format=memory_format)
            x = x.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        else:
            check_shape(x, ["N", self.in_channels, in_res, in_res], "x")
            x = x.to(dtype=dtype, memory_format=memory_format)

        if self.in_channels == 0:
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused)
        elif self.architecture == "resnet":
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused)
            x = self.conv1(
                x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused, gain=np.sqrt(0.5)
            )
            x = y + x
        else:
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused)

        if img is not None and self.upsamples:
            check_shape(img, ["N", self.img_channels, in_res, in_res], "img")
            img = ops.upsample2d(img, self.resample_filter, impl=self.ops_impl)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            if img is None:
                img = y
            elif self.upsamples:
                # img is this block's own upsampled copy and no backward needs it: sum in place
                # (no new image-sized buffer). A block that does not upsample got the caller's
                # tensor, whose aliasing quirk the super-resolution modules reproduce themselves.
                img = img.add_(y)
            else:
                img = img + y

        assert x.dtype == dtype
        assert img is None or img.dtype == torch.float32
        return x, img

    def extra_repr(self) -> str:
        """One-line summary shown by ``repr``."""
        return f"resolution={self.resolution}, architecture={self.architecture}"


class SynthesisNetwork(nn.Module):
    """Stack of :class:`SynthesisBlock` from 4x4 to ``img_resolution`` (attributes ``b4 ... bR``).

    Args:
        w_dim: width of ``w``.
        img_resolution: output resolution (power of two >= 4).
        img_channels: output channels.
        channel_base: channels at resolution ``r`` are ``min(channel_base // r, channel_max)``.
        channel_max: channel cap.
        num_fp16_res: the highest ``num_fp16_res`` resolutions use float16 (never below 8).
        **block_kwargs: forwarded to every :class:`SynthesisBlock`.

    Shape:
        ``ws [N, num_ws, w_dim] -> [N, img_channels, img_resolution, img_resolution]``.

    """

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 4,
        **block_kwargs: object,
    ) -> None:
        if img_resolution < 4 or img_resolution & (img_resolution - 1) != 0:
            raise ConfigError(f"img_resolution must be a power of two >= 4; got {img_resolution}.")
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.num_fp16_res = num_fp16_res
        self.block_resolutions = [2**i for i in range(2, self.img_resolution_log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        self.num_ws = 0
        for res in self.block_resolutions:
            is_last = res == img_resolution
            block = SynthesisBlock(
                channels[res // 2] if res > 4 else 0,
                channels[res],
                w_dim=w_dim,
                resolution=res,
                img_channels=img_channels,
                is_last=is_last,
                use_fp16=(res >= fp16_resolution),
                **block_kwargs,
            )
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def split_ws(self, ws: torch.Tensor) -> list[torch.Tensor]:
        """Slice ``ws [N, num_ws, w_dim]`` into per-block rows.

        A block's ToRGB shares its row with the next block's conv0: the start index advances
        by ``num_conv`` only.
        """
        check_shape(ws, ["N", self.num_ws, self.w_dim], "ws")
        ws = ws.to(torch.float32)
        out = []
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            out.append(ws.narrow(1, w_idx, block.num_conv + block.num_torgb))
            w_idx += block.num_conv
        return out

    def forward(
        self,
        ws: torch.Tensor,
        *,
        noise_mode: str = "random",
        force_fp32: bool = False,
        fused_modconv: bool | str | None = None,
        update_emas: bool = False,
    ) -> torch.Tensor:
        """Synthesise ``[N, img_channels, img_resolution, img_resolution]`` from ``ws``."""
        x = img = None
        for res, block_ws in zip(self.block_resolutions, self.split_ws(ws), strict=True):
            block = getattr(self, f"b{res}")
            x, img = block(
                x,
                img,
                block_ws,
                noise_mode=noise_mode,
                force_fp32=force_fp32,
                fused_modconv=fused_modconv,
                update_emas=update_emas,
            )
        return img

    def extra_repr(self) -> str:
        """One-line summary shown by ``repr``."""
        return (
            f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, "
            f"img_channels={self.img_channels}, num_fp16_res={self.num_fp16_res}"
        )


class Generator(nn.Module):
    """StyleGAN2 generator (mapping + synthesis); in EG3D it is the tri-plane backbone.

    Args:
        z_dim: latent width.
        c_dim: conditioning label width.
        w_dim: intermediate latent width.
        img_resolution: synthesis resolution.
        img_channels: synthesis channels.
        mapping_kwargs: forwarded to :class:`MappingNetwork`.
        **synthesis_kwargs: forwarded to :class:`SynthesisNetwork`.

    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_kwargs: dict | None = None,
        **synthesis_kwargs: object,
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(
            w_dim=w_dim,
            img_resolution=img_resolution,
            img_channels=img_channels,
            **synthesis_kwargs,
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **(mapping_kwargs or {})
        )

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
        **synthesis_kwargs: object,
    ) -> torch.Tensor:
        """Map and synthesise: ``z [N, z_dim], c [N, c_dim] -> [N, img_channels, R, R]``."""
        ws = self.mapping(
            z,
            c,
            truncation_psi=truncation_psi,
            truncation_cutoff=truncation_cutoff,
            update_emas=update_emas,
        )
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)
