"""A tiny analytic 3D generator: a coloured density blob, volume-rendered with depth.

It satisfies :class:`sym3d.protocols.Generator3D` and runs in milliseconds on a CPU, so the engine
and the conformance suite can be tested without weights. It lives in the EG3D FFHQ frame (face
toward +z inside the unit box, cameras 2.7 units away looking at ``(0, 0, 0.2)``) and is
symmetric in x unless its residual planes are made asymmetric.

Latent layout (``num_ws = 4`` rows of ``w_dim = 8``):

* row 0: shape: ellipsoid radii (3), vertical offset, a frontal bump (nose-like) size and height.
* row 1: base albedo (3 logits) and shading strength.
* row 2: symmetric colour pattern coefficients (functions of ``x^2``, ``y``, ``z``).
* row 3: a pair of symmetric dark spots (eye-like) and their spacing.

Tunable parameters (scope ``"all"`` / ``"residual"``): zero-initialised tri-planes
``[3, 4, R, R]`` (channel 0: density residual, 1-3: colour logit residual), sampled at the XY,
XZ and ZY projections and summed. They can express detail the latent cannot, and overfit a
single view the way pivot tuning does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sym3d.camera import CameraLabels, camera_ray_directions, ray_distance_to_z
from sym3d.checks import check_shape
from sym3d.errors import ConfigError
from sym3d.generator_base import GeneratorMixin
from sym3d.protocols import RenderOutput

__all__ = ["TinyGenerator3D"]


class TinyGenerator3D(GeneratorMixin, nn.Module):
    """Analytic coloured-blob generator (see module docstring).

    Args:
        resolution: rendered image side (``img_resolution == neural_resolution``).
        num_samples: samples per ray.
        plane_resolution: side of the residual tri-planes.
        seed: seed of the fixed mapping weights.
        near, far: ray interval (world units).
    """

    name = "tiny"

    def __init__(
        self,
        *,
        resolution: int = 32,
        num_samples: int = 32,
        plane_resolution: int = 16,
        seed: int = 0,
        near: float = 2.2,
        far: float = 3.3,
    ) -> None:
        super().__init__()
        self.z_dim = 8
        self.w_dim = 8
        self.num_ws = 4
        self.img_resolution = resolution
        self.neural_resolution = resolution
        self.num_samples = num_samples
        self.near, self.far = near, far
        self.tunable_scopes = ("all", "residual")
        g = torch.Generator().manual_seed(seed)
        self.register_buffer(
            "map_weight", torch.randn(self.num_ws, self.w_dim, self.z_dim, generator=g) * 0.5
        )
        self.register_buffer("map_bias", torch.randn(self.num_ws, self.w_dim, generator=g) * 0.2)
        self.planes = nn.Parameter(torch.zeros(3, 4, plane_resolution, plane_resolution))

    # ------------------------------------------------------------------ latents
    def mapping(
        self,
        z: torch.Tensor,
        c: torch.Tensor,
        *,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
    ) -> torch.Tensor:
        """``z [B, 8] -> ws [B, 4, 8]`` by a fixed affine map (the camera ``c`` is ignored)."""
        check_shape(z, ["B", self.z_dim], "z")
        ws = torch.einsum("rwz,bz->brw", self.map_weight, z) + self.map_bias
        if truncation_psi != 1.0:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            avg = self.map_bias.expand_as(ws)
            ws = torch.cat(
                [avg[:, :cutoff].lerp(ws[:, :cutoff], truncation_psi), ws[:, cutoff:]], dim=1
            )
        return ws

    def _latent_samples(self, c: torch.Tensor, num_samples: int, seed: int) -> torch.Tensor:
        """``[1, S, 4, 8]`` mapped draws (camera-independent for this generator)."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(num_samples, self.z_dim, generator=g).to(self.map_weight)
        return self.mapping(z, c[:1].expand(num_samples, -1))[None]

    # ------------------------------------------------------------------ fields
    @staticmethod
    def _shape_params(ws: torch.Tensor) -> dict[str, torch.Tensor]:
        s = torch.tanh(ws[:, 0])
        return {
            "radii": torch.stack(
                [
                    0.24 * torch.exp(0.2 * s[:, 0]),
                    0.30 * torch.exp(0.2 * s[:, 1]),
                    0.24 * torch.exp(0.2 * s[:, 2]),
                ],
                -1,
            ),
            "center_y": 0.08 * s[:, 3],
            "bump_size": 0.06 + 0.03 * s[:, 4],
            "bump_y": 0.05 * s[:, 5],
        }

    def _density_and_colour(
        self, ws: torch.Tensor, pts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fields at world points ``pts [B, N, 3]``: density ``[B, N]`` (>= 0) and rgb ``[B, N, 3]`` in (0, 1)."""
        sp = self._shape_params(ws)
        center = torch.zeros_like(pts[:, :1, :])
        center = (
            center
            + torch.stack(
                [
                    torch.zeros_like(sp["center_y"]),
                    sp["center_y"],
                    torch.zeros_like(sp["center_y"]),
                ],
                -1,
            )[:, None]
        )
        q = (pts - center) / sp["radii"][:, None, :]
        sdf = (q.norm(dim=-1) - 1.0) * sp["radii"].min(-1).values[:, None]
        # A frontal bump (nose-like) on the +z side of the ellipsoid, on the symmetry plane.
        bump_center = torch.stack(
            [torch.zeros_like(sp["bump_y"]), sp["bump_y"] + sp["center_y"], sp["radii"][:, 2]], -1
        )[:, None]
        bump = (pts - bump_center).norm(dim=-1) - sp["bump_size"][:, None]
        k = 0.04
        h = torch.clamp(0.5 + 0.5 * (bump - sdf) / k, 0.0, 1.0)
        sdf = torch.lerp(bump, sdf, h) - k * h * (1 - h)  # smooth union
        feats = self._plane_features(pts)  # [B, N, 4]
        density = 60.0 * torch.sigmoid(-sdf / 0.015) * torch.exp(feats[..., 0].clamp(-5, 5))

        x, y, z = pts.unbind(-1)
        base = ws[:, 1, None, :3]
        pattern_w = ws[:, 2]
        basis = torch.stack(
            [x.square() * 8.0, y * 3.0, z * 3.0, torch.cos(6.0 * y), torch.cos(8.0 * x.square())],
            -1,
        )  # [B,N,5]
        pattern = torch.einsum(
            "bnk,bkc->bnc",
            basis,
            pattern_w[:, :5, None].expand(-1, -1, 3)
            * torch.tensor([1.0, 0.6, 0.3], device=ws.device),
        )
        eye_w = ws[:, 3]
        spacing = 0.09 + 0.02 * torch.tanh(eye_w[:, 0])
        eye_y = 0.06 + 0.03 * torch.tanh(eye_w[:, 1])
        eye_r = 0.04 + 0.01 * torch.tanh(eye_w[:, 2])
        # Eye centres on the front of the ellipsoid, mirrored in x.
        rx, ry, rz = sp["radii"].unbind(-1)
        eye_z = rz * torch.sqrt(
            (1 - (spacing / rx).square() - ((eye_y - sp["center_y"]) / ry).square()).clamp_min(0.05)
        )
        d_eye = torch.sqrt(
            (x.abs() - spacing[:, None]).square()
            + (y - eye_y[:, None]).square()
            + (z - eye_z[:, None]).square()
            + 1e-8
        )
        eye = torch.sigmoid((eye_r[:, None] - d_eye) / 0.008)
        logits = (
            base + pattern - (1.5 + torch.tanh(eye_w[:, 3]))[:, None, None] * 2.0 * eye[..., None]
        )
        logits = logits + feats[..., 1:]
        return density, torch.sigmoid(logits)

    def _plane_features(self, pts: torch.Tensor) -> torch.Tensor:
        """Sum of the three residual planes at ``pts [B, N, 3]`` (unit box ``[-0.5, 0.5]^3``): ``[B, N, 4]``."""
        b, n, _ = pts.shape
        g = (pts * 2.0).clamp(-1.5, 1.5)
        coords = torch.stack(
            [g[..., [0, 1]], g[..., [0, 2]], g[..., [2, 1]]], dim=1
        )  # [B, 3, N, 2]
        planes = self.planes[None].expand(b, -1, -1, -1, -1).reshape(b * 3, *self.planes.shape[1:])
        out = F.grid_sample(
            planes,
            coords.reshape(b * 3, 1, n, 2),
            mode="bilinear",
            padding_mode="zeros",
            align_corners=False,
        )
        return out.reshape(b, 3, -1, n).sum(1).permute(0, 2, 1)

    # ------------------------------------------------------------------ rendering
    def render(
        self,
        ws: torch.Tensor,
        cameras: torch.Tensor,
        *,
        neural_resolution: int | None = None,
        generator: torch.Generator | None = None,
    ) -> RenderOutput:
        """Render ``ws [B, 4, 8]`` from ``cameras [B, V, 25]``; see :meth:`Generator3D.render`."""
        b, v = self._check_render_inputs(ws, cameras)
        res = neural_resolution or self.neural_resolution
        labels = CameraLabels(cameras)
        dirs = camera_ray_directions(cameras, res, res)  # [B, V, HW, 3]
        origins = labels.position[:, :, None, :]
        n = self.num_samples
        edges = torch.linspace(self.near, self.far, n + 1, device=ws.device, dtype=ws.dtype)
        if generator is None:
            u = torch.full((b, v, res * res, n), 0.5, device=ws.device, dtype=ws.dtype)
        else:
            u = torch.rand(b, v, res * res, n, generator=generator, dtype=ws.dtype).to(ws.device)
        t = edges[:-1] + u * (edges[1:] - edges[:-1])  # [B, V, HW, N]
        pts = origins[..., None, :] + dirs[..., None, :] * t[..., None]  # [B, V, HW, N, 3]
        density, rgb = self._density_and_colour(ws, pts.reshape(b, -1, 3))
        density = density.reshape(b, v, res * res, n)
        rgb = rgb.reshape(b, v, res * res, n, 3)
        delta = torch.cat([t[..., 1:] - t[..., :-1], (edges[-1] - t[..., -1:]).clamp_min(1e-3)], -1)
        alpha = 1.0 - torch.exp(-density * delta)
        trans = torch.cumprod(
            torch.cat([torch.ones_like(alpha[..., :1]), 1.0 - alpha[..., :-1] + 1e-10], -1), -1
        )
        weights = alpha * trans
        acc = weights.sum(-1)
        colour = (weights[..., None] * rgb).sum(-2) + (1.0 - acc[..., None])  # white background
        depth = (weights * t).sum(-1) / acc.clamp_min(1e-4)
        depth = torch.where(acc > 1e-4, depth, torch.full_like(depth, self.far))

        def to_map(x: torch.Tensor, ch: int) -> torch.Tensor:
            return x.reshape(b, v, res, res, ch).permute(0, 1, 4, 2, 3)

        image = to_map(colour, 3) * 2.0 - 1.0
        depth_map = to_map(depth[..., None], 1)
        return RenderOutput(
            image=image,
            image_raw=image,
            depth=depth_map,
            depth_z=ray_distance_to_z(depth_map, cameras),
            opacity=to_map(acc[..., None], 1),
        )

    def sample_density(self, ws: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Density ``[B, N]`` at world ``points [B, N, 3]``."""
        check_shape(ws, ["B", self.num_ws, self.w_dim], "ws")
        return self._density_and_colour(ws, points)[0]

    # ------------------------------------------------------------------ tuning
    def tunable_parameters(self, scope: str = "all") -> dict[str, nn.Parameter]:
        """``{"planes": ...}`` for scopes ``"all"`` and ``"residual"``."""
        if scope not in self.tunable_scopes:
            raise ConfigError(
                f"tunable scope {scope!r} is not known to generator 'tiny'; expected one of {', '.join(self.tunable_scopes)}."
            )
        return {"planes": self.planes}

    def noise_buffers(self) -> list[torch.Tensor]:
        """No noise inputs."""
        return []
