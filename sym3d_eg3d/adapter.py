"""EG3D as a :class:`sym3d.protocols.Generator3D`.

* Multi-view: the tri-planes are computed **once per latent** (``backbone_planes``) and all ``V``
  views are rendered from them in one renderer call (``render_planes`` with ``[N, V, 25]``).
* Depth: ``depth`` is EG3D's ``image_depth`` (expected distance along the unit ray); ``depth_z``
  is its camera z; ``opacity`` is the accumulated ray weight.
* Backbone noise is ``"const"`` (the stored noise maps), as in SPI; randomness of the renderer
  comes only from the ``generator`` argument (``None``: deterministic bin midpoints).
* Tunable scopes: ``all`` (every parameter but the mapping network, which receives no gradient
  when ``ws`` is fixed), ``backbone`` (StyleGAN2 synthesis), ``decoder`` (the OSG MLP) and
  ``superres``.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sym3d.camera import ray_distance_to_z
from sym3d.checks import check_shape
from sym3d.errors import ConfigError, UserInputError
from sym3d.generator_base import GeneratorMixin
from sym3d.protocols import GeneratorInfo, RenderOutput
from sym3d_eg3d.networks import TriPlaneGenerator, build_generator

__all__ = ["EG3DGenerator", "build_eg3d", "EG3D_DENSITY_LEVEL"]

EG3D_DENSITY_LEVEL: float = math.log1p(math.exp(9.0))
"""EG3D's mesh iso-level, raw sigma 10, after the renderer's ``softplus(sigma - 1)``: softplus(9)."""

_SCOPES = {
    "all": ("backbone.synthesis.", "decoder.", "superresolution."),
    "backbone": ("backbone.synthesis.",),
    "decoder": ("decoder.",),
    "superres": ("superresolution.",),
}


class EG3DGenerator(GeneratorMixin, nn.Module):
    """Adapter around a :class:`~sym3d_eg3d.networks.TriPlaneGenerator`.

    Args:
        G: the EG3D generator (official state_dict names).
        neural_resolution: rays per side of the volume rendering (default: the checkpoint's,
            128 for ffhq512-128).
        build_options: how to rebuild it from the registry (``info.build_options``; used when
            the adapter is built outside the registry, which records its own options).
    """

    name = "eg3d"

    def __init__(
        self,
        G: TriPlaneGenerator,
        *,
        neural_resolution: int | None = None,
        build_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.G = G
        self.z_dim = int(G.z_dim)
        self.w_dim = int(G.w_dim)
        self.num_ws = int(G.num_ws)
        self.img_resolution = int(G.img_resolution)
        self.neural_resolution = int(neural_resolution or G.neural_rendering_resolution)
        self.tunable_scopes = tuple(_SCOPES)
        rk = getattr(G, "rendering_kwargs", None) or {}
        self.info = GeneratorInfo(
            ray_range=(float(rk["ray_start"]), float(rk["ray_end"])) if "ray_start" in rk else None,
            mesh_level=EG3D_DENSITY_LEVEL,
            build_options=None if build_options is None else dict(build_options),
        )

    @property
    def build_options(self) -> dict[str, Any]:
        """The factory options that rebuild this generator (``info.build_options``)."""
        return dict(self.info.build_options or {})

    # ------------------------------------------------------------------ latents
    def mapping(
        self,
        z: torch.Tensor,
        c: torch.Tensor,
        *,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
    ) -> torch.Tensor:
        """``z [B, z_dim]``, conditioning camera ``c [B, 25]`` -> ``ws [B, num_ws, w_dim]``."""
        dims = check_shape(z, ["B", self.z_dim], "z")
        check_shape(c, ["B", 25], "c", dims=dims)
        return self.G.mapping(
            z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff
        )

    def _latent_samples(self, c: torch.Tensor, num_samples: int, seed: int) -> torch.Tensor:
        """First ``w`` of seeded z draws mapped per camera of ``c [B, 25]``: ``[B, S, w_dim]``.

        ``z ~ N(0, I)`` from ``numpy.random.RandomState(seed)``, as SPI draws them.
        """
        z = torch.from_numpy(np.random.RandomState(seed).randn(num_samples, self.z_dim)).to(c)
        out = []
        for b in range(c.shape[0]):
            w = self.G.mapping(z, c[b : b + 1].expand(num_samples, -1))[:, 0]
            out.append(w)
        return torch.stack(out)

    # ------------------------------------------------------------------ rendering
    @staticmethod
    def _random(generator: torch.Generator | None) -> Any:
        if generator is None:
            return "midpoint"
        return lambda shape, role: torch.rand(
            shape, generator=generator
        )  # drawn on the CPU; the renderer moves it

    def render(
        self,
        ws: torch.Tensor,
        cameras: torch.Tensor,
        *,
        neural_resolution: int | None = None,
        generator: torch.Generator | None = None,
    ) -> RenderOutput:
        """Render ``ws [B, num_ws, w_dim]`` from ``cameras [B, V, 25]`` (one backbone pass per latent)."""
        b, v = self._check_render_inputs(ws, cameras)
        res = int(neural_resolution or self.neural_resolution)
        planes = self.G.backbone_planes(ws, noise_mode="const")
        out = self.G.render_planes(
            planes,
            ws,
            cameras,
            neural_rendering_resolution=res,
            random=self._random(generator),
            return_intermediates=True,
        )

        def views(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(b, v, *x.shape[1:])

        depth = views(out["image_depth"])
        opacity = views(out["weights_samples"].reshape(b * v, 1, res, res))
        return RenderOutput(
            image=views(out["image"]),
            image_raw=views(out["image_raw"]),
            depth=depth,
            depth_z=ray_distance_to_z(depth, cameras),
            opacity=opacity,
        )

    def sample_density(self, ws: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """``softplus(sigma - 1)`` (the ray marcher's activation) at world ``points [B, N, 3]``: ``[B, N]``."""
        dims = check_shape(ws, ["B", self.num_ws, self.w_dim], "ws")
        check_shape(points, ["B", "N", 3], "points", dims=dims)
        planes = self.G.backbone_planes(ws, noise_mode="const")
        sigma = self.G.sample_planes(planes, points, torch.zeros_like(points))["sigma"][..., 0]
        return F.softplus(sigma - 1.0)

    # ------------------------------------------------------------------ tuning
    def tunable_parameters(self, scope: str = "all") -> dict[str, nn.Parameter]:
        """Parameters of a scope (``all``, ``backbone``, ``decoder``, ``superres``), keyed by their name in this module."""
        if scope not in _SCOPES:
            raise ConfigError(
                f"tunable scope {scope!r} is not known to generator 'eg3d'; expected one of {', '.join(_SCOPES)}."
            )
        prefixes = tuple(f"G.{p}" for p in _SCOPES[scope])
        return {n: p for n, p in self.named_parameters() if n.startswith(prefixes)}

    def noise_buffers(self) -> list[torch.Tensor]:
        """The backbone's stored noise maps (``noise_const``), used with ``noise_mode="const"``."""
        return [
            buf
            for name, buf in self.G.backbone.synthesis.named_buffers()
            if name.endswith("noise_const")
        ]


def build_eg3d(
    network: str | os.PathLike | None = None,
    *,
    network_sha256: str | None = None,
    init_kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
    neural_resolution: int | None = None,
    impl: str = "auto",
    device: str | torch.device = "cpu",
) -> EG3DGenerator:
    """Build the ``eg3d`` generator.

    Args:
        network: an official ``.pkl`` or a folder written by ``sym3d eg3d convert``.
        network_sha256: if given, the checkpoint's sha256 (as recorded in ``build_options``) must
            equal it.
        init_kwargs: instead of ``network``: build randomly initialised weights from official
            init kwargs (tests, benchmarks), seeded with ``seed``.
        neural_resolution: override of the checkpoint's neural rendering resolution.
        impl: op implementation, ``"auto"`` (CUDA kernels on CUDA tensors), ``"ref"`` or ``"cuda"``.
        device: where to put it.

    Raises:
        UserInputError: neither or both of ``network`` and ``init_kwargs``.
    """
    if (network is None) == (init_kwargs is None):
        given = "neither was given" if network is None else "both were given"
        raise UserInputError(
            "eg3d: needs its weights: pass network=PATH (an official .pkl or a converted folder) "
            f"or init_kwargs=... (random weights); {given}.",
            hint="sym3d invert --generator eg3d --network ffhqrebalanced512-128.pkl",
        )
    if network is not None:
        from sym3d_eg3d.checkpoints import load_checkpoint

        G = load_checkpoint(network, device=device)
        if network_sha256 is not None and network_sha256 != G.checkpoint_sha256:
            raise UserInputError(
                f"eg3d: {network} has sha256 {G.checkpoint_sha256}, "
                f"not the expected {network_sha256}.",
                hint="pass the checkpoint the result or run was made with.",
            )
        options: dict[str, Any] = {"network": str(network), "network_sha256": G.checkpoint_sha256}
    else:
        with torch.random.fork_rng(
            devices=[]
        ):  # seeded construction without touching the global RNG
            torch.manual_seed(seed)
            G = build_generator(dict(init_kwargs or {})).to(device).eval()
        G.init_kwargs = copy.deepcopy(dict(init_kwargs or {}))
        options = {"init_kwargs": dict(init_kwargs or {}), "seed": seed}
    if neural_resolution is not None:
        options["neural_resolution"] = neural_resolution
    G.set_ops_impl(impl)
    G.requires_grad_(False)
    return EG3DGenerator(G, neural_resolution=neural_resolution, build_options=options)
