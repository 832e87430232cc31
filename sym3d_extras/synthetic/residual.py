"""Tunable residual fields of the SymHeads generator (what stage-2 fine-tuning changes).

Two sets of zero-initialised tri-planes (density and colour; three axis-aligned feature planes
over the unit box, by default laid out as in EG3D's released checkpoints: ``xy``, ``xz`` and
``zx``) are sampled bilinearly at a point, averaged over the planes and decoded by tiny bias-free MLPs (``silu`` hidden layer, so zero features decode to
exactly zero). The density branch adds a signed-distance offset (world units, so it can move the
surface or grow new surface anywhere, e.g. a mark projected straight through the head); the
colour branch adds unshaded RGB in ``[0, 1]`` units. At initialisation both residuals are exactly
zero, so the generator renders the analytic head of its latent. Capacity is meant to let a
single-view fine-tune fit that view closely (as PTI does on EG3D) and to express fine symmetric
detail (64 x 64 planes over the unit box are about 2 pixels per cell at 64 x 64 renders).
"""

from __future__ import annotations

import attrs
import torch
from torch import nn

__all__ = ["ResidualConfig", "TriPlaneResidual"]


@attrs.frozen(kw_only=True)
class ResidualConfig:
    """Size of the residual fields.

    Attributes:
        resolution: side of each feature plane (cells over the unit box ``[-0.5, 0.5]^3``).
        density_channels, colour_channels: feature channels of the two plane sets.
        hidden: hidden width of the decoders.
        sdf_scale: world units per unit of decoded density output.
        colour_scale: RGB units per unit of decoded colour output.
        seed: seed of the decoder weights.
        plane_axes: ``"eg3d"`` (xy, xz, zx: EG3D's released layout, in which every plane is indexed
            by x, so a mark on one cheek is not projected onto the other) or ``"xyz"`` (xy, xz, yz:
            the yz plane is shared by both sides of the face and copies one-sided marks across it).
        mode: ``"backbone"`` (default): the planes are synthesised by a small convolutional network
            from a fixed random code, with a zero-initialised output layer, so tuning changes the
            planes everywhere at once, as tuning EG3D's convolutional backbone does (fitting one
            view drifts the unseen side too); ``"planes"``: the planes themselves are free
            parameters (local: unseen cells never change).
        backbone_hidden, backbone_code_channels: width of that network and of its input code.

    """

    resolution: int = 64
    density_channels: int = 8
    colour_channels: int = 16
    hidden: int = 32
    sdf_scale: float = 0.05
    colour_scale: float = 0.5
    seed: int = 7
    plane_axes: str = attrs.field(default="eg3d", validator=attrs.validators.in_(("eg3d", "xyz")))
    mode: str = attrs.field(
        default="backbone", validator=attrs.validators.in_(("backbone", "planes"))
    )
    backbone_hidden: int = 32
    backbone_code_channels: int = 16


class _Decoder(nn.Module):
    """Bias-free ``silu`` MLP ``[..., C] -> [..., out]`` with ``f(0) = 0``."""

    def __init__(self, channels: int, hidden: int, out: int, generator: torch.Generator) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(channels, hidden, generator=generator) / channels**0.5)
        self.w2 = nn.Parameter(torch.randn(hidden, out, generator=generator) / hidden**0.5)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return nn.functional.silu(f @ self.w1) @ self.w2


class _ConvPlanes(nn.Module):
    """Tri-planes ``[3, C, R, R]`` synthesised from a fixed random code by a small conv network.

    ``code [1, K, R/4, R/4]`` -> conv3x3 + silu -> upsample x2 -> conv3x3 + silu -> upsample x2 ->
    1x1 conv to ``3 C`` channels. The 1x1 output layer starts at zero, so the planes do too.
    """

    def __init__(
        self,
        channels: int,
        resolution: int,
        hidden: int,
        code_channels: int,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        if resolution % 4:
            raise ValueError(
                f"resolution must be a multiple of 4 in backbone mode, got {resolution}"
            )
        self.channels, self.resolution = channels, resolution
        self.register_buffer(
            "code",
            torch.randn(1, code_channels, resolution // 4, resolution // 4, generator=generator),
        )
        self.conv1 = nn.Parameter(
            torch.randn(hidden, code_channels, 3, 3, generator=generator)
            / (9 * code_channels) ** 0.5
        )
        self.conv2 = nn.Parameter(
            torch.randn(hidden, hidden, 3, 3, generator=generator) / (9 * hidden) ** 0.5
        )
        self.out = nn.Parameter(torch.zeros(3 * channels, hidden, 1, 1))

    def forward(self) -> torch.Tensor:
        f = nn.functional
        h = f.silu(f.conv2d(self.code, self.conv1, padding=1))
        h = f.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False)
        h = f.silu(f.conv2d(h, self.conv2, padding=1))
        h = f.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False)
        return f.conv2d(h, self.out).reshape(3, self.channels, self.resolution, self.resolution)


class TriPlaneResidual(nn.Module):
    """Zero-initialised tri-plane residual fields (density as an SDF offset, and colour).

    Args:
        config: sizes, scales and the plane source (see :class:`ResidualConfig`).

    """

    def __init__(self, config: ResidualConfig = ResidualConfig()) -> None:
        super().__init__()
        self.config = config
        r = config.resolution
        g = torch.Generator().manual_seed(config.seed)
        if config.mode == "planes":
            self.density_planes = nn.Parameter(torch.zeros(3, config.density_channels, r, r))
            self.colour_planes = nn.Parameter(torch.zeros(3, config.colour_channels, r, r))
        else:
            self.density_backbone = _ConvPlanes(
                config.density_channels, r, config.backbone_hidden, config.backbone_code_channels, g
            )
            self.colour_backbone = _ConvPlanes(
                config.colour_channels, r, config.backbone_hidden, config.backbone_code_channels, g
            )
        self.density_decoder = _Decoder(config.density_channels, config.hidden, 1, g)
        self.colour_decoder = _Decoder(config.colour_channels, config.hidden, 3, g)

    def planes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The current density and colour planes ``[3, C, R, R]``."""
        if self.config.mode == "planes":
            return self.density_planes, self.colour_planes
        return self.density_backbone(), self.colour_backbone()

    def is_zero(self) -> bool:
        """True when both residuals are exactly zero everywhere (the planes are all zero)."""
        if self.config.mode == "planes":
            tensors = (self.density_planes, self.colour_planes)
        else:
            tensors = (self.density_backbone.out, self.colour_backbone.out)
        return not any(bool(t.detach().any()) for t in tensors)

    def _features(self, planes: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """``[B, N, C]`` plane features at ``p [B, N, 3]`` (mean of the three planes)."""
        b, n, _ = p.shape
        q = 2.0 * p.reshape(1, b * n, 3)  # unit box -> [-1, 1]
        third = [2, 0] if self.config.plane_axes == "eg3d" else [1, 2]
        grid = torch.stack([q[..., [0, 1]], q[..., [0, 2]], q[..., third]], dim=0)  # [3,1,BN,2]
        f = nn.functional.grid_sample(
            planes, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        return f.mean(0)[:, 0].T.reshape(b, n, -1)  # [3,C,1,BN] -> [B,N,C]

    def sdf(self, p: torch.Tensor, planes: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, N]`` signed-distance offset (world units) at ``p [B, N, 3]``."""
        f = self._features(self.planes()[0] if planes is None else planes, p)
        return self.config.sdf_scale * self.density_decoder(f)[..., 0]

    def colour(self, p: torch.Tensor, planes: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, N, 3]`` additive unshaded colour at ``p [B, N, 3]``."""
        f = self._features(self.planes()[1] if planes is None else planes, p)
        return self.config.colour_scale * self.colour_decoder(f)

    def scopes(self) -> dict[str, list[str]]:
        """Named groups of this module's parameter names (relative to this module)."""
        if self.config.mode == "planes":
            d_src, c_src = ["density_planes"], ["colour_planes"]
        else:
            d_src = [f"density_backbone.{n}" for n in ("conv1", "conv2", "out")]
            c_src = [f"colour_backbone.{n}" for n in ("conv1", "conv2", "out")]
        density = [*d_src, "density_decoder.w1", "density_decoder.w2"]
        colour = [*c_src, "colour_decoder.w1", "colour_decoder.w2"]
        return {
            "all": density + colour,
            "residual": density + colour,
            "density": density,
            "colour": colour,
            "planes": d_src + c_src,
            "decoders": density[-2:] + colour[-2:],
        }
