"""Volume rendering of SymHeads fields: rays, box clipping, two-pass sampling, compositing.

A field is any object with :meth:`Field.sdf` and :meth:`Field.evaluate`. Density is
``density_scale * sigmoid(-sdf / sdf_eps)`` (a sharp but smooth surface). Each ray is clipped to
the head's bounding box intersected with ``[ray_start, ray_end]``; a **coarse** pass (no
gradient) finds the first sample inside the surface (or, for rays that miss, the closest approach);
a **fine** pass (with gradient) places ``num_fine`` stratified samples in a short interval around
it and alpha-composites their density into opacity and expected depth. Colour is **deferred**:
albedo, the additive radiance residual, labels and the shading normal (central differences of the
field's ``sdf``) are evaluated once per ray at the expected surface point ``o + depth * d``::

    rgb = opacity * (albedo * shade(n) + radiance) + (1 - opacity) * background

where ``shade(n) = ambient + diffuse * max(0, n . l)`` for the analytic head (one white light;
ground-truth scenes may add a coloured key light and a second light, ``Field.shade``).

With the sharp density used here the surface is where almost all of a ray's weight lies, so this
equals compositing per-sample colour up to silhouette pixels, at a fraction of the cost.

Randomness (stratified jitter) comes only from the ``generator`` argument; ``None`` places
samples at interval midpoints (deterministic).
"""

from __future__ import annotations

from typing import Protocol

import attrs
import torch

from sym3d.camera import CameraLabels, camera_ray_directions, ray_distance_to_z

__all__ = ["RenderSettings", "FieldSample", "Field", "RawRender", "volume_render"]


@attrs.frozen(kw_only=True)
class RenderSettings:
    """How SymHeads fields are rendered.

    Attributes:
        ray_start, ray_end: ray range (world units from the camera centre; EG3D FFHQ 2.25..3.3).
        num_coarse: samples per ray of the coarse (surface-finding, no-gradient) pass.
        coarse_grid_spacing: the coarse pass reads the field's ``sdf`` from a grid over the box
            with about this spacing (world units), evaluated once per head and shared by all
            views; ``0`` evaluates the field at every coarse sample instead.
        num_fine: samples per ray of the fine (rendered, differentiable) pass.
        density_scale: peak density (per world unit) inside the surface.
        sdf_eps: width of the density ramp across the surface (world units).
        fine_before, fine_after: margins of the fine interval before the first inside coarse
            sample's predecessor and after the first inside sample (world units).
        normal_step: central-difference step of the shading normal (world units).
        bbox_min, bbox_max: the box that holds the head (symmetric in x); rays are clipped to it.
        background: RGB in ``[0, 1]`` behind the head.

    """

    ray_start: float = 2.25
    ray_end: float = 3.3
    num_coarse: int = 48
    num_fine: int = 10
    coarse_grid_spacing: float = 0.03
    density_scale: float = 300.0
    sdf_eps: float = 0.005
    fine_before: float = 0.012
    fine_after: float = 0.025
    normal_step: float = 0.004
    bbox_min: tuple[float, float, float] = (-0.34, -0.5, -0.42)
    bbox_max: tuple[float, float, float] = (0.34, 0.5, 0.5)
    background: tuple[float, float, float] = (0.78, 0.78, 0.8)


@attrs.frozen(kw_only=True)
class FieldSample:
    """Field values at ``N`` points of ``B`` heads.

    Attributes:
        sdf: ``[B, N]`` signed distance (world units).
        albedo: ``[B, N, 3]`` in ``[0, 1]`` (shaded by the light).
        radiance: ``[B, N, 3]`` unshaded additive colour (residuals), or ``None``.
        labels: ``[B, N, L]`` label weights in ``[0, 1]`` composited like colour, or ``None``.

    """

    sdf: torch.Tensor
    albedo: torch.Tensor
    radiance: torch.Tensor | None = None
    labels: torch.Tensor | None = None


class Field(Protocol):
    """What :func:`volume_render` needs from a head field (``B`` heads)."""

    def shade(self, normal: torch.Tensor) -> torch.Tensor:
        """Light reaching unit normals ``[B, N, 3]``: ``[B, N, 1]`` (white) or ``[B, N, 3]`` (RGB).

        The analytic head's is ``ambient + diffuse * max(0, n . l)``; scenes may add lights.
        """
        ...

    def sdf(self, p: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` signed distance at points ``p [B, N, 3]``."""
        ...

    def evaluate(self, p: torch.Tensor) -> FieldSample:
        """All rendered quantities at points ``p [B, N, 3]``."""
        ...


@attrs.frozen(kw_only=True)
class RawRender:
    """Composited images of ``B`` heads seen from ``V`` cameras at ``H x W``.

    Attributes:
        rgb: ``[B, V, 3, H, W]`` shaded colour, nominally in ``[0, 1]`` (not clamped).
        depth: ``[B, V, 1, H, W]`` expected distance along the unit ray (world units); rays that
            hit nothing tend to ``ray_end``.
        depth_z: ``[B, V, 1, H, W]`` camera-space z of the same point.
        opacity: ``[B, V, 1, H, W]`` accumulated opacity in ``[0, 1]``.
        labels: ``[B, V, L, H, W]`` composited label weights (``L`` may be 0).
        normal: ``[B, V, 3, H, W]`` world-space unit shading normal at the expected surface.

    """

    rgb: torch.Tensor
    depth: torch.Tensor
    depth_z: torch.Tensor
    opacity: torch.Tensor
    labels: torch.Tensor
    normal: torch.Tensor


def _box_interval(
    origins: torch.Tensor, dirs: torch.Tensor, s: RenderSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip rays to the box and the ray range: ``t_near, t_far [B, V, R]`` (empty rays: equal)."""
    lo = torch.tensor(s.bbox_min, dtype=dirs.dtype, device=dirs.device)
    hi = torch.tensor(s.bbox_max, dtype=dirs.dtype, device=dirs.device)
    safe = torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0 = (lo - origins[..., None, :]) / safe
    t1 = (hi - origins[..., None, :]) / safe
    near = torch.minimum(t0, t1).amax(-1).clamp_min(s.ray_start)
    far = torch.maximum(t0, t1).amin(-1).clamp_max(s.ray_end)
    empty = far <= near
    far = torch.where(empty, torch.full_like(far, s.ray_end), far)
    near = torch.where(empty, far, near)
    return near, far


def _stratified(
    near: torch.Tensor, far: torch.Tensor, num: int, generator: torch.Generator | None
) -> torch.Tensor:
    """``[..., num]`` sample distances in ``[near, far]``: midpoints, or jittered with ``generator``."""
    if generator is None:
        u = (torch.arange(num, dtype=near.dtype, device=near.device) + 0.5).expand(*near.shape, num)
    else:
        jitter = torch.rand(
            *near.shape, num, generator=generator, dtype=near.dtype, device="cpu"
        ).to(near.device)
        u = torch.arange(num, dtype=near.dtype, device=near.device) + jitter
    return near[..., None] + (far - near)[..., None] * (u / num)


def _points(origins: torch.Tensor, dirs: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``[B, V*R*S, 3]`` points ``o + t d`` for ``origins [B,V,3]``, ``dirs [B,V,R,3]``, ``t [B,V,R,S]``."""
    p = origins[:, :, None, None, :] + t[..., None] * dirs[..., None, :]
    return p.reshape(p.shape[0], -1, 3)


def _fine_interval(
    t: torch.Tensor, sdf: torch.Tensor, near: torch.Tensor, far: torch.Tensor, s: RenderSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fine interval ``[a, b]`` per ray from coarse samples ``t, sdf [B, V, R, S]``."""
    num = t.shape[-1]
    inside = sdf < 0.0
    hit = inside.any(-1)
    first = torch.where(hit, inside.to(torch.int8).argmax(-1), sdf.argmin(-1))
    lo_idx = (first - 1).clamp_min(0)
    hi_idx = torch.where(hit, first, (first + 1).clamp_max(num - 1))
    a = t.gather(-1, lo_idx[..., None])[..., 0] - s.fine_before
    b = t.gather(-1, hi_idx[..., None])[..., 0] + s.fine_after
    a = torch.maximum(a, near)
    b = torch.minimum(b, far)
    return a, torch.maximum(a, b)


def _sdf_grid(field: Field, s: RenderSettings, batch: int, device: torch.device) -> torch.Tensor:
    """``[B, 1, D, H, W]`` field ``sdf`` at grid points spanning the box (z, y, x order)."""
    axes = []
    for lo, hi in zip(s.bbox_min, s.bbox_max, strict=True):
        n = max(2, int(round((hi - lo) / s.coarse_grid_spacing)) + 1)
        axes.append(torch.linspace(lo, hi, n, device=device))
    gz, gy, gx = torch.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    pts = torch.stack([gx, gy, gz], dim=-1)  # [D,H,W,3]
    d = field.sdf(pts.reshape(1, -1, 3).expand(batch, -1, -1))
    return d.reshape(batch, 1, *pts.shape[:3])


def _lookup(grid: torch.Tensor, p: torch.Tensor, s: RenderSettings) -> torch.Tensor:
    """Trilinear ``[B, N]`` values of ``grid [B, 1, D, H, W]`` at points ``p [B, N, 3]``."""
    lo = torch.tensor(s.bbox_min, dtype=p.dtype, device=p.device)
    hi = torch.tensor(s.bbox_max, dtype=p.dtype, device=p.device)
    coords = (2.0 * (p - lo) / (hi - lo) - 1.0)[:, None, None]  # [B,1,1,N,3] as (x, y, z)
    out = torch.nn.functional.grid_sample(
        grid, coords, mode="bilinear", padding_mode="border", align_corners=True
    )
    return out[:, 0, 0, 0]


def _normals(field: Field, p: torch.Tensor, h: float) -> torch.Tensor:
    """``[B, N, 3]`` unit normals from central differences of ``field.sdf`` (symmetric stencil)."""
    eye = torch.eye(3, dtype=p.dtype, device=p.device) * h
    offsets = torch.cat([eye, -eye], dim=0)  # [6, 3]
    q = (p[:, :, None, :] + offsets).reshape(p.shape[0], -1, 3)
    d = field.sdf(q).reshape(p.shape[0], p.shape[1], 6)
    grad = d[..., :3] - d[..., 3:]
    return torch.nn.functional.normalize(grad, dim=-1, eps=1e-9)


def volume_render(
    field: Field,
    cameras: torch.Tensor,
    resolution: int,
    settings: RenderSettings,
    *,
    generator: torch.Generator | None = None,
) -> RawRender:
    """Render ``B`` head fields from ``V`` cameras each.

    Args:
        field: the fields of ``B`` heads.
        cameras: ``[B, V, 25]`` camera labels.
        resolution: image side ``H = W`` (pixels).
        settings: sampling and shading settings.
        generator: random source of the stratified jitter; ``None`` = deterministic midpoints.

    Returns:
        :class:`RawRender` with ``[B, V, C, H, W]`` maps.

    """
    s = settings
    b, v = cameras.shape[:2]
    h = w = resolution
    dirs = camera_ray_directions(cameras, h, w)  # [B,V,R,3]
    origins = CameraLabels(cameras).position  # [B,V,3]
    near, far = _box_interval(origins, dirs, s)
    with torch.no_grad():
        tc = _stratified(near, far, s.num_coarse, generator)
        pc = _points(origins.detach(), dirs.detach(), tc)
        if s.coarse_grid_spacing > 0:
            sdf_c = _lookup(_sdf_grid(field, s, b, cameras.device), pc, s).reshape(tc.shape)
        else:
            sdf_c = field.sdf(pc).reshape(tc.shape)
        a, bnd = _fine_interval(tc, sdf_c, near, far, s)
    tf = _stratified(a, bnd, s.num_fine, generator)  # [B,V,R,S]
    sdf = field.sdf(_points(origins, dirs, tf)).reshape(tf.shape)
    sigma = s.density_scale * torch.sigmoid(-sdf / s.sdf_eps)
    delta = ((bnd - a) / s.num_fine)[..., None]
    alpha = 1.0 - torch.exp(-sigma * delta)
    trans = torch.cumprod(
        torch.cat([torch.ones_like(alpha[..., :1]), 1.0 - alpha[..., :-1] + 1e-10], dim=-1), dim=-1
    )
    weights = alpha * trans  # [B,V,R,S]
    opacity = weights.sum(-1)  # [B,V,R]
    eps = 1e-5
    depth = ((weights * tf).sum(-1) + eps * s.ray_end) / (opacity + eps)
    # Deferred colour and shading at the expected surface point of each ray.
    hit_points = (origins[:, :, None, :] + depth[..., None] * dirs).reshape(b, -1, 3)
    sample = field.evaluate(hit_points)
    normal = _normals(field, hit_points, s.normal_step)  # [B,VR,3]
    colour = sample.albedo * field.shade(normal)
    if sample.radiance is not None:
        colour = colour + sample.radiance
    op = opacity.reshape(b, -1, 1)
    bg = torch.tensor(s.background, dtype=colour.dtype, device=colour.device)
    rgb = op * colour + (1.0 - op) * bg
    labels = (
        op * sample.labels if sample.labels is not None else colour.new_zeros(b, colour.shape[1], 0)
    )

    def img(x: torch.Tensor) -> torch.Tensor:  # [B, V*R, C] -> [B, V, C, H, W]
        return x.reshape(b, v, h, w, x.shape[-1]).permute(0, 1, 4, 2, 3)

    depth_img = img(depth.reshape(b, -1, 1))
    return RawRender(
        rgb=img(rgb),
        depth=depth_img,
        depth_z=ray_distance_to_z(depth_img, cameras),
        opacity=img(op),
        labels=img(labels),
        normal=img(normal),
    )
