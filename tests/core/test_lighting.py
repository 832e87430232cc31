"""sym3d.lighting: SH basis, normals from depth, the mirror-pair light fit and the relit mirror.

The scenes here are analytic (a ray-traced ellipsoid, mirror-symmetric, with a symmetric albedo
and a light inside the fitted model), so the true light, normals and mirrored render are known
exactly. SymHeads scenes (rendered, with detail, a mole and hair) are in
``tests/extras/synthetic/test_symheads_lighting.py``.
"""

from __future__ import annotations

import math

import pytest
import torch

from sym3d.camera import (
    CameraLabels,
    camera_ray_directions,
    look_at,
    mirror_camera,
    ray_distance_to_z,
    z_to_ray_distance,
)
from sym3d.errors import ConfigError, RangeError, ShapeError
from sym3d.image import mirror_image
from sym3d.lighting import (
    depth_normals,
    estimate_mirror_lighting,
    relight_mirror,
    sh_basis,
    sh_mirror_parity,
)

RADII = torch.tensor([0.3, 0.4, 0.33])
CENTRE = torch.tensor([0.0, 0.0, 0.1])
C1 = math.sqrt(3.0 / (4.0 * math.pi))


def _albedo(p: torch.Tensor) -> torch.Tensor:
    """``[..., 3]`` mirror-symmetric albedo (even in x) with texture at several scales."""
    x, y, z = p.unbind(-1)
    base = 0.55 + 0.2 * torch.cos(14.0 * x) * torch.cos(9.0 * y) + 0.08 * torch.sin(23.0 * y + z)
    return torch.stack([base, 0.85 * base, 0.7 * base], dim=-1)


def _light(n: torch.Tensor, odd: float, y: float = 0.15, z: float = 0.35) -> torch.Tensor:
    """``[...]`` shading ``1 + odd n_x + y n_y + z n_z`` (sphere mean 1; first order)."""
    return 1.0 + odd * n[..., 0] + y * n[..., 1] + z * n[..., 2]


def ellipsoid_view(camera: torch.Tensor, res: int = 64, odd: float = 0.45, mole: bool = False):
    """Ray-trace the ellipsoid at ``camera [1, 25]``.

    Returns ``image [1,3,R,R]`` in [0, 1], camera-z ``depth [1,1,R,R]``, ``mask [1,1,R,R]`` and
    exact world ``normals [1,3,R,R]``.
    """
    d = camera_ray_directions(camera, res, res)[0]  # [R*R, 3]
    o = CameraLabels(camera).position[0] - CENTRE
    od, dd = o / RADII, d / RADII
    a = (dd * dd).sum(-1)
    b = 2.0 * (od * dd).sum(-1)
    c = (od * od).sum() - 1.0
    disc = b * b - 4 * a * c
    hit = disc > 0
    t = torch.where(hit, (-b - disc.clamp_min(0).sqrt()) / (2 * a), torch.full_like(a, 3.3))
    p = CameraLabels(camera).position[0] + t[:, None] * d
    n = torch.nn.functional.normalize((p - CENTRE) / RADII**2, dim=-1)
    rho = _albedo(p)
    if mole:  # a dark one-sided spot (asymmetric albedo) on the subject's left cheek
        spot = torch.exp(-((p - torch.tensor([0.2, -0.05, 0.33])) ** 2).sum(-1) / (2 * 0.04**2))
        rho = rho * (1.0 - 0.8 * spot)[:, None]
    shade = _light(n, odd)
    img = torch.where(hit[:, None], 0.6 * rho * shade[:, None], torch.full_like(rho, 0.8))

    def grid(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(res, res, -1).permute(2, 0, 1)[None]

    depth = ray_distance_to_z(grid(t[:, None]), camera)
    return grid(img).clamp(0, 1), depth, grid(hit[:, None].float()), grid(n)


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    m = mask.expand_as(a)
    return float(-10 * torch.log10(((a - b) ** 2 * m).sum() / m.sum()))


@pytest.fixture(scope="module")
def side_view():
    cam = look_at(0.5, 0.05)[None]
    return (cam, *ellipsoid_view(cam))


def _fibonacci_sphere(n: int) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float64) + 0.5
    phi = torch.acos(1 - 2 * i / n)
    theta = math.pi * (1 + 5**0.5) * i
    return torch.stack(
        [torch.cos(theta) * torch.sin(phi), torch.sin(theta) * torch.sin(phi), torch.cos(phi)], -1
    )


def test_sh_basis_is_orthonormal_and_has_mirror_parity():
    n = _fibonacci_sphere(20000)
    y = sh_basis(n, order=2)
    gram = (y.T @ y) * (4 * math.pi / len(n))
    assert torch.allclose(gram, torch.eye(9, dtype=gram.dtype), atol=2e-3)
    mirrored = n * torch.tensor([-1.0, 1.0, 1.0], dtype=n.dtype)
    parity = sh_mirror_parity(2, dtype=n.dtype)
    assert torch.allclose(sh_basis(mirrored, 2), y * parity, atol=1e-12)
    assert sh_basis(n.float(), 1).shape == (20000, 4)
    assert torch.equal(sh_mirror_parity(1), torch.tensor([1.0, 1.0, 1.0, -1.0]))
    with pytest.raises(ConfigError, match="order"):
        sh_basis(n, order=3)


@pytest.mark.parametrize("kind", ["z", "ray"])
def test_depth_normals_match_the_analytic_surface(side_view, kind):
    cam, _, depth, mask, normals = side_view
    d = depth if kind == "z" else z_to_ray_distance(depth, cam)
    est = depth_normals(d, cam, depth_kind=kind)
    # Interior pixels only: Sobel stencils at the silhouette mix in the background.
    inner = -torch.nn.functional.max_pool2d(-mask, 5, stride=1, padding=2)
    cos = (est * normals).sum(1, keepdim=True)[inner > 0.5]
    assert float(cos.min()) > 0.98 and float(cos.mean()) > 0.998
    assert torch.allclose(est.norm(dim=1), torch.ones(1), atol=1e-5)


def test_light_fit_recovers_an_in_model_light_exactly(side_view):
    cam, image, depth, mask, normals = side_view
    # Without the ridge, a light inside the model (first order) is recovered: all of it, because
    # this light is asymmetric (the even part is fixed through d = (I' - I) / (I' + I) != 0).
    est = estimate_mirror_lighting(image, depth, cam, mask, normals=normals, ridge=0.0)
    assert bool(est.ok) and not bool(est.symmetric) and est.reason == ("",)
    assert int(est.num_pairs) > 300
    coef = est.coefficients[0, 0]
    assert float(coef[0]) == pytest.approx(1.0 / (0.5 * math.sqrt(1 / math.pi)), rel=1e-6)
    assert torch.allclose(coef[1:] * C1, torch.tensor([0.15, 0.35, 0.45]), atol=0.01)


def test_default_ridge_keeps_the_ratio_the_relighting_needs(side_view):
    cam, image, depth, mask, normals = side_view
    # The default ridge shrinks the split between the DC term and the even directional part
    # (weakly fixed by a narrow band of pair normals) but the ratio S(Mn)/S(n) stays close.
    est = estimate_mirror_lighting(image, depth, cam, mask, normals=normals)
    assert bool(est.ok)
    n = normals.permute(0, 2, 3, 1)
    true_ratio = _light(n * torch.tensor([-1.0, 1, 1]), 0.45) / _light(n, 0.45)
    err = (est.mirror_ratio(normals)[0, 0] - true_ratio[0]).abs()[mask[0, 0] > 0.5]
    assert float(err.mean()) < 0.06 and float(err.max()) < 0.3
    plain = (1.0 - true_ratio[0]).abs()[mask[0, 0] > 0.5]
    assert float(err.mean()) < 0.2 * float(plain.mean())


def test_light_fit_from_depth_alone(side_view):
    cam, image, depth, mask, _ = side_view
    est = estimate_mirror_lighting(image, depth, cam, mask, ridge=0.0)
    assert bool(est.ok)
    assert float(est.coefficients[0, 0, 3]) * C1 == pytest.approx(0.45, abs=0.03)


def _ratio_error(est, normals, mask, odd=0.45):
    n = normals.permute(0, 2, 3, 1)
    true_ratio = _light(n * torch.tensor([-1.0, 1, 1]), odd) / _light(n, odd)
    return float((est.mirror_ratio(normals)[0, 0] - true_ratio[0]).abs()[mask[0, 0] > 0.5].mean())


def test_robust_fit_ignores_a_one_sided_mole(side_view):
    cam, _, _, _, clean_normals = side_view
    image, depth, mask, normals = ellipsoid_view(cam, mole=True)
    robust = estimate_mirror_lighting(image, depth, cam, mask, normals=normals)
    plain = estimate_mirror_lighting(image, depth, cam, mask, normals=normals, iterations=1)
    clean = estimate_mirror_lighting(*side_view[1:3], cam, side_view[3], normals=clean_normals)
    assert bool(robust.ok) and bool(plain.ok)
    err_robust = _ratio_error(robust, normals, mask)
    err_plain = _ratio_error(plain, normals, mask)
    # The mole's pairs are dropped: as good as without the mole; least squares alone is pulled.
    assert err_robust < 1.2 * _ratio_error(clean, normals, mask) + 0.005
    assert err_plain > 1.5 * err_robust
    assert float(robust.inlier_fraction) < 0.99


def test_relit_mirror_matches_the_true_mirrored_view(side_view):
    cam, image, depth, mask, _ = side_view
    truth, _, truth_mask, _ = ellipsoid_view(mirror_camera(cam))
    out = relight_mirror(image, depth, cam, mask)
    assert torch.allclose(out.camera, mirror_camera(cam))
    assert torch.equal(out.flipped, mirror_image(image))
    both = truth_mask * mirror_image(mask)
    plain, relit = psnr(out.flipped, truth, both), psnr(out.image, truth, both)
    assert relit > 30.0 and relit - plain > 12.0
    # Outside the mask the mirror is untouched.
    assert torch.equal(
        out.image[..., mirror_image(mask)[0, 0] == 0],
        out.flipped[..., mirror_image(mask)[0, 0] == 0],
    )
    assert out.shading.shape == (1, 1, 64, 64) and out.ratio.shape == (1, 1, 64, 64)


def test_symmetric_light_gives_the_plain_mirror():
    cam = look_at(0.5, 0.05)[None]
    image, depth, mask, _ = ellipsoid_view(cam, odd=0.0)
    out = relight_mirror(image, depth, cam, mask)
    assert bool(out.estimate.ok) and bool(out.estimate.symmetric)
    assert float(out.estimate.asymmetry) < 0.025
    assert torch.equal(out.image, out.flipped)


def test_fallback_with_a_reason_when_too_few_pairs():
    cam = look_at(1.35, 0.0)[None]  # nearly profile: the mirror points are hidden
    image, depth, mask, _ = ellipsoid_view(cam)
    out = relight_mirror(image, depth, cam, mask)
    assert not bool(out.estimate.ok)
    assert "too few visible mirror pairs" in out.estimate.reason[0]
    assert torch.equal(out.image, out.flipped)
    # A tiny mask says the same.
    cam = look_at(0.5, 0.05)[None]
    image, depth, mask, _ = ellipsoid_view(cam)
    tiny = torch.zeros_like(mask)
    tiny[..., 30:33, 30:33] = 1.0
    est = estimate_mirror_lighting(image, depth, cam, tiny)
    assert not bool(est.ok) and "too few" in est.reason[0]
    assert torch.equal(est.coefficients[..., 1:], torch.zeros(1, 1, 3))


def test_fallback_when_ill_conditioned(side_view):
    cam, image, depth, mask, _ = side_view
    est = estimate_mirror_lighting(image, depth, cam, mask, max_condition=1.5)
    assert not bool(est.ok) and "ill-conditioned" in est.reason[0]
    assert float(est.condition_number) > 1.5


def test_batch_rgb_and_resolution(side_view):
    cam, image, depth, mask, _ = side_view
    cam2 = look_at(-0.4, 0.0)[None]
    image2, depth2, mask2, _ = ellipsoid_view(cam2, odd=-0.3)
    batch = relight_mirror(
        torch.cat([image, image2]), torch.cat([depth, depth2]), torch.cat([cam, cam2]),
        torch.cat([mask, mask2]),
    )  # fmt: skip
    single = relight_mirror(image2, depth2, cam2, mask2)
    assert torch.allclose(batch.image[1:], single.image, atol=1e-5)
    assert (
        float(batch.estimate.coefficients[1, 0, 3])
        < 0
        < float(batch.estimate.coefficients[0, 0, 3])
    )
    rgb = estimate_mirror_lighting(image, depth, cam, mask, channels="rgb", ridge=0.0)
    assert rgb.coefficients.shape == (1, 3, 4)
    assert torch.allclose(rgb.coefficients[0, :, 3] * C1, torch.full((3,), 0.45), atol=0.03)
    # A photo at twice the depth resolution: the ratio is upsampled to the photo.
    big = torch.nn.functional.interpolate(image, scale_factor=2, mode="bilinear")
    out = relight_mirror(big, depth, cam, mask)
    assert out.image.shape == (1, 3, 128, 128) and bool(out.estimate.ok)


def test_relit_mirror_is_differentiable_in_the_image(side_view):
    cam, image, depth, mask, _ = side_view
    est = estimate_mirror_lighting(image, depth, cam, mask)
    x = image.clone().requires_grad_(True)
    relight_mirror(x, depth, cam, mask, estimate=est).image.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_bad_inputs_raise_typed_errors(side_view):
    cam, image, depth, mask, _ = side_view
    with pytest.raises(ShapeError, match="image"):
        estimate_mirror_lighting(image[:, :1], depth, cam, mask)
    with pytest.raises(ShapeError, match="depth"):
        estimate_mirror_lighting(image, depth[0], cam, mask)
    with pytest.raises(RangeError, match="image"):
        estimate_mirror_lighting(image * 255, depth, cam, mask)
    with pytest.raises(ConfigError, match="channels"):
        estimate_mirror_lighting(image, depth, cam, mask, channels="hsv")
    with pytest.raises(ConfigError, match="order"):
        estimate_mirror_lighting(image, depth, cam, mask, order=3)
    with pytest.raises(ConfigError, match="depth_kind"):
        depth_normals(depth, cam, depth_kind="disparity")
    with pytest.raises(ConfigError, match="max_ratio"):
        relight_mirror(image, depth, cam, mask, max_ratio=0.5)


def test_frontal_view_relit_mirror_is_the_photo_itself():
    # At a frontal camera the mirrored camera is the same camera, so the true mirrored view is
    # the photo: the relit mirror must move the flipped photo back onto it.
    cam = look_at(0.0, 0.0, pivot=(0.0, 0.0, 0.0))[None]
    assert torch.allclose(mirror_camera(cam), cam, atol=1e-6)
    image, depth, mask, _ = ellipsoid_view(cam)
    out = relight_mirror(image, depth, cam, mask)
    both = mask * mirror_image(mask)
    assert bool(out.estimate.ok)
    assert psnr(out.image, image, both) > psnr(out.flipped, image, both) + 12.0
