"""``SymHeadsGenerator``: the built-in ``symheads`` generator (a :class:`sym3d.protocols.Generator3D`).

The generator is the analytic SymHeads head decoded from ``ws`` plus zero-initialised tunable
residual tri-planes. It needs no weights, renders 64 x 64 views on a CPU in tens of
milliseconds, and can represent exactly the latent part of every
:class:`~sym3d_extras.synthetic.scene.SymHeadsScene` (but not the scene's extra detail, which
only fine-tuning of the residual can approach).
"""

from __future__ import annotations

import attrs
import torch
from torch import nn

from sym3d.checks import check_shape
from sym3d.errors import ConfigError
from sym3d.generator_base import GeneratorMixin
from sym3d.image import to_model_range
from sym3d.protocols import GeneratorInfo, RenderOutput
from sym3d_extras.synthetic.fields import GeneratorField, HeadField
from sym3d_extras.synthetic.head import HeadGeometry, head_geometry
from sym3d_extras.synthetic.layout import NUM_WS, LatentLayout
from sym3d_extras.synthetic.mapping import FixedMapping
from sym3d_extras.synthetic.render import RawRender, RenderSettings, volume_render
from sym3d_extras.synthetic.residual import ResidualConfig, TriPlaneResidual

__all__ = ["SymHeadsGenerator", "build_symheads"]


class SymHeadsGenerator(GeneratorMixin, nn.Module):
    """The ``symheads`` generator: analytic heads from ``ws`` plus tunable residual tri-planes.

    Args:
        w_dim: width of each ``ws`` row (``num_ws`` is fixed at 14, one row per attribute group;
            see :data:`sym3d_extras.synthetic.layout.ROWS`).
        z_dim: width of ``z``.
        img_resolution: side of ``RenderOutput.image``; bilinearly resized from ``image_raw``
            when it differs from the neural resolution.
        neural_resolution: side of ``image_raw``, ``depth`` and ``opacity``.
        render_settings: sampling and shading settings.
        residual: size of the tunable residual fields.
        layout_seed, mapping_seed: seeds of the readout and mapping (the world's definition;
            scenes built with the same seeds share the latent space).

    Attributes:
        name: ``"symheads"``.
        info: recommended CPU-sized settings and the ray range.
        tunable_scopes: ``("all", "residual", "density", "colour", "planes", "decoders")``.

    """

    name: str = "symheads"
    recommended_overrides: tuple[str, ...] = (
        # CPU-sized settings for this 64 px world (see docs/symheads.md; precedence in
        # sym3d.protocols.GeneratorInfo). LPIPS-Alex at 128 px replaces LPIPS-VGG at 256 px
        # (about 30x cheaper on a CPU); early stopping is off so every method runs the same steps.
        "perceptual=lpips-alex",
        "perceptual_resize=128",
        "latent.steps=100",
        "latent.lr=0.03",
        "tune.steps=100",
        "tune.lr=0.01",
        "tune.early_stop=0",
        "tune.num_views=2",
        "tune.terms.mirror_regions.crop_size=40",  # SPI crops 80 px at 256; the same fraction at 128
        # Depth changes in this world are ~0.005 world units (MSE ~1e-5): SPI's weight 1 has no
        # effect at that scale; 100 restores the pivot's geometry (chosen on development heads).
        "tune.terms.depth_reg.weight=100",
        "checkpoint_every=25",
    )
    """Kept as the source of ``info.recommended_overrides``."""

    def __init__(
        self,
        *,
        w_dim: int = 32,
        z_dim: int = 32,
        img_resolution: int = 64,
        neural_resolution: int = 64,
        render_settings: RenderSettings = RenderSettings(),
        residual: ResidualConfig = ResidualConfig(),
        layout_seed: int = 0,
        mapping_seed: int = 1,
    ) -> None:
        super().__init__()
        for key, val in (
            ("w_dim", w_dim),
            ("z_dim", z_dim),
            ("img_resolution", img_resolution),
            ("neural_resolution", neural_resolution),
        ):
            if int(val) <= 0:
                raise ConfigError(f"{key}: expected a positive integer, got {val}.")
        self.w_dim, self.z_dim, self.num_ws = int(w_dim), int(z_dim), NUM_WS
        self.img_resolution, self.neural_resolution = int(img_resolution), int(neural_resolution)
        self.render_settings = render_settings
        self.layout = LatentLayout(self.w_dim, seed=layout_seed)
        self.mapping_network = FixedMapping(self.z_dim, self.w_dim, seed=mapping_seed)
        self.residual = TriPlaneResidual(residual)
        self._scopes = {k: [f"residual.{n}" for n in v] for k, v in self.residual.scopes().items()}
        self.tunable_scopes: tuple[str, ...] = tuple(self._scopes)
        scalars = dict(
            w_dim=self.w_dim,
            z_dim=self.z_dim,
            img_resolution=self.img_resolution,
            neural_resolution=self.neural_resolution,
            layout_seed=layout_seed,
            mapping_seed=mapping_seed,
        )
        defaults = render_settings == RenderSettings() and residual == ResidualConfig()
        self.info = GeneratorInfo(
            recommended_overrides=self.recommended_overrides,
            ray_range=(render_settings.ray_start, render_settings.ray_end),
            # how `symheads` rebuilds it; settings objects are recorded by build_symheads only
            build_options=scalars if defaults else None,
        )
        with torch.no_grad():
            z = torch.randn(10000, self.z_dim, generator=torch.Generator().manual_seed(12345))
            self.register_buffer("w_avg", self.mapping_network(z).mean(0))

    # ------------------------------------------------------------------ latents
    def mapping(
        self,
        z: torch.Tensor,
        c: torch.Tensor,
        *,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
    ) -> torch.Tensor:
        """Map ``z [B, z_dim]`` to ``ws [B, num_ws, w_dim]`` (one ``w`` broadcast to every row).

        The camera ``c [B, 25]`` is checked and **ignored**: SymHeads latents do not depend on the
        view. Truncation pulls rows ``< truncation_cutoff`` (all rows when ``None``) toward
        ``w_avg`` by ``truncation_psi``.
        """
        check_shape(z, ["B", self.z_dim], "z")
        check_shape(c, [z.shape[0], 25], "c")
        w = self.mapping_network(z)
        ws = w[:, None, :].repeat(1, self.num_ws, 1)
        if truncation_psi != 1.0:
            cutoff = self.num_ws if truncation_cutoff is None else int(truncation_cutoff)
            avg = self.w_avg.to(ws)
            ws[:, :cutoff] = avg + truncation_psi * (ws[:, :cutoff] - avg)
        return ws

    def _latent_samples(self, c: torch.Tensor, num_samples: int, seed: int) -> torch.Tensor:
        """``[1, S, w_dim]`` mapped ``w`` draws (the camera is ignored)."""
        z = torch.randn(num_samples, self.z_dim, generator=torch.Generator().manual_seed(seed))
        return self.mapping_network(z.to(c.device)).to(c.dtype)[None]

    def decode(self, ws: torch.Tensor) -> HeadGeometry:
        """The analytic heads of ``ws [B, num_ws, w_dim]`` (differentiable)."""
        return head_geometry(self.layout.decode(ws))

    # ------------------------------------------------------------------ rendering
    def render_raw(
        self,
        ws: torch.Tensor,
        cameras: torch.Tensor,
        *,
        neural_resolution: int | None = None,
        generator: torch.Generator | None = None,
    ) -> RawRender:
        """Render in the world's own units (colour in ``[0, 1]``); see :meth:`render`."""
        self._check_render_inputs(ws, cameras)
        res = self.neural_resolution if neural_resolution is None else int(neural_resolution)
        geometry = self.decode(ws)
        field = (
            GeneratorField(geometry, self.residual)
            if self._residual_active()
            else HeadField(geometry)
        )
        return volume_render(
            field, cameras.to(ws.dtype), res, self.render_settings, generator=generator
        )

    def _residual_active(self) -> bool:
        """Whether the residual can affect this render (skipped when it is exactly zero and needs no gradient)."""
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.residual.parameters()):
            return True
        return not self.residual.is_zero()

    def render(
        self,
        ws: torch.Tensor,
        cameras: torch.Tensor,
        *,
        neural_resolution: int | None = None,
        generator: torch.Generator | None = None,
    ) -> RenderOutput:
        """Render ``ws [B, num_ws, w_dim]`` from ``cameras [B, V, 25]``.

        The heads are decoded once per latent (and the coarse distance grid built once per
        latent); all ``V`` views are rendered from them. Pure: no module state changes.

        Args:
            ws: latents.
            cameras: EG3D camera labels.
            neural_resolution: side of ``image_raw``/``depth``; default :attr:`neural_resolution`.
            generator: random source of the stratified jitter; ``None`` = deterministic midpoints
                (not the global RNG: SymHeads renders are deterministic unless a generator is given).

        Returns:
            ``image``/``image_raw`` ``[B, V, 3, H, W]`` in ``[-1, 1]``; ``depth`` (ray distance),
            ``depth_z`` (camera z) and ``opacity`` ``[B, V, 1, h, w]``; ``extras["face_mask"]``
            ``[B, V, 1, h, w]`` (soft face-parsing mask, skin and features without hair and neck).

        """
        raw = self.render_raw(ws, cameras, neural_resolution=neural_resolution, generator=generator)
        image_raw = to_model_range(raw.rgb.clamp(0.0, 1.0))
        b, v, _, h, w = image_raw.shape
        if h != self.img_resolution:
            flat = image_raw.reshape(b * v, 3, h, w)
            flat = nn.functional.interpolate(
                flat,
                size=(self.img_resolution, self.img_resolution),
                mode="bilinear",
                align_corners=False,
                antialias=self.img_resolution < h,
            )
            image = flat.reshape(b, v, 3, self.img_resolution, self.img_resolution)
        else:
            image = image_raw
        return RenderOutput(
            image=image,
            image_raw=image_raw,
            depth=raw.depth,
            depth_z=raw.depth_z,
            opacity=raw.opacity,
            extras={"face_mask": raw.labels[:, :, 0:1]},
        )

    def sample_density(self, ws: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Density ``density_scale * sigmoid(-sdf / sdf_eps)`` at world ``points [B, N, 3]``: ``[B, N]``."""
        dims = check_shape(ws, ["B", self.num_ws, self.w_dim], "ws")
        check_shape(points, ["B", "N", 3], "points", dims=dims)
        geometry = self.decode(ws)
        field = (
            GeneratorField(geometry, self.residual)
            if self._residual_active()
            else HeadField(geometry)
        )
        s = self.render_settings
        return s.density_scale * torch.sigmoid(-field.sdf(points.to(ws.dtype)) / s.sdf_eps)

    # ------------------------------------------------------------------ tuning
    def tunable_parameters(self, scope: str = "all") -> dict[str, nn.Parameter]:
        """Residual parameters of a scope, keyed by ``named_parameters`` name.

        Scopes: ``"all"``/``"residual"`` (every residual parameter), ``"density"``, ``"colour"``,
        ``"planes"`` (both plane sets), ``"decoders"`` (both MLPs).

        Raises:
            ConfigError: for an unknown scope.

        """
        if scope not in self._scopes:
            raise ConfigError(
                f"tunable scope: expected one of {', '.join(self.tunable_scopes)}, got {scope!r}.",
                hint="use scope='all' to tune every residual parameter.",
            )
        named = dict(self.named_parameters())
        return {n: named[n] for n in self._scopes[scope]}

    def noise_buffers(self) -> list[torch.Tensor]:
        """SymHeads has no StyleGAN noise: ``[]``."""
        return []


def build_symheads(**options: object) -> SymHeadsGenerator:
    """Factory for plugin registration: ``SymHeadsGenerator(**options)``.

    Accepts the constructor's keyword options; ``render_settings`` and ``residual`` may also be
    given as plain dicts of their fields.
    """
    opts = dict(options)
    if isinstance(opts.get("render_settings"), dict):
        opts["render_settings"] = RenderSettings(**opts["render_settings"])  # type: ignore[arg-type]
    if isinstance(opts.get("residual"), dict):
        opts["residual"] = ResidualConfig(**opts["residual"])  # type: ignore[arg-type]
    try:
        gen = SymHeadsGenerator(**opts)  # type: ignore[arg-type]
    except TypeError as exc:
        raise ConfigError(
            f"symheads options: {exc}.", hint="see SymHeadsGenerator's arguments."
        ) from exc
    # Results rebuild it from these options even when it was built without the registry.
    gen.info = attrs.evolve(gen.info, build_options=dict(options))
    return gen
