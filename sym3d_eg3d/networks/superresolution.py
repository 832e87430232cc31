"""EG3D superresolution modules: the neural rendering (feature image + rgb) to the final image.

Every module takes the rendered rgb ``[N, 3, r, r]``, the feature image ``[N, 32, r, r]`` and
``ws``, resizes both inputs to its ``input_resolution`` when needed, and runs two StyleGAN2
blocks that all use the last row of ``ws``.

| name | out | input res | block0 | block1 | resize when | own ``resample_filter`` |
| --- | --- | --- | --- | --- | --- | --- |
| SuperresolutionHybrid2X | 128 | 64 | NoUp 32->128 @64 | 128->64 @128 | size != 64 | yes |
| SuperresolutionHybrid4X | 256 | 128 | NoUp 32->128 @128 | 128->64 @256 | size < 128 | yes |
| SuperresolutionHybrid8X | 512 | 128 | 32->128 @256 | 128->64 @512 | size != 128 | yes |
| SuperresolutionHybrid8XDC | 512 | 128 | 32->256 @256 | 256->128 @512 | size != 128 | no |

Channel counts are hard-coded as in the official modules (``channel_base``/``channel_max`` are
accepted and ignored), and the blocks use ``w_dim=512`` whatever the generator's ``w_dim``.
``sr_num_fp16_res > 0`` makes both blocks float16-capable, which also turns on
``conv_clamp=256``; the clamp applies even when the blocks run in float32 (always on CPU).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from sym3d.checks import check_shape
from sym3d.errors import ConfigError
from sym3d_eg3d import ops
from sym3d_eg3d.networks.synthesis import SynthesisBlock

__all__ = [
    "SROutput",
    "SuperresolutionBase",
    "SynthesisBlockNoUp",
    "SuperresolutionHybrid2X",
    "SuperresolutionHybrid4X",
    "SuperresolutionHybrid8X",
    "SuperresolutionHybrid8XDC",
    "SUPERRESOLUTION_MODULES",
    "resolve_superresolution_class",
]

# Quirk (official SR): the blocks hard-code w_dim=512, whatever the generator's w_dim.
_SR_W_DIM = 512
_SR_NUM_WS = 3


class SROutput(NamedTuple):
    """Result of a superresolution module.

    Attributes:
        image: ``[N, 3, img_resolution, img_resolution]`` float32, nominally in [-1, 1].
        rgb_alias: for 2X/4X when the input was *not* resized, the value that the official
            in-place add leaves in the caller's rgb tensor (rendered rgb + block0's ToRGB),
            ``[N, 3, r, r]``; ``None`` otherwise. See :class:`SynthesisBlockNoUp`.

    """

    image: torch.Tensor
    rgb_alias: torch.Tensor | None


class SynthesisBlockNoUp(SynthesisBlock):
    """A :class:`SynthesisBlock` that keeps the resolution.

    conv0 does not upsample, and the incoming image is neither upsampled nor shape-checked.

    Quirk (official 2X/4X): the official block adds its ToRGB output into the incoming image
    *in place*. When the SR module did not resize its input, that image is a view of the
    renderer's feature image, so the official ``image_raw`` comes back as rendered rgb + this
    block's ToRGB output. This port never mutates its inputs; the SR modules instead report
    that value as :attr:`SROutput.rgb_alias` and the generator reproduces it on request.
    """

    upsamples = False


def _block_options(block_kwargs: dict) -> dict:
    """Drop the keys that the official SR constructors accept and ignore."""
    return {
        k: v
        for k, v in block_kwargs.items()
        if k not in ("num_fp16_res", "conv_clamp", "channel_base", "channel_max")
    }


class SuperresolutionBase(nn.Module):
    """Shared logic of the hybrid SR modules; subclasses set the class attributes."""

    #: Output resolution the module is built for.
    out_resolution: int = 0
    #: Resolution the inputs are resized to.
    input_resolution: int = 128
    #: ``"!="`` resizes whenever the size differs; ``"<"`` only when it is smaller (4X).
    resize_rule: str = "!="
    #: Whether block0 keeps the resolution (2X/4X), which enables the aliasing quirk.
    block0_no_up: bool = False
    #: Output channels of block0 and block1.
    block_channels: tuple[int, int] = (128, 64)
    #: Whether the module holds the (unused) ``resample_filter`` buffer of the official modules.
    has_resample_filter: bool = True

    def __init__(
        self,
        channels: int,
        img_resolution: int,
        sr_num_fp16_res: int,
        sr_antialias: bool,
        **block_kwargs: object,
    ) -> None:
        super().__init__()
        self._check_resolution(img_resolution)
        self.sr_antialias = sr_antialias
        mid_channels, out_channels = self.block_channels
        self._make_blocks(channels, mid_channels, out_channels, sr_num_fp16_res, block_kwargs)
        if self.has_resample_filter:
            self.register_buffer("resample_filter", ops.setup_filter([1, 3, 3, 1]))

    def _check_resolution(self, img_resolution: int) -> None:
        if img_resolution != self.out_resolution:
            raise ConfigError(
                f"{type(self).__name__} produces {self.out_resolution}x{self.out_resolution} images; "
                f"img_resolution is {img_resolution}.",
                hint="pick the superresolution_module that matches img_resolution "
                "(2X: 128, 4X: 256, 8X/8XDC: 512).",
            )

    def _make_blocks(
        self,
        channels: int,
        mid_channels: int,
        out_channels: int,
        sr_num_fp16_res: int,
        block_kwargs: dict,
    ) -> None:
        use_fp16 = sr_num_fp16_res > 0
        # Quirk (official SR): conv_clamp is tied to use_fp16 and is applied in float32 too.
        common = dict(
            w_dim=_SR_W_DIM,
            img_channels=3,
            use_fp16=use_fp16,
            conv_clamp=(256 if use_fp16 else None),
            **_block_options(block_kwargs),
        )
        block0_cls = SynthesisBlockNoUp if self.block0_no_up else SynthesisBlock
        block0_res = self.input_resolution if self.block0_no_up else self.input_resolution * 2
        self.block0 = block0_cls(
            channels, mid_channels, resolution=block0_res, is_last=False, **common
        )
        self.block1 = SynthesisBlock(
            mid_channels, out_channels, resolution=self.out_resolution, is_last=True, **common
        )

    def needs_resize(self, size: int) -> bool:
        """Whether an input of spatial size ``size`` is resized to :attr:`input_resolution`."""
        if self.resize_rule == "<":
            return size < self.input_resolution
        return size != self.input_resolution

    def resize_inputs(
        self, rgb: torch.Tensor, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Bilinearly resize ``rgb [N, 3, r, r]`` and ``x [N, C, r, r]`` to the input resolution.

        Returns:
            ``(rgb, x, resized)``; without resizing the inputs are returned as they are.

        """
        if not self.needs_resize(x.shape[-1]):
            return rgb, x, False
        size = (self.input_resolution, self.input_resolution)
        x = F.interpolate(
            x, size=size, mode="bilinear", align_corners=False, antialias=self.sr_antialias
        )
        rgb = F.interpolate(
            rgb, size=size, mode="bilinear", align_corners=False, antialias=self.sr_antialias
        )
        return rgb, x, True

    def forward(
        self,
        rgb: torch.Tensor,
        x: torch.Tensor,
        ws: torch.Tensor,
        *,
        noise_mode: str = "random",
        force_fp32: bool = False,
        fused_modconv: bool | str | None = None,
        update_emas: bool = False,
    ) -> SROutput:
        """Upsample the neural rendering.

        Args:
            rgb: rendered rgb ``[N, 3, r, r]``.
            x: feature image ``[N, C, r, r]``.
            ws: ``[N, num_ws, 512]``; only the last row is used, for every layer.
            noise_mode: noise mode of the SR layers (the generator passes
                ``rendering_kwargs['superresolution_noise_mode']``).
            force_fp32: never use float16.
            fused_modconv: override of the blocks' ``fused_modconv_default``.
            update_emas: unused.

        Returns:
            :class:`SROutput`.

        """
        check_shape(ws, ["N", "K", _SR_W_DIM], "ws")
        # Every SR layer (conv0, conv1, ToRGB of both blocks) uses the last w.
        ws = ws[:, -1:, :].repeat(1, _SR_NUM_WS, 1)
        rgb, x, resized = self.resize_inputs(rgb, x)
        opts = dict(
            noise_mode=noise_mode,
            force_fp32=force_fp32,
            fused_modconv=fused_modconv,
            update_emas=update_emas,
        )
        x, rgb = self.block0(x, rgb, ws, **opts)
        rgb_alias = rgb if (self.block0_no_up and not resized) else None
        x, rgb = self.block1(x, rgb, ws, **opts)
        return SROutput(rgb, rgb_alias)


class SuperresolutionHybrid2X(SuperresolutionBase):
    """64 -> 128 superresolution (ShapeNet cars and the 128 configs).

    Args:
        channels: feature channels of the neural rendering (32).
        img_resolution: must be 128.
        sr_num_fp16_res: > 0 enables float16 and ``conv_clamp=256`` in both blocks.
        sr_antialias: antialias flag of the bilinear resize.
        num_fp16_res, conv_clamp, channel_base, channel_max: accepted and ignored.
        **block_kwargs: forwarded to both blocks (e.g. ``fused_modconv_default``).

    """

    out_resolution = 128
    input_resolution = 64
    block0_no_up = True


class SuperresolutionHybrid4X(SuperresolutionBase):
    """128 -> 256 superresolution.

    Quirk (official 4X): the inputs are resized only when smaller than 128 (``<``), unlike the
    other modules (``!=``). Arguments as :class:`SuperresolutionHybrid2X`; img_resolution 256.
    """

    out_resolution = 256
    input_resolution = 128
    resize_rule = "<"
    block0_no_up = True


class SuperresolutionHybrid8X(SuperresolutionBase):
    """128 -> 512 superresolution (two upsampling blocks, 128 and 64 channels).

    Arguments as :class:`SuperresolutionHybrid2X`; img_resolution 512.
    """

    out_resolution = 512
    input_resolution = 128


class SuperresolutionHybrid8XDC(SuperresolutionBase):
    """128 -> 512 superresolution with doubled channels (256 and 128): the released FFHQ 512 models.

    Unlike the others it has no module-level ``resample_filter`` buffer. Arguments as
    :class:`SuperresolutionHybrid2X`; img_resolution 512.
    """

    out_resolution = 512
    input_resolution = 128
    block_channels = (256, 128)
    has_resample_filter = False


SUPERRESOLUTION_MODULES: Mapping[str, type[SuperresolutionBase]] = MappingProxyType(
    {
        cls.__name__: cls
        for cls in (
            SuperresolutionHybrid2X,
            SuperresolutionHybrid4X,
            SuperresolutionHybrid8X,
            SuperresolutionHybrid8XDC,
        )
    }
)
"""Our SR classes by official class name."""

_OFFICIAL_PREFIX = "training.superresolution."


def resolve_superresolution_class(name: str) -> type[SuperresolutionBase]:
    """Map an official ``superresolution_module`` string to our class.

    Accepts the dotted official path (``"training.superresolution.SuperresolutionHybrid8XDC"``)
    or the bare class name.

    Raises:
        ConfigError: unknown name; the message lists the known ones.

    """
    short = (
        name[len(_OFFICIAL_PREFIX) :]
        if isinstance(name, str) and name.startswith(_OFFICIAL_PREFIX)
        else name
    )
    cls = SUPERRESOLUTION_MODULES.get(short) if isinstance(short, str) else None
    if cls is None:
        known = ", ".join(_OFFICIAL_PREFIX + n for n in SUPERRESOLUTION_MODULES)
        raise ConfigError(f"unknown superresolution_module {name!r}; known: {known}.")
    return cls
