"""The EG3D tri-plane generator: StyleGAN2 backbone -> tri-planes -> volume rendering -> superresolution.

Differences from the official class, all deliberate:

* ``synthesis`` never stores ``neural_rendering_resolution`` on the module and never caches
  planes; pass the resolution per call (the attribute is only the default).
* Synthesis is split into :meth:`TriPlaneGenerator.backbone_planes` and
  :meth:`TriPlaneGenerator.render_planes` so several views can be rendered from one backbone
  pass, and ``c`` may hold several views per latent.
* The renderer's random draws come from an explicit ``random=`` source.
* No input tensor is modified in place; the official ``image_raw`` aliasing of the 2X/4X
  modules is reproduced by value (``reproduce_sr_aliasing``).
* Speed (same values up to float rounding, about 1e-6; the parity tests hold them to 1e-4): the
  renderer reads the planes as channels-last rows with one weighted row sum per point instead of
  ``grid_sample`` + mean, renders rays in chunks, and composites with one batched product; on
  the CPU the superresolution runs one image at a time (see :attr:`superresolution_chunk`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from sym3d.checks import check_shape
from sym3d.errors import ConfigError
from sym3d_eg3d.networks.layers import FullyConnectedLayer
from sym3d_eg3d.networks.randomness import RandomLike
from sym3d_eg3d.networks.rendering import ImportanceRenderer, PlaneOrder, RaySampler
from sym3d_eg3d.networks.superresolution import SROutput, resolve_superresolution_class
from sym3d_eg3d.networks.synthesis import Generator
from sym3d_eg3d.ops import IMPL_NAMES

__all__ = ["OSGDecoder", "TriPlaneGenerator", "REQUIRED_RENDERING_KEYS"]

PLANE_CHANNELS = 32
NUM_PLANES = 3
BACKBONE_RESOLUTION = 256
CAMERA_DIM = 25

#: rendering_kwargs keys the forward pass reads without a default (as the official code does).
REQUIRED_RENDERING_KEYS = (
    "superresolution_module",
    "sr_antialias",
    "superresolution_noise_mode",
    "c_gen_conditioning_zero",
    "depth_resolution",
    "depth_resolution_importance",
    "ray_start",
    "ray_end",
    "box_warp",
    "disparity_space_sampling",
    "clamp_mode",
)


class OSGDecoder(nn.Module):
    """Small MLP from averaged plane features to density and colour features.

    Args:
        n_features: plane channels (32).
        options: ``{"decoder_lr_mul": float, "decoder_output_dim": int}``.

    Shape:
        ``features [N, P, M, n_features] -> {"rgb": [N, M, decoder_output_dim], "sigma": [N, M, 1]}``.
        ``rgb`` lies in ``[-0.001, 1.001]`` (MipNeRF's widened sigmoid); ``sigma`` is raw.

    """

    def __init__(self, n_features: int, options: Mapping[str, Any]) -> None:
        super().__init__()
        self.hidden_dim = 64
        lr_mul = options["decoder_lr_mul"]
        self.net = nn.Sequential(
            FullyConnectedLayer(n_features, self.hidden_dim, lr_multiplier=lr_mul),
            nn.Softplus(),
            FullyConnectedLayer(
                self.hidden_dim, 1 + options["decoder_output_dim"], lr_multiplier=lr_mul
            ),
        )

    def forward(
        self, sampled_features: torch.Tensor, ray_directions: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Decode ``[N, P, M, C]`` plane samples (``ray_directions`` is unused)."""
        return self.decode(sampled_features.mean(1))

    def decode(self, mean_features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Decode ``[N, M, C]`` plane features already averaged over the planes (what the renderer passes)."""
        x = mean_features
        n, m, ch = x.shape
        x = self.net(x.reshape(n * m, ch)).reshape(n, m, -1)
        rgb = torch.sigmoid(x[..., 1:]) * (1 + 2 * 0.001) - 0.001
        return {"rgb": rgb, "sigma": x[..., 0:1]}


class TriPlaneGenerator(nn.Module):
    """EG3D generator with the official constructor arguments and state_dict layout.

    Args:
        z_dim: latent width.
        c_dim: conditioning label width (25 for camera conditioning).
        w_dim: intermediate latent width (must be 512 for the SR modules).
        img_resolution: final image resolution (selects nothing; must match the SR module).
        img_channels: final image channels (3).
        sr_num_fp16_res: > 0 makes the SR blocks float16-capable and clamps them at 256.
        mapping_kwargs: :class:`MappingNetwork` options, e.g. ``{"num_layers": 2}``.
        rendering_kwargs: the official rendering option dict (copied); see
            :data:`REQUIRED_RENDERING_KEYS`. ``c_scale`` missing means 0 (official behaviour).
        sr_kwargs: options of the SR module (``channel_base``/``channel_max`` are ignored).
        plane_order: ``"released"`` (default, XY/XZ/ZX) or ``"corrected"`` (XY/XZ/YZ).
        reproduce_sr_aliasing: return the official (aliased) ``image_raw`` for 2X/4X when SR
            does not resize (see :class:`SynthesisBlockNoUp`). ``False`` returns the rendered rgb.
        **synthesis_kwargs: backbone options (``channel_base``, ``channel_max``,
            ``num_fp16_res``, ``conv_clamp``, ``fused_modconv_default``, ...).

    Attributes:
        neural_rendering_resolution: default rays per side when a call does not pass one
            (64 for a fresh instance; 128 in the released ffhq512-128 checkpoints). Never
            changed by a forward pass.
        rendering_kwargs: the live option dict read at every call.

    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        sr_num_fp16_res: int = 0,
        mapping_kwargs: Mapping[str, Any] | None = None,
        rendering_kwargs: Mapping[str, Any] | None = None,
        sr_kwargs: Mapping[str, Any] | None = None,
        *,
        plane_order: PlaneOrder = "released",
        reproduce_sr_aliasing: bool = True,
        **synthesis_kwargs: Any,
    ) -> None:
        super().__init__()
        rendering_kwargs = dict(rendering_kwargs or {})
        missing = [k for k in REQUIRED_RENDERING_KEYS if k not in rendering_kwargs]
        if missing:
            raise ConfigError(
                [f"rendering_kwargs.{k}: missing" for k in missing],
                hint="pass the rendering_kwargs stored with the checkpoint (G.rendering_kwargs).",
            )
        sr_class = resolve_superresolution_class(rendering_kwargs["superresolution_module"])

        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.reproduce_sr_aliasing = reproduce_sr_aliasing
        # Registered in the official order so a seeded construction draws the same init.
        self.renderer = ImportanceRenderer(plane_order)
        self.ray_sampler = RaySampler()
        # Quirk (official): the backbone is always 256x256 with 3*32 channels, whatever img_resolution.
        self.backbone = Generator(
            z_dim,
            c_dim,
            w_dim,
            img_resolution=BACKBONE_RESOLUTION,
            img_channels=PLANE_CHANNELS * NUM_PLANES,
            mapping_kwargs=dict(mapping_kwargs or {}),
            **synthesis_kwargs,
        )
        self.superresolution = sr_class(
            channels=PLANE_CHANNELS,
            img_resolution=img_resolution,
            sr_num_fp16_res=sr_num_fp16_res,
            sr_antialias=rendering_kwargs["sr_antialias"],
            **dict(sr_kwargs or {}),
        )
        self.decoder = OSGDecoder(
            PLANE_CHANNELS,
            {
                "decoder_lr_mul": rendering_kwargs.get("decoder_lr_mul", 1),
                "decoder_output_dim": PLANE_CHANNELS,
            },
        )
        # The training loop adds this buffer to every official G; nothing reads it.
        self.register_buffer("dataset_label_std", torch.zeros([c_dim]))
        self.neural_rendering_resolution = 64
        self.rendering_kwargs = rendering_kwargs

    # -- configuration -------------------------------------------------------------------------

    @property
    def num_ws(self) -> int:
        """Rows of ``ws`` (14 for the EG3D backbone)."""
        return self.backbone.num_ws

    def set_ops_impl(self, impl: str) -> TriPlaneGenerator:
        """Select the op implementation (``"auto"``, ``"ref"``, ``"cuda"``) for every layer; returns self."""
        if impl not in IMPL_NAMES:
            raise ConfigError(f"impl must be one of {', '.join(IMPL_NAMES)}; got {impl!r}.")
        for module in self.modules():
            if hasattr(module, "ops_impl"):
                module.ops_impl = impl
        return self

    # -- mapping -------------------------------------------------------------------------------

    def mapping(
        self,
        z: torch.Tensor,
        c: torch.Tensor,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> torch.Tensor:
        """Map ``z [N, z_dim]`` and the conditioning camera ``c [N, c_dim]`` to ``ws [N, num_ws, w_dim]``.

        ``c`` is multiplied by ``rendering_kwargs['c_scale']`` (zeroed first if
        ``c_gen_conditioning_zero``). Quirk (official): a missing ``c_scale`` means 0, i.e. no
        conditioning.
        """
        if self.rendering_kwargs.get("c_gen_conditioning_zero", False):
            c = torch.zeros_like(c)
        return self.backbone.mapping(
            z,
            c * self.rendering_kwargs.get("c_scale", 0),
            truncation_psi=truncation_psi,
            truncation_cutoff=truncation_cutoff,
            update_emas=update_emas,
        )

    # -- synthesis -----------------------------------------------------------------------------

    def backbone_planes(
        self,
        ws: torch.Tensor,
        *,
        noise_mode: str = "random",
        force_fp32: bool = False,
        fused_modconv: bool | str | None = None,
        update_emas: bool = False,
    ) -> torch.Tensor:
        """Run the StyleGAN2 backbone: ``ws [N, num_ws, w_dim] -> planes [N, 3, 32, 256, 256]``.

        Plane k holds channels ``32k .. 32k+31`` of the backbone output.
        """
        planes = self.backbone.synthesis(
            ws,
            noise_mode=noise_mode,
            force_fp32=force_fp32,
            fused_modconv=fused_modconv,
            update_emas=update_emas,
        )
        return planes.view(
            planes.shape[0], NUM_PLANES, PLANE_CHANNELS, planes.shape[-2], planes.shape[-1]
        )

    def render_planes(
        self,
        planes: torch.Tensor,
        ws: torch.Tensor,
        c: torch.Tensor,
        *,
        neural_rendering_resolution: int | None = None,
        random: RandomLike = None,
        force_fp32: bool = False,
        fused_modconv: bool | str | None = None,
        return_intermediates: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Volume-render tri-planes from cameras ``c`` and run superresolution.

        Args:
            planes: ``[N, 3, 32, H, W]`` from :meth:`backbone_planes`.
            ws: ``[N, num_ws, w_dim]`` (SR uses the last row).
            c: cameras ``[N, 25]``, or ``[N, V, 25]`` for V views per latent. Outputs then have
                ``B = N * V`` rows in sample-major order (``out[k]`` is view ``k % V`` of latent
                ``k // V``; ``x.unflatten(0, (N, V))`` recovers the views). The V views share one
                renderer call, so this equals V separate renders except for the batch-wide depth
                clamp (see :class:`MipRayMarcher2`).
            neural_rendering_resolution: rays per side ``r``; ``None`` uses the attribute.
            random: source of the renderer's uniform draws (see
                :mod:`sym3d_eg3d.networks.randomness`): ``None`` (global RNG), a
                ``torch.Generator``, ``"midpoint"``, a ``RandomSource`` or ``fn(shape, role)``.
            force_fp32: never use float16 in SR.
            fused_modconv: override of the SR blocks' fused-modconv default.
            return_intermediates: also return ``feature_image [B, 32, r, r]`` (rendered features,
                ``*2-1`` scaled), ``weights_samples [B, r*r, 1]`` (opacity per ray),
                ``ray_origins``/``ray_directions [B, r*r, 3]``, ``depths_coarse [B, r*r, D, 1]``
                and ``depths_fine [B, r*r, D_imp, 1]``.

        Returns:
            ``{"image": [B, 3, R, R], "image_raw": [B, 3, r, r], "image_depth": [B, 1, r, r]}``:
            images in [-1, 1] (not clamped), depth as expected distance along the unit ray.

        """
        res = (
            self.neural_rendering_resolution
            if neural_rendering_resolution is None
            else int(neural_rendering_resolution)
        )
        if res < 1:
            raise ConfigError(f"neural_rendering_resolution must be >= 1; got {res}.")
        dims = check_shape(planes, ["N", NUM_PLANES, PLANE_CHANNELS, "H", "W"], "planes")
        check_shape(ws, ["N", self.num_ws, self.w_dim], "ws", dims=dims)
        if c.ndim == 3:
            check_shape(c, ["N", "V", CAMERA_DIM], "c", dims=dims)
        else:
            check_shape(c, ["N", CAMERA_DIM], "c", dims=dims)
        n = planes.shape[0]
        views = c.shape[1] if c.ndim == 3 else 1
        cams = c.reshape(n * views, CAMERA_DIM).to(torch.float32)
        m = res * res

        ray_origins, ray_directions = self.ray_sampler(
            cams[:, :16].view(-1, 4, 4), cams[:, 16:25].view(-1, 3, 3), res
        )
        # All views of a latent go through one renderer call as one long list of rays.
        result = self.renderer(
            planes,
            self.decoder,
            ray_origins.reshape(n, views * m, 3),
            ray_directions.reshape(n, views * m, 3),
            self.rendering_kwargs,
            random=random,
        )
        batch = n * views
        features = result.features.reshape(batch, m, -1)
        feature_image = (
            features.permute(0, 2, 1).reshape(batch, features.shape[-1], res, res).contiguous()
        )
        depth_image = result.depth.reshape(batch, m, 1).permute(0, 2, 1).reshape(batch, 1, res, res)

        rgb_image = feature_image[:, :3]
        ws_sr = ws.repeat_interleave(views, dim=0) if views > 1 else ws
        sr = self._superresolve(
            rgb_image, feature_image, ws_sr, force_fp32=force_fp32, fused_modconv=fused_modconv
        )
        image_raw = (
            sr.rgb_alias if (self.reproduce_sr_aliasing and sr.rgb_alias is not None) else rgb_image
        )
        out = {"image": sr.image, "image_raw": image_raw, "image_depth": depth_image}
        if return_intermediates:
            out.update(
                feature_image=feature_image,
                weights_samples=result.weights_sum.reshape(batch, m, 1),
                ray_origins=ray_origins,
                ray_directions=ray_directions,
                depths_coarse=result.depths_coarse.reshape(batch, m, -1, 1),
            )
            if result.depths_fine is not None:
                out["depths_fine"] = result.depths_fine.reshape(batch, m, -1, 1)
        return out

    superresolution_chunk: int | None = None
    """Images per superresolution call; ``None``: 1 on the CPU, all at once elsewhere.

    A speed setting only: the SR treats every image on its own, so the results do not depend on
    it (apart from which random numbers each image gets under ``superresolution_noise_mode``
    ``"random"``). On the CPU, oneDNN runs the SR's batched (grouped, NCHW) convolutions several times
    slower per image than one image at a time.
    """

    def _superresolve(
        self,
        rgb: torch.Tensor,
        features: torch.Tensor,
        ws: torch.Tensor,
        *,
        force_fp32: bool,
        fused_modconv: bool | str | None,
    ) -> SROutput:
        chunk = self.superresolution_chunk or (1 if rgb.device.type == "cpu" else rgb.shape[0])
        parts = [
            self.superresolution(
                rgb[k : k + chunk],
                features[k : k + chunk],
                ws[k : k + chunk],
                noise_mode=self.rendering_kwargs["superresolution_noise_mode"],
                force_fp32=force_fp32,
                fused_modconv=fused_modconv,
            )
            for k in range(0, rgb.shape[0], chunk)
        ]
        if len(parts) == 1:
            return parts[0]
        alias = None if parts[0].rgb_alias is None else torch.cat([p.rgb_alias for p in parts])
        return SROutput(torch.cat([p.image for p in parts]), alias)

    def synthesis(
        self,
        ws: torch.Tensor,
        c: torch.Tensor,
        *,
        neural_rendering_resolution: int | None = None,
        random: RandomLike = None,
        noise_mode: str = "random",
        force_fp32: bool = False,
        fused_modconv: bool | str | None = None,
        update_emas: bool = False,
        return_intermediates: bool = False,
    ) -> dict[str, torch.Tensor]:
        """:meth:`backbone_planes` followed by :meth:`render_planes`.

        ``noise_mode`` applies to the backbone only; SR uses
        ``rendering_kwargs['superresolution_noise_mode']`` (official behaviour). Other arguments
        as in :meth:`render_planes`.
        """
        planes = self.backbone_planes(
            ws,
            noise_mode=noise_mode,
            force_fp32=force_fp32,
            fused_modconv=fused_modconv,
            update_emas=update_emas,
        )
        return self.render_planes(
            planes,
            ws,
            c,
            neural_rendering_resolution=neural_rendering_resolution,
            random=random,
            force_fp32=force_fp32,
            fused_modconv=fused_modconv,
            return_intermediates=return_intermediates,
        )

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        neural_rendering_resolution: int | None = None,
        update_emas: bool = False,
        *,
        random: RandomLike = None,
        noise_mode: str = "random",
        force_fp32: bool = False,
        fused_modconv: bool | str | None = None,
        return_intermediates: bool = False,
    ) -> dict[str, torch.Tensor]:
        """:meth:`mapping` with ``c`` as conditioning, then :meth:`synthesis` from camera ``c [N, 25]``."""
        ws = self.mapping(
            z,
            c,
            truncation_psi=truncation_psi,
            truncation_cutoff=truncation_cutoff,
            update_emas=update_emas,
        )
        return self.synthesis(
            ws,
            c,
            neural_rendering_resolution=neural_rendering_resolution,
            random=random,
            noise_mode=noise_mode,
            force_fp32=force_fp32,
            fused_modconv=fused_modconv,
            update_emas=update_emas,
            return_intermediates=return_intermediates,
        )

    # -- point queries -------------------------------------------------------------------------

    def sample_planes(
        self, planes: torch.Tensor, coordinates: torch.Tensor, directions: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Decode points against given planes.

        Args:
            planes: ``[N, 3, 32, H, W]``.
            coordinates: ``[N, M, 3]`` world points.
            directions: ``[N, M, 3]`` (unused by the decoder).

        Returns:
            ``{"sigma": [N, M, 1] raw density (before the marcher's softplus(x - 1)),
            "rgb": [N, M, 32] in [-0.001, 1.001]}``.

        """
        dims = check_shape(planes, ["N", NUM_PLANES, PLANE_CHANNELS, "H", "W"], "planes")
        check_shape(coordinates, ["N", "M", 3], "coordinates", dims=dims)
        check_shape(directions, ["N", "M", 3], "directions", dims=dims)
        return self.renderer.run_model(
            planes, self.decoder, coordinates, directions, self.rendering_kwargs
        )

    def sample_mixed(
        self,
        coordinates: torch.Tensor,
        directions: torch.Tensor,
        ws: torch.Tensor,
        *,
        noise_mode: str = "random",
        force_fp32: bool = False,
        fused_modconv: bool | str | None = None,
        update_emas: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Density and features at points for latents ``ws`` (backbone + :meth:`sample_planes`)."""
        planes = self.backbone_planes(
            ws,
            noise_mode=noise_mode,
            force_fp32=force_fp32,
            fused_modconv=fused_modconv,
            update_emas=update_emas,
        )
        return self.sample_planes(planes, coordinates, directions)

    def sample(
        self,
        coordinates: torch.Tensor,
        directions: torch.Tensor,
        z: torch.Tensor,
        c: torch.Tensor,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
        *,
        noise_mode: str = "random",
        force_fp32: bool = False,
        fused_modconv: bool | str | None = None,
    ) -> dict[str, torch.Tensor]:
        """:meth:`mapping` then :meth:`sample_mixed`."""
        ws = self.mapping(
            z,
            c,
            truncation_psi=truncation_psi,
            truncation_cutoff=truncation_cutoff,
            update_emas=update_emas,
        )
        return self.sample_mixed(
            coordinates,
            directions,
            ws,
            noise_mode=noise_mode,
            force_fp32=force_fp32,
            fused_modconv=fused_modconv,
            update_emas=update_emas,
        )

    def extra_repr(self) -> str:
        """One-line summary shown by ``repr``."""
        return (
            f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, img_resolution={self.img_resolution}, "
            f"neural_rendering_resolution={self.neural_rendering_resolution}"
        )
