"""Illumination-aware symmetry: low-order lighting from mirror pairs, and the relit mirror.

SPI's mirror prior shows the flipped photo at the mirrored camera. Under a side light that pseudo
view carries the lit cheek to the wrong side. With a mirror-symmetric face (shape and albedo) the
albedo cancels in the ratio of a surface point and its mirror point, so the light can be fitted
from the photo and the current geometry alone, and the flipped photo can be relit:

* :func:`sh_basis`, :func:`sh_mirror_parity` - real spherical harmonics up to order 2 and their
  parity under the mirror ``x -> -x``.
* :func:`depth_normals` - world-space unit normals from a depth map (kornia's
  ``depth_to_normals``), facing the camera.
* :func:`estimate_mirror_lighting` - second-order (or first-order) SH lighting from the visible
  mirror pairs, robust (IRLS), with a recorded fallback (:class:`LightingEstimate`).
* :func:`relight_mirror` - the flipped photo relit to show the mirrored side under the original
  light, at the mirrored camera, plus the estimated shading (:class:`RelitMirror`).

What the fit identifies, and why the relighting needs no more: ``docs/engine.md``,
"Illumination-aware symmetry: derivation". Camera and image conventions: ``docs/conventions.md``.
"""

from __future__ import annotations

import math
from typing import Literal

import attrs
import torch
import torch.nn.functional as F

from sym3d.camera import (
    CameraLabels,
    mirror_camera,
    project_points,
    ray_distance_to_z,
    unproject_depth,
)
from sym3d.checks import check_finite, check_range, check_shape
from sym3d.errors import ConfigError
from sym3d.image import mirror_image
from sym3d.resize import resize

__all__ = [
    "LightingEstimate",
    "RelitMirror",
    "depth_normals",
    "estimate_mirror_lighting",
    "relight_mirror",
    "sh_basis",
    "sh_mirror_parity",
]

_C0 = 0.5 * math.sqrt(1.0 / math.pi)  # Y_00
_C1 = math.sqrt(3.0 / (4.0 * math.pi))  # Y_1m / {y, z, x}
_C2 = 0.5 * math.sqrt(15.0 / math.pi)  # Y_2,-2 Y_2,-1 Y_2,1 / {xy, yz, xz}
_C20 = 0.25 * math.sqrt(5.0 / math.pi)  # Y_20 / (3 z^2 - 1)
_C22 = 0.25 * math.sqrt(15.0 / math.pi)  # Y_22 / (x^2 - y^2)
# Parity of each basis function under x -> -x (order of sh_basis): x, xy and xz are odd.
_PARITY = (1.0, 1.0, 1.0, -1.0, -1.0, 1.0, 1.0, -1.0, 1.0)
_MIRROR = (-1.0, 1.0, 1.0)


def _num_coefficients(order: int) -> int:
    if order not in (1, 2):
        raise ConfigError(f"order: expected 1 or 2 (spherical-harmonic order), got {order!r}.")
    return (order + 1) ** 2


def sh_basis(normals: torch.Tensor, order: int = 2) -> torch.Tensor:
    """Real spherical harmonics of unit vectors.

    The order is ``Y_00, Y_1-1 (y), Y_10 (z), Y_11 (x)`` and for ``order=2`` also
    ``Y_2-2 (xy), Y_2-1 (yz), Y_20 (3z^2-1), Y_21 (xz), Y_22 (x^2-y^2)``, orthonormal on the sphere.

    Args:
        normals: ``[..., 3]`` unit vectors (world frame).
        order: 1 (4 functions) or 2 (9 functions).

    Returns:
        ``[..., K]`` with ``K = (order + 1)^2``.
    """
    _num_coefficients(order)
    x, y, z = normals.unbind(-1)
    cols = [torch.full_like(x, _C0), _C1 * y, _C1 * z, _C1 * x]
    if order == 2:
        cols += [
            _C2 * x * y,
            _C2 * y * z,
            _C20 * (3.0 * z * z - 1.0),
            _C2 * x * z,
            _C22 * (x * x - y * y),
        ]
    return torch.stack(cols, dim=-1)


def sh_mirror_parity(
    order: int = 2, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``[K]`` signs ``e_k`` with ``Y_k(M n) = e_k Y_k(n)``, mirror ``M = diag(-1, 1, 1)``."""
    k = _num_coefficients(order)
    return torch.tensor(_PARITY[:k], device=device, dtype=dtype)


def _pixel_intrinsics(cameras: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[B, 3, 3]`` intrinsics in pixels with integer pixel centres (kornia's convention)."""
    k = CameraLabels(cameras).intrinsics.clone()
    scale = torch.tensor([width, height, 1.0], dtype=k.dtype, device=k.device)
    k = k * scale[:, None]
    k[..., 0, 2] -= 0.5
    k[..., 1, 2] -= 0.5
    return k


def depth_normals(
    depth: torch.Tensor,
    cameras: torch.Tensor,
    *,
    depth_kind: Literal["z", "ray"] = "z",
) -> torch.Tensor:
    """World-space unit surface normals from a depth map, oriented toward the camera.

    The depth is lifted to camera-space points and differentiated with Sobel filters
    (:func:`kornia.geometry.depth.depth_to_normals`); the normals are rotated to the world frame.
    Normals at silhouettes mix the surface with the background: mask them out.

    Args:
        depth: ``[B, 1, H, W]`` positive depth (world units); ``H, W >= 2``.
        cameras: ``[B, 25]`` camera labels.
        depth_kind: ``"z"`` for camera z, ``"ray"`` for distance along unit rays (EG3D's
            ``image_depth``).

    Returns:
        ``[B, 3, H, W]`` unit normals in world coordinates with ``n . (camera - point) >= 0``.
    """
    from kornia.geometry.depth import depth_to_normals

    dims = check_shape(depth, ["B", 1, "H", "W"], "depth")
    check_shape(cameras, ["B", 25], "cameras", dims=dims)
    if depth_kind not in ("z", "ray"):
        raise ConfigError(f"depth_kind: expected 'z' or 'ray', got {depth_kind!r}.")
    z = ray_distance_to_z(depth, cameras) if depth_kind == "ray" else depth
    h, w = z.shape[-2:]
    n_cam = depth_to_normals(z, _pixel_intrinsics(cameras, h, w))  # [B, 3, H, W], away from camera
    rot = CameraLabels(cameras).rotation  # [B, 3, 3]
    n_world = torch.einsum("bij,bjhw->bihw", rot, -n_cam)
    # Toward the camera: the ray from the point to the camera has negative camera-z component.
    points = unproject_depth(z, cameras).permute(0, 3, 1, 2)  # [B, 3, H, W]
    to_cam = CameraLabels(cameras).position[:, :, None, None] - points
    sign = torch.where((n_world * to_cam).sum(1, keepdim=True) < 0, -1.0, 1.0).to(n_world)
    return F.normalize(n_world * sign, dim=1)


@attrs.frozen(kw_only=True)
class LightingEstimate:
    """First- or second-order SH lighting fitted from mirror pairs, for ``B`` images.

    Shading is ``S(n) = sum_k coefficients[..., k] Y_k(n)`` with
    ``coefficients[..., 0] = 1 / Y_00``: the light's mean over the sphere is fixed to 1 (the
    scale is not identifiable; see ``docs/engine.md``). Only the ratio ``S(M n) / S(n)`` is
    used by the relighting.

    Attributes:
        coefficients: ``[B, C, K]`` the coefficients to use: the fit where ``ok`` and not
            ``symmetric``, else the constant light (ratio 1, the plain mirror). ``C`` is 1
            (grey) or 3 (per channel).
        fitted: ``[B, C, K]`` the fit itself, also where it was refused.
        ok: ``[B]`` bool: the fit passed every check.
        reason: one string per image: ``""`` when ok, else why the plain mirror is used.
        condition_number: ``[B]`` of the scaled Gram matrix of the SH basis over the pairs'
            normals (how well the visible pairs span the lighting functions).
        num_pairs: ``[B]`` visible mirror pairs (pixels whose mirror point passed the mask,
            depth, normal and facing tests).
        inlier_fraction: ``[B]`` share of those pairs the robust fit kept (mean over channels).
        asymmetry: ``[B]`` mean ``|S(M n) / S(n) - 1|`` of the fit over the pairs' normals (the
            largest over channels): how far the fitted light is from mirror-symmetric.
        symmetric: ``[B]`` bool: ``asymmetry`` is below ``min_asymmetry``, so the light is taken
            as symmetric and the constant light is used (the plain mirror; ``ok`` stays true).
        order: SH order (1 or 2).
    """

    coefficients: torch.Tensor
    fitted: torch.Tensor
    ok: torch.Tensor
    reason: tuple[str, ...]
    condition_number: torch.Tensor
    num_pairs: torch.Tensor
    inlier_fraction: torch.Tensor
    asymmetry: torch.Tensor
    symmetric: torch.Tensor
    order: int

    def shading(self, normals: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` shading at world normals ``[B, 3, H, W]`` (sphere mean 1)."""
        y = sh_basis(normals.permute(0, 2, 3, 1), self.order)  # [B, H, W, K]
        return torch.einsum("bhwk,bck->bchw", y, self.coefficients.to(y))

    def mirror_ratio(
        self, normals: torch.Tensor, *, max_ratio: float = 2.5, min_shading: float = 0.05
    ) -> torch.Tensor:
        """``[B, C, H, W]`` ratio ``S(M n) / S(n)`` at world normals ``[B, 3, H, W]``.

        Multiplying a pixel of normal ``n`` by it gives the pixel its mirror point would have
        under the same light (symmetric albedo). Both shadings are clamped to at least
        ``min_shading`` and the ratio to ``[1 / max_ratio, max_ratio]``.
        """
        mirrored = (
            normals
            * torch.tensor(_MIRROR, dtype=normals.dtype, device=normals.device)[:, None, None]
        )
        s = self.shading(normals).clamp_min(min_shading)
        s_m = self.shading(mirrored).clamp_min(min_shading)
        return (s_m / s).clamp(1.0 / max_ratio, max_ratio)


def _nanmedian_abs(r: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Median of ``|r|`` over ``valid`` entries of the last dim: ``[...]``."""
    a = torch.where(valid, r.abs(), torch.full_like(r, float("nan")))
    return torch.nanmedian(a, dim=-1).values.nan_to_num(0.0)


def _solve(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor, ridge: float) -> torch.Tensor:
    """Weighted ridge least squares ``argmin_x sum w (a x - b)^2 + ridge sum(w) |x|^2``.

    Returns ``[..., P]``.
    """
    aw = a * w[..., None]
    gram = aw.transpose(-1, -2) @ a
    rhs = (aw * b[..., None]).sum(-2)
    lam = ridge * w.sum(-1).clamp_min(1.0)
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    return torch.linalg.solve(gram + lam[..., None, None] * eye, rhs[..., None])[..., 0]


def _condition_numbers(y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Condition number ``[B]`` of the Jacobi-scaled weighted Gram of ``y [B, N, K]``."""
    gram = (y * w[..., None]).transpose(-1, -2) @ y
    d = gram.diagonal(dim1=-2, dim2=-1).clamp_min(1e-12).rsqrt()
    ev = torch.linalg.eigvalsh(gram * d[..., :, None] * d[..., None, :])
    return ev[..., -1] / ev[..., 0].clamp_min(1e-12)


def estimate_mirror_lighting(
    image: torch.Tensor,
    depth: torch.Tensor,
    cameras: torch.Tensor,
    mask: torch.Tensor,
    *,
    normals: torch.Tensor | None = None,
    depth_kind: Literal["z", "ray"] = "z",
    order: int = 1,
    channels: Literal["grey", "rgb"] = "grey",
    occlusion_threshold: float = 0.03,
    normal_agreement: float = 0.9,
    min_facing: float = 0.15,
    min_pairs: int = 64,
    max_condition: float | None = None,
    min_asymmetry: float = 0.025,
    ridge: float = 1e-3,
    iterations: int = 6,
    max_resolution: int = 128,
) -> LightingEstimate:
    """Fit low-order SH lighting from the visible mirror pairs of a photo (no albedo model).

    For each pixel ``u`` (world point ``p``, normal ``n``) inside ``mask``, the mirror point
    ``M p`` is projected into the same camera; the pair is used when that projection is inside
    the image and the mask, passes the depth test (``|z - depth| < occlusion_threshold``), its
    normal agrees with ``M n`` (cosine above ``normal_agreement``), and both points face the camera
    (cosine above ``min_facing``). With symmetric albedo ``I(Mp) S(n) = I(p) S(Mn)``; splitting
    ``S`` into its mirror-even part ``E`` and odd part ``O`` gives one linear equation per pair,
    ``d E(n) + O(n) = 0`` with ``d = (I(Mp) - I(p)) / (I(Mp) + I(p))``. The DC coefficient is
    fixed (sphere mean 1), a small ridge keeps directions the data do not fix at zero, and
    iteratively reweighted least squares (Huber, then Tukey) drops pairs that break the symmetry
    (a mole, a fringe, wrong geometry).

    A fit whose light is mirror-symmetric within ``min_asymmetry`` is replaced by the constant
    light (``symmetric`` true): the relit mirror is then the plain one. The fit is refused
    (``ok`` false, constant light, a ``reason``) with fewer than
    ``min_pairs`` pairs, a condition number above ``max_condition``, fewer than half the pairs
    kept, or a fitted shading that is not positive on the pairs. No gradient flows through the
    estimate.

    Args:
        image: ``[B, 3, H, W]`` photo in ``[0, 1]``.
        depth: ``[B, 1, h, w]`` depth of the current geometry at the photo's camera (world units).
        cameras: ``[B, 25]`` the photo's camera labels.
        mask: ``[B, 1, H', W']`` weights in ``[0, 1]`` of the pixels to trust (face mask,
            foreground); pixels at ``>= 0.5`` are used.
        normals: optional ``[B, 3, h', w']`` world normals; default :func:`depth_normals`.
        depth_kind: ``"z"`` (camera z) or ``"ray"`` (distance along unit rays).
        order: SH order, 1 (4 coefficients, the default) or 2 (9). Order 2 fits the pairs as
            well but extrapolates worse to the normals only one side shows (``docs/engine.md``).
        channels: ``"grey"`` (one light for the channel mean) or ``"rgb"`` (one per channel).
        occlusion_threshold: depth test tolerance (world units).
        normal_agreement: minimum cosine between the mirror pixel's normal and ``M n``.
        min_facing: minimum cosine between each normal and its direction to the camera.
        min_pairs: fewest pairs for a fit.
        min_asymmetry: a fitted light whose shading ratio differs from 1 by less than this on
            average over the pairs is taken as symmetric (the plain mirror): a correction that
            small is below what the fit can resolve (``docs/engine.md``).
        max_condition: largest accepted condition number; default ``1e4`` for order 1 and
            ``1e6`` for order 2 (whose quadratic functions are nearly collinear over a face).
        ridge: Tikhonov weight relative to the total pair weight.
        iterations: IRLS iterations.
        max_resolution: the fit runs at ``min(h, max_resolution)`` (area-downsampled).

    Returns:
        :class:`LightingEstimate`.
    """
    dims = check_shape(image, ["B", 3, "H", "W"], "image")
    check_shape(depth, ["B", 1, "h", "w"], "depth", dims=dims)
    check_shape(cameras, ["B", 25], "cameras", dims=dims)
    check_shape(mask, ["B", 1, "Hm", "Wm"], "mask", dims=dims)
    check_range(image, 0.0, 1.0, "image", hint="pass the photo in [0, 1] (sym3d.image).")
    check_finite(depth, "depth")
    if channels not in ("grey", "rgb"):
        raise ConfigError(f"channels: expected 'grey' or 'rgb', got {channels!r}.")
    if depth_kind not in ("z", "ray"):
        raise ConfigError(f"depth_kind: expected 'z' or 'ray', got {depth_kind!r}.")
    k = _num_coefficients(order)
    if max_condition is None:
        max_condition = 1e4 if order == 1 else 1e6
    with torch.no_grad():
        return _estimate(
            image, depth, cameras, mask, normals, depth_kind, order, k, channels,
            occlusion_threshold, normal_agreement, min_facing, min_pairs, max_condition,
            min_asymmetry, ridge, iterations, max_resolution,
        )  # fmt: skip


def _estimate(
    image: torch.Tensor,
    depth: torch.Tensor,
    cameras: torch.Tensor,
    mask: torch.Tensor,
    normals: torch.Tensor | None,
    depth_kind: str,
    order: int,
    k: int,
    channels: str,
    occlusion_threshold: float,
    normal_agreement: float,
    min_facing: float,
    min_pairs: int,
    max_condition: float,
    min_asymmetry: float,
    ridge: float,
    iterations: int,
    max_resolution: int,
) -> LightingEstimate:
    b = image.shape[0]
    h, w = depth.shape[-2:]
    if max(h, w) > max_resolution:
        s = max_resolution / max(h, w)
        h, w = max(2, round(h * s)), max(2, round(w * s))
    size = (h, w)
    dt = image.dtype
    z = resize(ray_distance_to_z(depth, cameras) if depth_kind == "ray" else depth, size)
    img = resize(image, size)
    if channels == "grey":
        img = img.mean(1, keepdim=True)
    c = img.shape[1]
    m = resize(mask.to(dt), size).clamp(0.0, 1.0)
    n = depth_normals(z, cameras) if normals is None else F.normalize(resize(normals, size), dim=1)

    points = unproject_depth(z, cameras)  # [B, h, w, 3]
    flip = torch.tensor(_MIRROR, dtype=dt, device=image.device)
    mirror_pts = (points * flip).reshape(b, -1, 3)
    uv, z_m = project_points(mirror_pts, cameras)  # [B, N, 2], [B, N]
    grid = (uv * 2.0 - 1.0).reshape(b, h, w, 2)
    stack = torch.cat([img, z, m, n], dim=1)
    sampled = F.grid_sample(
        stack, grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    img_m, z_s, m_m = sampled[:, :c], sampled[:, c : c + 1], sampled[:, c + 1 : c + 2]
    n_m = F.normalize(sampled[:, c + 2 :], dim=1)

    cam_pos = CameraLabels(cameras).position[:, :, None, None]
    p_img = points.permute(0, 3, 1, 2)
    view = F.normalize(cam_pos - p_img, dim=1)
    view_m = F.normalize(cam_pos - p_img * flip[:, None, None], dim=1)
    n_mirror = n * flip[:, None, None]
    inside = (grid.abs() <= 1.0).all(-1)[:, None] & (z_m.reshape(b, 1, h, w) > 1e-6)
    valid = (
        inside
        & ((z_m.reshape(b, 1, h, w) - z_s).abs() < occlusion_threshold)
        & (m >= 0.5)
        & (m_m >= 0.5)
        & ((n_m * n_mirror).sum(1, keepdim=True) > normal_agreement)
        & ((n * view).sum(1, keepdim=True) > min_facing)
        & ((n_mirror * view_m).sum(1, keepdim=True) > min_facing)
    )  # [B, 1, h, w]
    total = img + img_m
    lit = (total > 0.06) & (img < 0.98) & (img_m < 0.98)  # dark or clipped pixels hold no ratio
    pair = (valid & lit).flatten(2)  # [B, C, N]
    d = ((img_m - img) / total.clamp_min(1e-6)).flatten(2)  # [B, C, N]

    y = sh_basis(n.flatten(2).transpose(1, 2), order)  # [B, N, K]
    parity = sh_mirror_parity(order, device=image.device, dtype=dt)
    even = (parity > 0)[1:]
    # Unknowns: coefficients 1..K-1 in units where the DC term l_0 Y_0 = 1.
    yk = y[..., 1:][:, None].expand(b, c, -1, -1)  # [B, C, N, K-1]
    a = torch.where(even, d[..., None] * yk, yk)
    rhs = -d
    base = pair.to(dt)
    weights = base
    x = torch.zeros(b, c, k - 1, dtype=dt, device=image.device)
    for it in range(max(1, iterations)):
        x = _solve(a, rhs, weights, ridge)
        r = (a @ x[..., None])[..., 0] - rhs
        sigma = (1.4826 * _nanmedian_abs(r, pair)).clamp_min(1e-3)[..., None]
        if it < 2:
            rob = (1.345 * sigma / r.abs().clamp_min(1e-12)).clamp(max=1.0)
        else:
            rob = (1.0 - (r / (4.685 * sigma)).square()).clamp_min(0.0).square()
        weights = base * rob

    coef = torch.cat([torch.full_like(x[..., :1], 1.0 / _C0), x], dim=-1)  # [B, C, K]
    num_pairs = valid.flatten(1).sum(-1)
    kept = ((weights > 0) & pair).to(dt).sum(-1) / pair.to(dt).sum(-1).clamp_min(1.0)
    inlier = kept.mean(-1)
    cond = _condition_numbers(y, base[:, 0])
    s_n = torch.einsum("bnk,bck->bcn", y, coef)
    s_mn = torch.einsum("bnk,bck->bcn", y * parity, coef)
    positive = ((s_n > 0.05) & (s_mn > 0.05)) | ~pair
    frac_bad = ((~positive) & pair).to(dt).sum(-1) / pair.to(dt).sum(-1).clamp_min(1.0)
    bad_shading = frac_bad.amax(-1)
    dev = ((s_mn.clamp_min(0.05) / s_n.clamp_min(0.05) - 1.0).abs() * pair).sum(-1)
    asymmetry = (dev / pair.to(dt).sum(-1).clamp_min(1.0)).amax(-1)

    reasons: list[str] = []
    for i in range(b):
        npairs = int(num_pairs[i])
        if npairs < min_pairs:
            reasons.append(
                f"too few visible mirror pairs ({npairs} < {min_pairs}): the face is seen too "
                "far from the side or the mask is too small"
            )
        elif not bool(torch.isfinite(cond[i])) or float(cond[i]) > max_condition:
            reasons.append(
                f"ill-conditioned: the pairs' normals span the lighting poorly (condition number "
                f"{float(cond[i]):.3g} > {max_condition:g})"
            )
        elif float(inlier[i]) < 0.5:
            reasons.append(
                f"only {float(inlier[i]):.0%} of the pairs agree with any light: the face or its "
                "geometry is too asymmetric"
            )
        elif float(bad_shading[i]) > 0.1:
            reasons.append(
                f"the fitted shading is not positive on {float(bad_shading[i]):.0%} of the pairs"
            )
        elif not bool(torch.isfinite(coef[i]).all()):
            reasons.append("the fit is not finite")
        else:
            reasons.append("")
    ok = torch.tensor([r == "" for r in reasons], device=image.device)
    constant = torch.zeros_like(coef)
    constant[..., 0] = 1.0 / _C0
    symmetric = ok & (asymmetry < min_asymmetry)
    used = torch.where((ok & ~symmetric)[:, None, None], coef.nan_to_num(0.0), constant)
    return LightingEstimate(
        coefficients=used,
        fitted=coef,
        ok=ok,
        reason=tuple(reasons),
        condition_number=cond,
        num_pairs=num_pairs,
        inlier_fraction=inlier,
        asymmetry=asymmetry,
        symmetric=symmetric,
        order=order,
    )


@attrs.frozen(kw_only=True)
class RelitMirror:
    """The mirrored pseudo view of a photo, relit to the photo's light (``B`` images).

    Attributes:
        image: ``[B, 3, H, W]`` in ``[0, 1]``: the relit mirror, seen from ``camera``.
        flipped: ``[B, 3, H, W]`` the plain flipped photo (what SPI uses without relighting).
        camera: ``[B, 25]`` the mirrored camera.
        ratio: ``[B, C, H, W]`` the factor applied to ``flipped`` (1 outside the mask and where the
            estimate was refused); ``C`` is 1 (grey) or 3.
        shading: ``[B, C, H, W]`` the estimated shading of the photo at its own camera (sphere
            mean 1; 1 where refused), masked; for reports.
        estimate: the :class:`LightingEstimate` used.
    """

    image: torch.Tensor
    flipped: torch.Tensor
    camera: torch.Tensor
    ratio: torch.Tensor
    shading: torch.Tensor
    estimate: LightingEstimate


def relight_mirror(
    image: torch.Tensor,
    depth: torch.Tensor,
    cameras: torch.Tensor,
    mask: torch.Tensor,
    *,
    normals: torch.Tensor | None = None,
    depth_kind: Literal["z", "ray"] = "z",
    estimate: LightingEstimate | None = None,
    max_ratio: float = 2.5,
    **fit_options: object,
) -> RelitMirror:
    """The flipped photo relit so that the mirrored side shows under the original light.

    A pixel ``u`` of the mirrored view shows the mirror of the photo's pixel ``flip(u)``, whose
    normal is ``n``; under the original light the mirrored scene point has normal ``M n``, so
    ``relit = flip(I * S(M n) / S(n))`` with ``S`` the estimated shading
    (:meth:`LightingEstimate.mirror_ratio`; the ratio is scale-free). The ratio is computed at
    the depth's resolution and upsampled; outside ``mask`` it is 1. Differentiable in ``image``
    and ``normals`` for a given ``estimate`` (the estimate itself is not).

    Args:
        image: ``[B, 3, H, W]`` photo in ``[0, 1]``.
        depth: ``[B, 1, h, w]`` current depth at the photo's camera (world units).
        cameras: ``[B, 25]`` the photo's cameras.
        mask: ``[B, 1, H', W']`` in ``[0, 1]``: where to relight and trust pairs (face mask).
        normals: optional ``[B, 3, h', w']`` world normals; default :func:`depth_normals`.
        depth_kind: ``"z"`` or ``"ray"``.
        estimate: a previous :func:`estimate_mirror_lighting` result; fitted here when ``None``.
        max_ratio: the ratio is clamped to ``[1 / max_ratio, max_ratio]``.
        **fit_options: passed to :func:`estimate_mirror_lighting`.

    Returns:
        :class:`RelitMirror`.
    """
    dims = check_shape(image, ["B", 3, "H", "W"], "image")
    check_shape(mask, ["B", 1, "Hm", "Wm"], "mask", dims=dims)
    if max_ratio < 1.0:
        raise ConfigError(f"max_ratio: expected a value >= 1, got {max_ratio}.")
    if normals is None:
        normals = depth_normals(depth, cameras, depth_kind=depth_kind)
    if estimate is None:
        estimate = estimate_mirror_lighting(
            image, depth, cameras, mask, normals=normals, depth_kind=depth_kind, **fit_options
        )  # type: ignore[arg-type]
    size = (image.shape[-2], image.shape[-1])
    ratio = F.interpolate(
        estimate.mirror_ratio(normals, max_ratio=max_ratio), size=size, mode="bilinear",
        align_corners=False,
    )  # fmt: skip
    shading = F.interpolate(
        estimate.shading(normals), size=size, mode="bilinear", align_corners=False
    )
    m = resize(mask.to(image.dtype), size).clamp(0.0, 1.0)
    ratio = 1.0 + m * (ratio - 1.0)
    shading = 1.0 + m * (shading - 1.0)
    relit = mirror_image((image * ratio).clamp(0.0, 1.0))
    return RelitMirror(
        image=relit,
        flipped=mirror_image(image),
        camera=mirror_camera(cameras),
        ratio=mirror_image(ratio),
        shading=shading,
        estimate=estimate,
    )
