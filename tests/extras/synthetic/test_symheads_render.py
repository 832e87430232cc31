"""Rendering sanity: depth, shapes, multi-view consistency, determinism, observations."""

from __future__ import annotations

import torch

from sym3d.camera import look_at, ray_distance_to_z
from sym3d.errors import ShapeError
from sym3d_extras.synthetic import AsymmetryConfig, SymHeadsScene


def test_scene_shapes_ranges_and_depth(side_cameras):
    scene = SymHeadsScene(1)
    r = scene.render(side_cameras)
    assert r.image.shape == (3, 3, 64, 64)
    for m in (
        r.depth,
        r.depth_z,
        r.opacity,
        r.foreground_mask,
        r.face_mask,
        r.mole_mask,
        r.ghost_mask,
    ):
        assert m.shape == (3, 1, 64, 64)
    assert 0.0 <= float(r.image.min()) and float(r.image.max()) <= 1.0
    hit = r.opacity > 0.5
    assert 0.3 < float(hit.float().mean()) < 0.95
    assert float(r.depth[hit].min()) >= 2.25 and float(r.depth[hit].max()) <= 3.3
    assert bool((r.depth_z <= r.depth + 1e-6).all())
    assert torch.allclose(r.depth_z, ray_distance_to_z(r.depth, side_cameras), atol=1e-6)
    # The face sits in front of the pivot plane: frontal centre depth is about 2.7 - 0.35.
    front = scene.render(look_at(0.0, 0.0)[None])
    centre = float(front.depth[0, 0, 28:36, 28:36].mean())
    assert 2.3 < centre < 2.5
    assert float(r.face_mask.max()) > 0.9 and bool((r.face_mask <= r.opacity + 1e-5).all())


def test_scene_batched_camera_shapes(side_cameras):
    scene = SymHeadsScene(1)
    r = scene.render(side_cameras.reshape(3, 1, 25), resolution=32)
    assert r.image.shape == (3, 1, 3, 32, 32)
    try:
        scene.render(torch.zeros(3, 24))
    except ShapeError:
        pass
    else:  # pragma: no cover
        raise AssertionError("expected ShapeError")


def test_generator_multiview_equals_single_and_depth(symheads_gen, side_cameras):
    gen = symheads_gen
    ws = gen.mean_latent(torch.zeros(1, 25))
    cams = side_cameras[None]
    with torch.no_grad():
        multi = gen.render(ws, cams)
        for i in range(3):
            single = gen.render(ws, cams[:, i : i + 1])
            assert torch.allclose(multi.image[:, i : i + 1], single.image, atol=1e-5)
            assert torch.allclose(multi.depth[:, i : i + 1], single.depth, atol=1e-5)
    hit = multi.opacity > 0.5
    assert float(multi.depth[hit].min()) >= 2.25 and float(multi.depth[hit].max()) <= 3.3
    assert bool((multi.depth_z <= multi.depth + 1e-6).all())
    assert float(multi.image.min()) >= -1.0 and float(multi.image.max()) <= 1.0


def test_seeded_jitter_is_deterministic_and_stochastic(symheads_gen, side_cameras):
    gen = symheads_gen
    ws = gen.mean_latent(torch.zeros(1, 25))
    cams = side_cameras[None, :1]
    with torch.no_grad():
        a = gen.render(ws, cams, generator=torch.Generator().manual_seed(1))
        b = gen.render(ws, cams, generator=torch.Generator().manual_seed(1))
        c = gen.render(ws, cams, generator=torch.Generator().manual_seed(2))
        d = gen.render(ws, cams)
        e = gen.render(ws, cams)
    assert torch.equal(a.image, b.image) and torch.equal(a.depth, b.depth)
    assert not torch.equal(a.depth, c.depth)
    assert torch.equal(d.image, e.image)
    assert float((a.image - d.image).abs().mean()) < 0.01  # jitter is a small perturbation


def test_neural_and_image_resolution():
    from sym3d_extras.synthetic import build_symheads

    gen = build_symheads(img_resolution=64, neural_resolution=32)
    ws = gen.mean_latent(torch.zeros(1, 25))
    with torch.no_grad():
        out = gen.render(ws, look_at(0.0, 0.0)[None, None])
        out16 = gen.render(ws, look_at(0.0, 0.0)[None, None], neural_resolution=16)
    assert out.image.shape == (1, 1, 3, 64, 64) and out.image_raw.shape == (1, 1, 3, 32, 32)
    assert out16.depth.shape == (1, 1, 1, 16, 16)


def test_face_observation_regions():
    scene = SymHeadsScene(4, AsymmetryConfig.none())
    obs = scene.face_observation(look_at(0.0, 0.0)[None])
    assert obs.image.shape == (1, 3, 64, 64) and obs.camera.shape == (1, 25)
    assert obs.face_mask is not None and obs.face_mask.shape == (1, 1, 64, 64)
    assert obs.foreground_mask is not None and obs.foreground_mask.shape == (1, 1, 64, 64)
    r = obs.regions
    assert set(r) == {"left_eye", "right_eye", "nose", "mouth"}
    for x0, y0, x1, y1 in r.values():
        assert 0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0
    # Subject's left eye appears on the image right in a frontal view; eyes above nose above mouth.
    assert r["left_eye"][0] > 0.5 > r["right_eye"][2]
    eye_y = 0.5 * (r["left_eye"][1] + r["left_eye"][3])
    nose_y = 0.5 * (r["nose"][1] + r["nose"][3])
    mouth_y = 0.5 * (r["mouth"][1] + r["mouth"][3])
    assert eye_y < nose_y < mouth_y
    # The eye box holds dark pupil pixels.
    x0, y0, x1, y1 = r["left_eye"]
    crop = obs.image[0, :, int(y0 * 64) : int(y1 * 64) + 1, int(x0 * 64) : int(x1 * 64) + 1]
    assert float(crop.mean(0).min()) < 0.2
