"""SphereHeads: a small 3D-aware generator written against ``sym3d.protocols.Generator3D``.

Geometry is a signed distance field: a skull sphere, a jaw ellipsoid, a nose and two ears,
their sizes and positions set by the latent. Colour comes from a small MLP decoder (the tunable
part) fed with symmetric features of the point and the latent. Volume rendering follows EG3D:
rays leave the camera centre through pixel centres (OpenCV axes), samples lie in
``[ray_start, ray_end] = [2.25, 3.3]``, and the colour is composited over a white background.

It needs only torch and sym3d, and renders a 32 x 32 view in milliseconds on a CPU.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from sym3d.camera import CameraLabels, camera_ray_directions, ray_distance_to_z
from sym3d.checks import check_shape
from sym3d.errors import ConfigError
from sym3d.protocols import RenderOutput

__all__ = ["SphereHeads"]


def _smooth_union(a: torch.Tensor, b: torch.Tensor, k: float) -> torch.Tensor:
    h = torch.clamp(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return torch.lerp(b, a, h) - k * h * (1.0 - h)


class SphereHeads(nn.Module):
    """An SDF head with an MLP colour decoder (see the module docstring).

    Latent layout (``num_ws = 3`` rows of ``w_dim = 16``): row 0 shape, row 1 colour,
    row 2 colour detail (the decoder's latent input).

    Args:
        resolution: side of the rendered images (``img_resolution == neural_resolution``).
        num_samples: samples per ray.
        hidden: width of the colour decoder.
        seed: seed of the (fixed) mapping network and of the decoder's initial weights.
    """

    name = "sphere"
    ray_start = 2.25
    ray_end = 3.3
    sharpness = 0.015  # width (world units) of the density's transition at the surface
    max_density = 60.0  # inverse world units inside the head

    def __init__(
        self, *, resolution: int = 32, num_samples: int = 32, hidden: int = 32, seed: int = 0
    ) -> None:
        super().__init__()
        self.z_dim = 16
        self.w_dim = 16
        self.num_ws = 3
        self.img_resolution = resolution
        self.neural_resolution = resolution
        self.num_samples = num_samples
        self.tunable_scopes = ("all", "decoder")
        g = torch.Generator().manual_seed(seed)
        self.register_buffer(
            "map_weight", torch.randn(self.num_ws, self.w_dim, self.z_dim, generator=g) / 4
        )
        self.register_buffer("map_bias", torch.randn(self.num_ws, self.w_dim, generator=g) * 0.1)
        self.decoder = nn.Sequential(
            nn.Linear(6 + self.w_dim, hidden), nn.Softplus(), nn.Linear(hidden, 3)
        )
        with torch.no_grad():
            for p in self.decoder.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    # -------------------------------------------------------------------------------- latents
    def mapping(
        self,
        z: torch.Tensor,
        c: torch.Tensor,
        *,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
    ) -> torch.Tensor:
        """``z [B, 16]`` -> ``ws [B, 3, 16]`` in (-1, 1); the camera ``c [B, 25]`` is unused."""
        check_shape(z, ["B", self.z_dim], "z")
        ws = torch.tanh(torch.einsum("rwz,bz->brw", self.map_weight, z) + self.map_bias)
        if truncation_psi != 1.0:
            cut = self.num_ws if truncation_cutoff is None else truncation_cutoff
            avg = torch.tanh(self.map_bias).expand_as(ws)
            ws = torch.cat([avg[:, :cut].lerp(ws[:, :cut], truncation_psi), ws[:, cut:]], dim=1)
        return ws

    def _samples(self, c: torch.Tensor, num_samples: int, seed: int) -> torch.Tensor:
        z = torch.randn(num_samples, self.z_dim, generator=torch.Generator().manual_seed(seed))
        return self.mapping(z.to(self.map_weight), c[:1].expand(num_samples, -1))

    def mean_latent(
        self, c: torch.Tensor, *, num_samples: int = 600, seed: int = 123
    ) -> torch.Tensor:
        """``[B, 3, 16]`` mean of ``num_samples`` mapped draws (camera-independent here)."""
        check_shape(c, ["B", 25], "c")
        return (
            self._samples(c, num_samples, seed)
            .mean(0, keepdim=True)
            .expand(c.shape[0], -1, -1)
            .clone()
        )

    def latent_std(
        self, c: torch.Tensor, *, num_samples: int = 600, seed: int = 123
    ) -> torch.Tensor:
        """``[B]`` RMS distance of the sampled first rows to their mean."""
        check_shape(c, ["B", 25], "c")
        w = self._samples(c, num_samples, seed)[:, 0]
        return (w - w.mean(0)).square().sum(-1).mean().sqrt().expand(c.shape[0]).clone()

    # -------------------------------------------------------------------------------- fields
    @staticmethod
    def _sdf(ws: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
        """Signed distance ``[B, N]`` (world units) at ``pts [B, N, 3]``; the face looks to +z."""
        s = ws[:, 0, :8, None]  # [B, 8, 1] in (-1, 1)
        x, y, z = pts.unbind(-1)
        skull = torch.sqrt(x.square() + (y - 0.05).square() + z.square() + 1e-9) - (
            0.22 + 0.03 * s[:, 0]
        )
        jaw_r = torch.stack(
            [0.16 + 0.02 * s[:, 1], 0.14 + 0.02 * s[:, 2], 0.15 + 0.02 * s[:, 3]], -1
        )
        q = torch.stack([x, y + 0.1, z - 0.03], -1) / jaw_r
        jaw = (q.norm(dim=-1) - 1.0) * jaw_r.amin(-1)
        nose = torch.sqrt(
            x.square() + (y + 0.02 * s[:, 4]).square() + (z - 0.2).square() + 1e-9
        ) - (0.045 + 0.01 * s[:, 5])
        ear = torch.sqrt(
            (x.abs() - 0.22).square() + (y - 0.02).square() + (z + 0.02).square() + 1e-9
        ) - (0.05 + 0.01 * s[:, 6])
        head = _smooth_union(skull, jaw, 0.06)
        return torch.minimum(_smooth_union(head, nose, 0.03), _smooth_union(head, ear, 0.02))

    def _density(self, ws: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
        return self.max_density * torch.sigmoid(-self._sdf(ws, pts) / self.sharpness)

    def _colour(self, ws: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
        """RGB ``[B, N, 3]`` in ``(0, 1)``: skin, dark hair on top, dark eyes, plus the decoder."""
        x, y, z = pts.unbind(-1)
        c = ws[:, 1]
        skin = torch.tensor([0.9, 0.3, -0.1], device=ws.device) + 0.4 * c[:, None, :3]
        hair = (
            torch.sigmoid((y - 0.12 + 0.04 * c[:, 3:4]) / 0.02) * torch.sigmoid(-(z - 0.1) / 0.04)
        )[..., None]
        eye_y = 0.07 + 0.02 * c[:, 4:5]
        eye = torch.sigmoid(
            (0.035 - torch.sqrt((x.abs() - 0.08).square() + (y - eye_y).square() + 1e-9)) / 0.01
        )
        eye = eye * torch.sigmoid((z - 0.12) / 0.02)
        feats = torch.stack(
            [x.square() * 10, x.abs() * 3, y * 3, z * 3, torch.cos(8 * y), torch.cos(8 * z)], -1
        )
        detail = self.decoder(
            torch.cat([feats, ws[:, 2, None, :].expand(-1, pts.shape[1], -1)], -1)
        )
        logits = skin + 0.5 * detail - 4.0 * hair - 4.0 * eye[..., None]
        return torch.sigmoid(logits)

    # -------------------------------------------------------------------------------- rendering
    def render(
        self,
        ws: torch.Tensor,
        cameras: torch.Tensor,
        *,
        neural_resolution: int | None = None,
        generator: torch.Generator | None = None,
    ) -> RenderOutput:
        """Render ``ws [B, 3, 16]`` from ``cameras [B, V, 25]`` (see ``Generator3D.render``).

        ``generator=None`` samples bin midpoints (deterministic); otherwise stratified jitter is
        drawn on the CPU from ``generator``.
        """
        dims = check_shape(ws, ["B", self.num_ws, self.w_dim], "ws")
        check_shape(cameras, ["B", "V", 25], "cameras", dims=dims)
        b, v = cameras.shape[:2]
        res = neural_resolution or self.neural_resolution
        dirs = camera_ray_directions(cameras, res, res)  # [B, V, R, 3] unit rays, row-major pixels
        origins = CameraLabels(cameras).position[:, :, None, :]  # [B, V, 1, 3]
        n, r = self.num_samples, res * res
        edges = torch.linspace(
            self.ray_start, self.ray_end, n + 1, device=ws.device, dtype=ws.dtype
        )
        if generator is None:
            u = torch.full((b, v, r, n), 0.5, dtype=ws.dtype)
        else:
            u = torch.rand(b, v, r, n, generator=generator, dtype=ws.dtype)
        t = edges[:-1] + u.to(ws.device) * (edges[1:] - edges[:-1])  # [B, V, R, N]
        pts = (origins[..., None, :] + dirs[..., None, :] * t[..., None]).reshape(b, -1, 3)
        sigma = self._density(ws, pts).reshape(b, v, r, n)
        rgb = self._colour(ws, pts).reshape(b, v, r, n, 3)
        delta = torch.cat([t[..., 1:] - t[..., :-1], edges[-1] - t[..., -1:]], -1)
        alpha = 1.0 - torch.exp(-sigma * delta)
        trans = torch.cumprod(
            torch.cat([torch.ones_like(alpha[..., :1]), 1.0 - alpha[..., :-1] + 1e-10], -1), -1
        )
        weights = alpha * trans
        acc = weights.sum(-1)
        colour = (weights[..., None] * rgb).sum(-2) + (1.0 - acc[..., None])  # white background
        depth = (weights * t).sum(-1) / acc.clamp_min(1e-4)
        depth = torch.where(
            acc > 1e-4, depth, torch.full_like(depth, self.ray_end)
        )  # no hit: ray end

        def to_map(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(b, v, res, res, -1).permute(0, 1, 4, 2, 3)

        image = to_map(colour) * 2.0 - 1.0  # [0, 1] -> the model range [-1, 1]
        depth_map = to_map(depth[..., None])
        return RenderOutput(
            image=image,
            image_raw=image,
            depth=depth_map,
            depth_z=ray_distance_to_z(depth_map, cameras),
            opacity=to_map(acc[..., None]),
        )

    def sample_density(self, ws: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Density ``[B, N]`` (inverse world units) the renderer uses at ``points [B, N, 3]``."""
        check_shape(ws, ["B", self.num_ws, self.w_dim], "ws")
        return self._density(ws, points)

    # -------------------------------------------------------------------------------- tuning
    def tunable_parameters(self, scope: str = "all") -> dict[str, nn.Parameter]:
        """The colour decoder's parameters, for scopes ``"all"`` and ``"decoder"``."""
        if scope not in self.tunable_scopes:
            raise ConfigError(
                f"tunable scope {scope!r} is not known to generator 'sphere'; "
                f"expected one of {', '.join(self.tunable_scopes)}."
            )
        return dict(self.named_parameters())

    def noise_buffers(self) -> list[torch.Tensor]:
        """No per-layer noise."""
        return []

    def frozen_copy(self) -> SphereHeads:
        """A deep copy in eval mode with every parameter frozen."""
        clone = copy.deepcopy(self).eval()
        clone.requires_grad_(False)
        return clone
