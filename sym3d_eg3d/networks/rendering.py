"""Tri-plane volume rendering: rays, plane sampling, stratified + importance sampling, compositing.

``rendering_kwargs`` (the official option dict) keys read here: ``ray_start``, ``ray_end``
(floats, or both ``"auto"`` to intersect each ray with the box), ``box_warp``,
``depth_resolution``, ``depth_resolution_importance``, ``disparity_space_sampling``,
``clamp_mode`` (only ``"softplus"``), optional ``white_back`` and ``density_noise``.

World units throughout; ``box_warp`` is the side length of the cube spanned by the planes
(1 maps ``[-0.5, 0.5]^3`` onto the planes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from sym3d.errors import ConfigError
from sym3d_eg3d.networks.randomness import RandomLike, RandomSource, as_random_source, draw_uniform

__all__ = [
    "PlaneOrder",
    "PLANE_GRID_AXES",
    "plane_axes_matrices",
    "project_onto_planes",
    "sample_from_planes",
    "plane_rows",
    "sample_plane_mean",
    "ray_limits_box",
    "RaySampler",
    "MipRayMarcher2",
    "RenderResult",
    "ImportanceRenderer",
]

PlaneOrder = Literal["released", "corrected"]

# World axis (0=x, 1=y, 2=z) read as (grid x = column, grid y = row) for each of the 3 planes.
PLANE_GRID_AXES: Mapping[str, tuple[tuple[int, int], ...]] = {
    # Quirk (released checkpoints): third plane is (z, x), not (y, z).
    "released": ((0, 1), (0, 2), (2, 0)),
    "corrected": ((0, 1), (0, 2), (1, 2)),
}


class Decoder(Protocol):
    """What the renderer needs of a decoder: ``decode(mean_features [N, M, C])``.

    ``mean_features`` is the mean over the planes of the sampled plane features; the result is
    ``{"rgb": [N, M, C'], "sigma": [N, M, 1]}``. :class:`~sym3d_eg3d.networks.triplane.OSGDecoder`
    is one.
    """

    def decode(self, mean_features: torch.Tensor) -> dict: ...


def plane_axes_matrices(order: PlaneOrder = "released") -> torch.Tensor:
    """The ``[3, 3, 3]`` plane matrices ``A_k`` such that ``(p @ inv(A_k))[:2]`` is plane k's grid point.

    For ``"released"`` this equals the official renderer's constant ``plane_axes``.
    """
    if order not in PLANE_GRID_AXES:
        raise ConfigError(
            f"plane order must be one of {', '.join(PLANE_GRID_AXES)}; got {order!r}."
        )
    mats = torch.zeros(3, 3, 3)
    for k, (gx, gy) in enumerate(PLANE_GRID_AXES[order]):
        third = 3 - gx - gy
        # inv(A) has column 0 = e_gx, column 1 = e_gy, column 2 = e_third; A is its transpose.
        mats[k, 0, gx] = 1
        mats[k, 1, gy] = 1
        mats[k, 2, third] = 1
    return mats


def project_onto_planes(plane_axes: torch.Tensor, coordinates: torch.Tensor) -> torch.Tensor:
    """Project points onto each plane.

    Args:
        plane_axes: ``[P, 3, 3]`` plane matrices (see :func:`plane_axes_matrices`).
        coordinates: ``[N, M, 3]`` points (already scaled to the planes' [-1, 1] range).

    Returns:
        ``[N, P, M, 2]`` grid coordinates ``(x = column, y = row)`` (a view of an
        ``[N, M, P, 2]``-ordered tensor).

    """
    n, m, _ = coordinates.shape
    p = plane_axes.shape[0]
    inv = torch.linalg.inv(plane_axes.to(coordinates.dtype))  # [P, 3, 3]
    # One GEMM for all planes: column block k of the right factor is inv(A_k).
    grid = coordinates.reshape(n * m, 3) @ inv.permute(1, 0, 2).reshape(3, 3 * p)
    return grid.view(n, m, p, 3)[..., :2].permute(0, 2, 1, 3)


def sample_from_planes(
    plane_axes: torch.Tensor,
    plane_features: torch.Tensor,
    coordinates: torch.Tensor,
    box_warp: float,
) -> torch.Tensor:
    """Bilinearly sample every plane at the projections of ``coordinates``.

    Args:
        plane_axes: ``[P, 3, 3]``.
        plane_features: ``[N, P, C, H, W]``.
        coordinates: ``[N, M, 3]`` world points.
        box_warp: side length of the cube covered by the planes.

    Returns:
        ``[N, P, M, C]``; points outside the cube read zeros (``padding_mode="zeros"``,
        ``align_corners=False``).

    """
    n, p, ch, h, w = plane_features.shape
    m = coordinates.shape[1]
    grid = project_onto_planes(plane_axes, (2 / box_warp) * coordinates)  # [N, P, M, 2]
    out = F.grid_sample(
        plane_features.reshape(n * p, ch, h, w),
        grid.reshape(n * p, 1, m, 2).float(),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )  # [N*P, C, 1, M]
    return out.permute(0, 3, 2, 1).reshape(n, p, m, ch)


def plane_rows(planes: torch.Tensor) -> torch.Tensor:
    """Tri-planes as a table of feature rows for :func:`sample_plane_mean`.

    Args:
        planes: ``[N, P, C, H, W]``.

    Returns:
        ``[N * P * H * W, C]`` (channels last; pixel ``(y, x)`` of plane ``p`` of latent ``n``
        is row ``((n * P + p) * H + y) * W + x``). Differentiable; build it once per render and
        share it between passes.

    """
    n, p, ch, h, w = planes.shape
    return planes.permute(0, 1, 3, 4, 2).reshape(n * p * h * w, ch)


class _WeightedRowSum(torch.autograd.Function):
    """``out[m] = sum_k weights[m, k] * rows[index[m, k]]`` with a cache-friendly backward.

    Forward is ``embedding_bag(mode="sum")``. Its built-in backward sorts all ``M * K`` indices;
    scattering one corner column at a time with ``index_add_`` is about twice as fast on the CPU.
    """

    @staticmethod
    def forward(
        ctx, rows: torch.Tensor, index: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(rows, index, weights)
        return F.embedding_bag(index, rows, per_sample_weights=weights, mode="sum")

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, torch.Tensor | None]:  # type: ignore[override]
        rows, index, weights = ctx.saved_tensors
        grad_rows = grad_weights = None
        if ctx.needs_input_grad[0]:
            grad_rows = torch.zeros_like(rows)
            index_t, weights_t = index.t().contiguous(), weights.t().contiguous()
            for k in range(index_t.shape[0]):
                grad_rows.index_add_(0, index_t[k], grad * weights_t[k].unsqueeze(-1))
        if ctx.needs_input_grad[2]:
            grad_weights = torch.einsum("mkc,mc->mk", F.embedding(index, rows), grad)
        return grad_rows, None, grad_weights


def sample_plane_mean(
    plane_axes: torch.Tensor,
    rows: torch.Tensor,
    plane_shape: tuple[int, int, int, int, int],
    coordinates: torch.Tensor,
    box_warp: float,
) -> torch.Tensor:
    """The mean over the planes of :func:`sample_from_planes`, computed as one weighted row sum.

    Same bilinear rule as ``grid_sample(mode="bilinear", padding_mode="zeros",
    align_corners=False)``: each point reads 4 corner rows per plane with their bilinear
    weights; corners outside a plane get weight 0 (zeros padding). All 4 * P rows of a point are summed
    by one ``embedding_bag`` over channels-last rows, which on the CPU is several times faster
    than ``grid_sample`` followed by a strided mean (forward and backward). Gradients flow to
    ``rows`` and, through the weights, to ``coordinates``. The summation order differs from the
    two-step reference, so values differ by float rounding (about 1e-6 for unit-scale features).

    Args:
        plane_axes: ``[P, 3, 3]``.
        rows: ``[N * P * H * W, C]`` from :func:`plane_rows`.
        plane_shape: ``(N, P, C, H, W)`` of the planes behind ``rows``.
        coordinates: ``[N, M, 3]`` world points.
        box_warp: side length of the cube covered by the planes.

    Returns:
        ``[N, M, C]``.

    """
    n, p, ch, h, w = plane_shape
    m = coordinates.shape[1]
    grid = (
        project_onto_planes(plane_axes, (2 / box_warp) * coordinates).transpose(1, 2).float()
    )  # [N, M, P, 2]
    # grid_sample's unnormalisation for align_corners=False. Outside [-1, W] (resp. [-1, H]) both
    # corners are off the plane, so clamping there changes neither the value (0) nor the gradient (0).
    ix = (((grid[..., 0] + 1) * w - 1) / 2).clamp(-1, w)
    iy = (((grid[..., 1] + 1) * h - 1) / 2).clamp(-1, h)
    x0 = torch.floor(ix)
    y0 = torch.floor(iy)
    with torch.no_grad():
        # Corners off the plane read zeros (padding_mode="zeros"): their weight is masked to 0 and
        # their index clamped onto the plane, so no zero border has to be built around the planes.
        # A NaN point keeps NaN weights (NaN * 0 = NaN) and propagates NaN as grid_sample does.
        cols = x0.nan_to_num(-1).unsqueeze(-1) + torch.tensor(
            [0.0, 1.0], device=x0.device
        )  # [N, M, P, 2]
        rows_ = y0.nan_to_num(-1).unsqueeze(-1) + torch.tensor([0.0, 1.0], device=y0.device)
        on_x = ((cols >= 0) & (cols <= w - 1)).to(ix.dtype)
        on_y = ((rows_ >= 0) & (rows_ <= h - 1)).to(iy.dtype)
        col = cols.clamp(0, w - 1).long()
        row = rows_.clamp(0, h - 1).long()
        first = torch.arange(n * p, device=ix.device).view(n, 1, p, 1, 1) * (h * w)
        # [N, M, P, 2 (row), 2 (col)] -> corners nw, ne, sw, se of each plane
        index = (first + row.unsqueeze(-1) * w + col.unsqueeze(-2)).reshape(n * m, p * 4)
    wx = (
        torch.stack((x0 + 1 - ix, ix - x0), -1) * on_x
    )  # [N, M, P, 2]: weights of columns x0, x0 + 1
    wy = torch.stack((y0 + 1 - iy, iy - y0), -1) * on_y
    weights = (wy.unsqueeze(-1) * wx.unsqueeze(-2)).reshape(n * m, p * 4)
    summed = _WeightedRowSum.apply(rows, index, weights.to(rows.dtype))
    return (summed / p).reshape(n, m, ch)


def ray_limits_box(
    origins: torch.Tensor, directions: torch.Tensor, box_side_length: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit distances of rays through the axis-aligned cube of side ``box_side_length``.

    Args:
        origins: ``[..., 3]``.
        directions: ``[..., 3]``.
        box_side_length: cube side, centred at the origin.

    Returns:
        ``(t_min, t_max)``, each ``[..., 1]``; rays that miss get ``t_min = -1`` and ``t_max = -2``.

    """
    shape = origins.shape
    o = origins.detach().reshape(-1, 3)
    d = directions.detach().reshape(-1, 3)
    half = box_side_length / 2
    bounds = torch.tensor([[-half] * 3, [half] * 3], dtype=o.dtype, device=o.device)
    valid = torch.ones(o.shape[:-1], dtype=torch.bool, device=o.device)
    inv_d = 1 / d
    sign = (inv_d < 0).long()

    def slab(axis: int) -> tuple[torch.Tensor, torch.Tensor]:
        near = (bounds.index_select(0, sign[..., axis])[..., axis] - o[..., axis]) * inv_d[
            ..., axis
        ]
        far = (bounds.index_select(0, 1 - sign[..., axis])[..., axis] - o[..., axis]) * inv_d[
            ..., axis
        ]
        return near, far

    tmin, tmax = slab(0)
    tymin, tymax = slab(1)
    valid = valid & ~((tmin > tymax) | (tymin > tmax))
    tmin = torch.max(tmin, tymin)
    tmax = torch.min(tmax, tymax)
    tzmin, tzmax = slab(2)
    valid = valid & ~((tmin > tzmax) | (tzmin > tmax))
    tmin = torch.max(tmin, tzmin)
    tmax = torch.min(tmax, tzmax)
    tmin = torch.where(valid, tmin, torch.full_like(tmin, -1))
    tmax = torch.where(valid, tmax, torch.full_like(tmax, -2))
    return tmin.reshape(*shape[:-1], 1), tmax.reshape(*shape[:-1], 1)


class RaySampler(nn.Module):
    """One ray per pixel centre from cam2world matrices and normalised intrinsics.

    Camera convention: OpenCV (x right, y down, z forward); intrinsics normalised by the image
    size. Pixel (row i, col j) sits at ``((j + 0.5) / R, (i + 0.5) / R)`` and ray ``m = i * R + j``.
    """

    def forward(
        self, cam2world: torch.Tensor, intrinsics: torch.Tensor, resolution: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Make rays.

        Args:
            cam2world: ``[N, 4, 4]``.
            intrinsics: ``[N, 3, 3]`` ``[[fx, sk, cx], [0, fy, cy], [0, 0, 1]]``.
            resolution: rays per side ``R``.

        Returns:
            ``(origins [N, R*R, 3], directions [N, R*R, 3])``, directions unit length.

        """
        n, m = cam2world.shape[0], resolution**2
        device = cam2world.device
        cam_pos = cam2world[:, :3, 3]
        fx = intrinsics[:, 0, 0].unsqueeze(-1)
        fy = intrinsics[:, 1, 1].unsqueeze(-1)
        cx = intrinsics[:, 0, 2].unsqueeze(-1)
        cy = intrinsics[:, 1, 2].unsqueeze(-1)
        sk = intrinsics[:, 0, 1].unsqueeze(-1)

        idx = torch.arange(resolution, dtype=torch.float32, device=device)
        rows, cols = torch.meshgrid(idx, idx, indexing="ij")
        scale, offset = 1.0 / resolution, 0.5 / resolution
        x_img = (cols * scale + offset).reshape(1, -1).expand(n, -1)
        y_img = (rows * scale + offset).reshape(1, -1).expand(n, -1)
        z_cam = torch.ones((n, m), device=device)

        # Undo the intrinsics (with skew) on the z = 1 image plane; keep this operation order.
        x_cam = (x_img - cx + cy * sk / fy - sk * y_img / fy) / fx * z_cam
        y_cam = (y_img - cy) / fy * z_cam
        points_cam = torch.stack((x_cam, y_cam, z_cam, torch.ones_like(z_cam)), dim=-1)  # [N, M, 4]

        # Transform the points, then subtract the camera position (not R @ d).
        points_world = torch.bmm(cam2world, points_cam.permute(0, 2, 1)).permute(0, 2, 1)[:, :, :3]
        directions = F.normalize(points_world - cam_pos[:, None, :], dim=2)
        origins = cam_pos.unsqueeze(1).repeat(1, m, 1)
        return origins, directions


class MipRayMarcher2(nn.Module):
    """Alpha compositing over consecutive sample pairs (mid-point colours, densities, depths)."""

    def forward(
        self,
        colors: torch.Tensor,
        densities: torch.Tensor,
        depths: torch.Tensor,
        rendering_options: Mapping,
        *,
        clamp_depth: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Composite samples along each ray.

        Args:
            colors: ``[N, R, S, C]`` in [0, 1].
            densities: ``[N, R, S, 1]`` raw (activated here with ``softplus(x - 1)``).
            depths: ``[N, R, S, 1]`` sorted along S.
            rendering_options: reads ``clamp_mode`` and ``white_back``.
            clamp_depth: apply the batch-wide clamp below; ``False`` leaves it to the caller
                (who renders rays in chunks and clamps once over all of them).

        Returns:
            ``(rgb [N, R, C] scaled to [-1, 1], depth [N, R, 1], weights [N, R, S-1, 1])``.
            ``depth`` is the expected ray distance. Quirk (official): it is clamped to the min and
            max of *all* depths in the batch tensor, so it depends on the other rays and samples.

        """
        clamp_mode = rendering_options.get("clamp_mode", "softplus")
        if clamp_mode != "softplus":
            raise ConfigError(
                f"rendering_kwargs['clamp_mode']: only 'softplus' is supported; got {clamp_mode!r}."
            )
        deltas = depths[:, :, 1:] - depths[:, :, :-1]
        densities_mid = (densities[:, :, :-1] + densities[:, :, 1:]) / 2
        depths_mid = (depths[:, :, :-1] + depths[:, :, 1:]) / 2

        densities_mid = F.softplus(densities_mid - 1)  # the -1 bias helps at initialisation
        alpha = 1 - torch.exp(-(densities_mid * deltas))
        transmittance = torch.cumprod(
            torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], -2), -2
        )
        weights = alpha * transmittance[:, :, :-1]

        # sum_s w_s (c_s + c_{s+1}) / 2 (mid-point colours) regrouped per sample as
        # sum_j c_j (w_j + w_{j-1}) / 2: one pass over the [N, R, S, C] colours instead of three
        # over the mid-point colours (same value up to float rounding). Element-wise product and
        # sum, not a bmm of N * R tiny [1, S] x [S, C] matrices: the CPU backward of that bmm
        # loops over the rays (thousands of small ops per render).
        per_sample = F.pad(weights, (0, 0, 0, 1)) + F.pad(weights, (0, 0, 1, 0))  # [N, R, S, 1]
        rgb = (colors * (per_sample / 2)).sum(-2)
        weight_total = weights.sum(2)
        depth = torch.sum(weights * depths_mid, -2) / weight_total
        depth = torch.nan_to_num(depth, float("inf"))
        if clamp_depth:
            depth = torch.clamp(depth, torch.min(depths), torch.max(depths))
        if rendering_options.get("white_back", False):
            rgb = rgb + 1 - weight_total
        return rgb * 2 - 1, depth, weights


class RenderResult(NamedTuple):
    """Output of :class:`ImportanceRenderer` for ``N`` batches of ``R`` rays.

    Attributes:
        features: ``[N, R, C]`` composited features, scaled ``*2 - 1`` (channels 0..2 are rgb).
        depth: ``[N, R, 1]`` expected distance along the (unit) ray direction.
        weights_sum: ``[N, R, 1]`` opacity, the sum of the final compositing weights.
        depths_coarse: ``[N, R, D, 1]`` stratified depths.
        depths_fine: ``[N, R, D_imp, 1]`` importance depths (``None`` without importance pass).

    """

    features: torch.Tensor
    depth: torch.Tensor
    weights_sum: torch.Tensor
    depths_coarse: torch.Tensor
    depths_fine: torch.Tensor | None


class ImportanceRenderer(nn.Module):
    """EG3D's two-pass tri-plane renderer: stratified coarse samples, then importance samples.

    Args:
        plane_order: ``"released"`` (XY, XZ, ZX; what every released checkpoint was trained
            with) or ``"corrected"`` (XY, XZ, YZ).

    """

    ray_chunk: int = 4096
    """Rays per chunk in :meth:`forward` (a speed setting; results do not depend on it)."""

    def __init__(self, plane_order: PlaneOrder = "released") -> None:
        super().__init__()
        self.ray_marcher = MipRayMarcher2()
        self.plane_order = plane_order
        # A constant, not a weight: kept out of the state_dict like the official attribute.
        self.register_buffer("plane_axes", plane_axes_matrices(plane_order), persistent=False)

    def forward(
        self,
        planes: torch.Tensor,
        decoder: Decoder,
        ray_origins: torch.Tensor,
        ray_directions: torch.Tensor,
        rendering_options: Mapping,
        random: RandomLike = None,
    ) -> RenderResult:
        """Render rays through the tri-planes.

        Rays are processed in chunks of :attr:`ray_chunk` so the per-sample tensors stay in
        cache; every random draw is made up front for all rays (same shapes and order as the
        official renderer) and the depth clamp is applied once over all rays, so the result does
        not depend on the chunk size.

        Args:
            planes: ``[N, 3, C, H, W]``.
            decoder: has ``decode(mean_features [N, M, C])`` returning
                ``{"rgb": [N, M, C'], "sigma": [N, M, 1]}`` (see :class:`Decoder`).
            ray_origins: ``[N, R, 3]``.
            ray_directions: ``[N, R, 3]`` unit vectors.
            rendering_options: the ``rendering_kwargs`` dict.
            random: the source of the two uniform draws (see
                :mod:`sym3d_eg3d.networks.randomness`).

        Returns:
            :class:`RenderResult`.

        """
        source = as_random_source(random)
        opts = rendering_options
        depth_res = int(opts["depth_resolution"])
        n_importance = int(opts["depth_resolution_importance"])

        if opts["ray_start"] == opts["ray_end"] == "auto":
            ray_start, ray_end = ray_limits_box(ray_origins, ray_directions, opts["box_warp"])
            valid = ray_end > ray_start
            if torch.any(valid).item():
                # Quirk (official): rays that miss the box get end = max of the *starts*.
                ray_start = torch.where(valid, ray_start, ray_start[valid].min())
                ray_end = torch.where(valid, ray_end, ray_start[valid].max())
        else:
            ray_start, ray_end = opts["ray_start"], opts["ray_end"]
        depths_coarse = self.sample_stratified(
            ray_origins,
            ray_start,
            ray_end,
            depth_res,
            source,
            opts.get("disparity_space_sampling", False),
        )
        n, r, _, _ = depths_coarse.shape
        u_importance = None
        if n_importance > 0:
            u_importance = draw_uniform(
                source, (n * r, n_importance), "importance", like=depths_coarse
            )
            u_importance = u_importance.reshape(n, r, n_importance)
        rows = plane_rows(planes)

        parts = []
        for lo in range(0, r, self.ray_chunk):
            hi = min(lo + self.ray_chunk, r)
            parts.append(
                self._render_chunk(
                    planes.shape,
                    rows,
                    decoder,
                    ray_origins[:, lo:hi],
                    ray_directions[:, lo:hi],
                    depths_coarse[:, lo:hi],
                    None if u_importance is None else u_importance[:, lo:hi],
                    opts,
                )
            )
        rgb, depth, weights_sum, depths_fine = (
            None if parts[0][k] is None else torch.cat([part[k] for part in parts], 1)
            for k in range(4)
        )
        # The official batch-wide clamp, over every sample depth of every ray.
        lo_depth, hi_depth = depths_coarse.min(), depths_coarse.max()
        if depths_fine is not None:
            lo_depth, hi_depth = (
                torch.minimum(lo_depth, depths_fine.min()),
                torch.maximum(hi_depth, depths_fine.max()),
            )
        depth = torch.clamp(depth, lo_depth, hi_depth)
        return RenderResult(rgb, depth, weights_sum, depths_coarse, depths_fine)

    def _render_chunk(
        self,
        plane_shape: tuple[int, ...],
        rows: torch.Tensor,
        decoder: Decoder,
        ray_origins: torch.Tensor,
        ray_directions: torch.Tensor,
        depths_coarse: torch.Tensor,
        u_importance: torch.Tensor | None,
        opts: Mapping,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Both passes for ``R`` rays: ``(rgb [N, R, C], unclamped depth [N, R, 1], opacity [N, R, 1], fine depths)``."""
        n, r, s, _ = depths_coarse.shape
        coords = (ray_origins.unsqueeze(-2) + depths_coarse * ray_directions.unsqueeze(-2)).reshape(
            n, -1, 3
        )
        out = self._decode_points(plane_shape, rows, decoder, coords, opts)
        colors_coarse = out["rgb"].reshape(n, r, s, out["rgb"].shape[-1])
        densities_coarse = out["sigma"].reshape(n, r, s, 1)

        if u_importance is None:
            rgb, depth, weights = self.ray_marcher(
                colors_coarse, densities_coarse, depths_coarse, opts, clamp_depth=False
            )
            return rgb, depth, weights.sum(2), None

        _, _, weights = self.ray_marcher(
            colors_coarse, densities_coarse, depths_coarse, opts, clamp_depth=False
        )
        n_importance = u_importance.shape[-1]
        depths_fine = self.sample_importance(
            depths_coarse, weights, u_importance.reshape(n * r, n_importance)
        )

        coords = (ray_origins.unsqueeze(-2) + depths_fine * ray_directions.unsqueeze(-2)).reshape(
            n, -1, 3
        )
        out = self._decode_points(plane_shape, rows, decoder, coords, opts)
        colors_fine = out["rgb"].reshape(n, r, n_importance, out["rgb"].shape[-1])
        densities_fine = out["sigma"].reshape(n, r, n_importance, 1)

        depths_all, colors_all, densities_all = self.unify_samples(
            depths_coarse, colors_coarse, densities_coarse, depths_fine, colors_fine, densities_fine
        )
        rgb, depth, weights = self.ray_marcher(
            colors_all, densities_all, depths_all, opts, clamp_depth=False
        )
        return rgb, depth, weights.sum(2), depths_fine

    def _decode_points(
        self,
        plane_shape: tuple[int, ...],
        rows: torch.Tensor,
        decoder: Decoder,
        coordinates: torch.Tensor,
        options: Mapping,
    ) -> dict:
        features = sample_plane_mean(
            self.plane_axes, rows, plane_shape, coordinates, options["box_warp"]
        )
        out = decoder.decode(features)
        if options.get("density_noise", 0) > 0:
            out = dict(
                out, sigma=out["sigma"] + torch.randn_like(out["sigma"]) * options["density_noise"]
            )
        return out

    def run_model(
        self,
        planes: torch.Tensor,
        decoder: Decoder,
        coordinates: torch.Tensor,
        directions: torch.Tensor,
        options: Mapping,
    ) -> dict:
        """Decode points: ``coordinates [N, M, 3] -> {"rgb": [N, M, C'], "sigma": [N, M, 1]}``.

        ``directions [N, M, 3]`` is accepted for the official signature and unused.
        ``options['density_noise'] > 0`` adds Gaussian noise (global RNG) to sigma, as in training.
        """
        return self._decode_points(planes.shape, plane_rows(planes), decoder, coordinates, options)

    @staticmethod
    def unify_samples(
        depths1: torch.Tensor,
        colors1: torch.Tensor,
        densities1: torch.Tensor,
        depths2: torch.Tensor,
        colors2: torch.Tensor,
        densities2: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Concatenate two sample sets along S and sort them by depth (``[N, R, S, *]``)."""
        depths = torch.cat([depths1, depths2], dim=-2)
        colors = torch.cat([colors1, colors2], dim=-2)
        densities = torch.cat([densities1, densities2], dim=-2)
        depths, order = torch.sort(depths, dim=-2)
        n, r, s, ch = colors.shape
        # Whole rows of C values per sample: index_select moves them much faster than gather.
        flat = (order[..., 0] + s * torch.arange(n * r, device=order.device).view(n, r, 1)).reshape(
            -1
        )
        colors = colors.reshape(n * r * s, ch).index_select(0, flat).reshape(n, r, s, ch)
        densities = densities.reshape(n * r * s).index_select(0, flat).reshape(n, r, s, 1)
        return depths, colors, densities

    @staticmethod
    def sample_stratified(
        ray_origins: torch.Tensor,
        ray_start: float | torch.Tensor,
        ray_end: float | torch.Tensor,
        depth_resolution: int,
        source: RandomSource,
        disparity_space_sampling: bool = False,
    ) -> torch.Tensor:
        """One jittered depth per bin of ``depth_resolution`` bins: ``[N, R, D, 1]``.

        Quirk (official): the bins are ``linspace(start, end, D)`` with the jitter spanning
        ``(end - start) / (D - 1)``, so the last sample can lie beyond ``ray_end``.
        """
        n, r, _ = ray_origins.shape
        device = ray_origins.device
        if disparity_space_sampling:
            t = (
                torch.linspace(0, 1, depth_resolution, device=device)
                .reshape(1, 1, depth_resolution, 1)
                .repeat(n, r, 1, 1)
            )
            u = draw_uniform(source, t.shape, "stratified", like=t)
            t = t + u * (1 / (depth_resolution - 1))
            return 1.0 / (1.0 / ray_start * (1.0 - t) + 1.0 / ray_end * t)
        if isinstance(ray_start, torch.Tensor):
            steps = torch.arange(depth_resolution, dtype=torch.float32, device=device) / (
                depth_resolution - 1
            )
            steps = steps.reshape(-1, *([1] * ray_start.ndim))
            depths = (ray_start[None] + steps * (ray_end - ray_start)[None]).permute(1, 2, 0, 3)
            delta = (ray_end - ray_start) / (depth_resolution - 1)
            u = draw_uniform(source, depths.shape, "stratified", like=depths)
            return depths + u * delta[..., None]
        depths = torch.linspace(ray_start, ray_end, depth_resolution, device=device)
        depths = depths.reshape(1, 1, depth_resolution, 1).repeat(n, r, 1, 1)
        delta = (ray_end - ray_start) / (depth_resolution - 1)
        u = draw_uniform(source, depths.shape, "stratified", like=depths)
        return depths + u * delta

    def sample_importance(
        self, depths: torch.Tensor, weights: torch.Tensor, u: torch.Tensor
    ) -> torch.Tensor:
        """Importance depths per ray from the coarse weights: ``[N, R, n_importance, 1]``.

        The weights (``[N, R, D-1, 1]``) are smoothed with a 2-tap max then a 2-tap mean filter
        plus 0.01, and sampled over the bins between consecutive coarse-depth midpoints at the
        uniform draw ``u`` (``[N * R, n_importance]``). No gradients flow through the result.
        """
        with torch.no_grad():
            n, r, s, _ = depths.shape
            depths = depths.reshape(n * r, s)
            weights = weights.reshape(n * r, -1)
            weights = F.max_pool1d(weights.unsqueeze(1).float(), 2, 1, padding=1)
            # squeeze(1), not squeeze(): the official all-dims squeeze breaks for a single ray.
            weights = F.avg_pool1d(weights, 2, 1).squeeze(1)
            weights = weights + 0.01
            mids = 0.5 * (depths[:, :-1] + depths[:, 1:])
            # Quirk (official): the end weights are dropped, so the last bin midpoint is never used.
            samples = self.sample_pdf(mids, weights[:, 1:-1], u)
            return samples.detach().reshape(n, r, -1, 1)

    @staticmethod
    def sample_pdf(
        bins: torch.Tensor, weights: torch.Tensor, u: torch.Tensor, eps: float = 1e-5
    ) -> torch.Tensor:
        """Inverse-CDF sampling of a piecewise-linear CDF.

        Args:
            bins: ``[B, K+1]`` bin edges (only the first ``K+1`` entries can be reached).
            weights: ``[B, K]`` non-negative bin weights.
            u: ``[B, n_importance]`` uniform draws in [0, 1).
            eps: added to the weights; CDF steps below it count as flat.

        Returns:
            ``[B, n_importance]``.

        """
        n_rays, n_bins = weights.shape
        n_importance = u.shape[-1]
        weights = weights + eps
        pdf = weights / torch.sum(weights, -1, keepdim=True)
        cdf = torch.cumsum(pdf, -1)
        cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf], -1)  # [B, K+1]

        u = u.to(cdf.dtype).contiguous()
        inds = torch.searchsorted(cdf, u, right=True)
        below = torch.clamp_min(inds - 1, 0)
        above = torch.clamp_max(inds, n_bins)
        inds_g = torch.stack([below, above], -1).view(n_rays, 2 * n_importance)
        cdf_g = torch.gather(cdf, 1, inds_g).view(n_rays, n_importance, 2)
        bins_g = torch.gather(bins, 1, inds_g).view(n_rays, n_importance, 2)

        denom = cdf_g[..., 1] - cdf_g[..., 0]
        denom = torch.where(denom < eps, torch.ones_like(denom), denom)
        return bins_g[..., 0] + (u - cdf_g[..., 0]) / denom * (bins_g[..., 1] - bins_g[..., 0])
