"""The world is mirror-symmetric by construction; the asymmetric factors break it where expected."""

from __future__ import annotations

import pytest
import torch

from sym3d.camera import mirror_camera
from sym3d.image import from_model_range, mirror_image
from sym3d_extras.synthetic import AsymmetryConfig, SymHeadsScene

from .symheads_helpers import psnr


def test_symmetric_scene_flip_equals_mirror_camera(side_cameras):
    scene = SymHeadsScene(5, AsymmetryConfig.symmetric())
    a = scene.render(side_cameras)
    b = scene.render(mirror_camera(side_cameras))
    assert psnr(mirror_image(a.image), b.image) > 45.0
    assert torch.allclose(mirror_image(a.depth), b.depth, atol=2e-3)
    # Forgetting the image flip is far off: the test can tell.
    assert psnr(a.image, b.image) < 35.0


def test_generator_symmetric_for_symmetrized_latents(symheads_gen, side_cameras):
    gen = symheads_gen
    z = torch.randn(2, gen.z_dim, generator=torch.Generator().manual_seed(3))
    ws = gen.mapping(z, torch.zeros(2, 25))
    ws = ws + 0.5 * torch.randn(ws.shape, generator=torch.Generator().manual_seed(4))  # W+ too
    cams = side_cameras[None].expand(2, -1, -1)
    with torch.no_grad():
        sym = gen.layout.symmetrize(ws)
        a = gen.render(sym, cams)
        b = gen.render(sym, mirror_camera(cams))
        # The latent space also holds asymmetric directions (as a real GAN's does): a generic
        # latent renders an asymmetric head.
        c = gen.render(ws, cams)
        d = gen.render(ws, mirror_camera(cams))
    assert psnr(from_model_range(mirror_image(a.image)), from_model_range(b.image)) > 45.0
    assert psnr(from_model_range(mirror_image(c.image)), from_model_range(d.image)) < 35.0
    t = gen.layout.decode(sym)
    from sym3d_extras.synthetic.layout import ASYMMETRIC

    assert all(float(t[name].abs().max()) < 1e-6 for name in ASYMMETRIC)


def test_scene_latent_is_symmetric():
    scene = SymHeadsScene(7)
    assert torch.allclose(scene.world.layout.symmetrize(scene.ws), scene.ws, atol=1e-6)


def test_mole_breaks_symmetry_only_at_mole_and_ghost(side_cameras):
    cams = side_cameras[:2]
    plain = SymHeadsScene(5, AsymmetryConfig.symmetric())
    mole = SymHeadsScene(5, AsymmetryConfig())
    a = mole.render(cams)
    b = mole.render(mirror_camera(cams))
    fa, fb = mirror_image(a.image), b.image
    # Region where the mole or its ghost shows in either render, generously dilated.
    region = torch.maximum(
        torch.maximum(mirror_image(a.mole_mask), mirror_image(a.ghost_mask)),
        torch.maximum(b.mole_mask, b.ghost_mask),
    )
    region = torch.nn.functional.max_pool2d(region, 5, stride=1, padding=2)
    outside = 1.0 - (region > 0.05).float()
    assert psnr(fa, fb, outside) > 45.0
    diff = (fa - fb).abs().amax(-3, keepdim=True)
    assert float(diff[region > 0.5].max()) > 0.1  # the mole really differs from its ghost
    # The mole changes the scene only near the mole.
    p = plain.render(cams)
    assert (
        psnr(
            p.image,
            a.image,
            1.0 - (torch.nn.functional.max_pool2d(a.mole_mask, 5, 1, 2) > 0.05).float(),
        )
        > 45.0
    )


def test_mole_position_is_on_the_chosen_cheek():
    left = SymHeadsScene(2, AsymmetryConfig())
    right = SymHeadsScene(2, AsymmetryConfig(mole_side="right"))
    assert float(left.mole_position[0]) > 0.05 and float(right.mole_position[0]) < -0.05
    assert torch.allclose(left.ghost_position, left.mole_position * torch.tensor([-1.0, 1.0, 1.0]))
    # on the surface
    d = left.field.sdf(left.mole_position[None, None])
    assert abs(float(d)) < 1e-3


@pytest.mark.parametrize(
    "cfg",
    [
        AsymmetryConfig(mole_contrast=0.0, fringe_amount=1.0),
        AsymmetryConfig(mole_contrast=0.0, light_azimuth=0.6),
    ],
)
def test_fringe_and_side_light_break_symmetry(cfg, side_cameras):
    cams = side_cameras[:1]
    scene = SymHeadsScene(5, cfg)
    assert not cfg.is_symmetric
    a = scene.render(cams)
    b = scene.render(mirror_camera(cams))
    assert psnr(mirror_image(a.image), b.image) < 40.0


def test_fringe_is_hair_not_face():
    from sym3d.camera import look_at

    cam = look_at(0.0, 0.0)[None]
    plain = SymHeadsScene(5, AsymmetryConfig.symmetric()).render(cam)
    fringe = SymHeadsScene(
        5, AsymmetryConfig(mole_contrast=0.0, fringe_amount=1.0, fringe_side="right")
    ).render(cam)
    lost = (plain.face_mask - fringe.face_mask).clamp_min(0)[0, 0]  # [H, W]
    assert float(lost.sum()) > 5.0
    w = lost.shape[-1]
    # Subject's right is image left in a frontal view.
    assert float(lost[:, : w // 2].sum()) > 4 * float(lost[:, w // 2 :].sum())
