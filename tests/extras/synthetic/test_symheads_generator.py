"""The ``symheads`` generator: protocol, gradients, latent rows, and agreement with scenes."""

from __future__ import annotations

import pytest
import torch

from sym3d.camera import look_at, project_points
from sym3d.errors import ConfigError, ShapeError
from sym3d.image import from_model_range
from sym3d.protocols import Generator3D
from sym3d_extras.synthetic import (
    ROWS,
    AsymmetryConfig,
    SymHeadsGenerator,
    SymHeadsScene,
    build_symheads,
)

from .symheads_helpers import psnr


def test_protocol_and_attributes(symheads_gen):
    gen = symheads_gen
    assert isinstance(gen, Generator3D)
    assert gen.name == "symheads" and gen.num_ws == len(ROWS) == 14
    assert "all" in gen.tunable_scopes and gen.noise_buffers() == []
    assert set(gen.tunable_parameters("all")) == set(dict(gen.named_parameters()))
    assert set(gen.tunable_parameters("colour")).isdisjoint(gen.tunable_parameters("density"))
    with pytest.raises(ConfigError):
        gen.tunable_parameters("backbone")


def test_conformance_suite(symheads_gen):
    from sym3d.testing.conformance import ConformanceOptions, check_generator

    check_generator(symheads_gen, ConformanceOptions(neural_resolution=32))


def test_mapping_truncation_and_mean(symheads_gen):
    gen = symheads_gen
    z = torch.randn(3, gen.z_dim, generator=torch.Generator().manual_seed(0))
    c = look_at(torch.zeros(3))
    ws = gen.mapping(z, c)
    assert ws.shape == (3, 14, gen.w_dim) and torch.equal(ws[:, 0], ws[:, 13])
    assert torch.allclose(gen.mapping(z, c, truncation_psi=0.0), gen.w_avg.expand_as(ws), atol=1e-6)
    part = gen.mapping(z, c, truncation_psi=0.0, truncation_cutoff=4)
    assert torch.allclose(part[:, 4:], ws[:, 4:]) and not torch.allclose(part[:, :4], ws[:, :4])
    mean = gen.mean_latent(c[:2])
    std = gen.latent_std(c[:2])
    assert mean.shape == (2, 14, gen.w_dim) and std.shape == (2,)
    assert 3.0 < float(std[0]) < 8.0  # about sqrt(w_dim) for unit-variance w
    with pytest.raises(ShapeError):
        gen.mapping(z, c[:2])


def test_gradients_reach_ws_and_residual(symheads_gen):
    gen = SymHeadsGenerator()
    ws = gen.mean_latent(torch.zeros(1, 25)).requires_grad_(True)
    cams = look_at(torch.tensor([0.0, 0.5]))[None]
    out = gen.render(ws, cams, neural_resolution=32)
    (out.image.mean() + out.depth.mean()).backward()
    assert ws.grad is not None and float(ws.grad.abs().sum()) > 0
    assert bool(torch.isfinite(ws.grad).all())
    # The planes start at zero (the backbone's zero-initialised output layers), so only those
    # output layers receive gradient at first (the decoders see zero features, the inner conv
    # layers sit behind zero weights); once they move, every residual parameter does.
    got = {
        n
        for n, p in gen.tunable_parameters("all").items()
        if p.grad is not None and float(p.grad.abs().sum()) > 0
    }
    assert got == {"residual.density_backbone.out", "residual.colour_backbone.out"}, got
    with torch.no_grad():
        for p in gen.tunable_parameters("planes").values():
            p.add_(0.01 * torch.randn_like(p))
    for p in gen.parameters():
        p.grad = None
    out = gen.render(ws.detach(), cams, neural_resolution=32)
    (out.image.mean() + out.depth.mean()).backward()
    for name, p in gen.tunable_parameters("all").items():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


def test_residual_starts_at_zero_and_changes_render(symheads_gen):
    gen = SymHeadsGenerator()
    ws = gen.mean_latent(torch.zeros(1, 25))
    cams = look_at(torch.tensor([0.3]))[None]
    with torch.no_grad():
        before = gen.render(ws, cams, neural_resolution=32)
        frozen = gen.frozen_copy()
        for p in gen.tunable_parameters("colour").values():
            p.add_(0.1)
        after = gen.render(ws, cams, neural_resolution=32)
        ref = frozen.render(ws, cams, neural_resolution=32)
    assert torch.equal(before.image, ref.image)
    assert float((after.image - before.image).abs().max()) > 1e-3
    assert torch.allclose(after.depth, before.depth)  # colour scope leaves geometry alone


def _feature_mask(gen, ws, cam, point, radius_px, res=64):
    uv, _ = project_points(point[None, None], cam)
    u, v = (uv[0, 0] * res).tolist()
    yy, xx = torch.meshgrid(torch.arange(res) + 0.5, torch.arange(res) + 0.5, indexing="ij")
    return ((xx - u) ** 2 + (yy - v) ** 2) < radius_px**2


def test_rows_control_their_own_attributes(symheads_gen):
    """Changing the nose row changes pixels near the nose, not near the ear; and vice versa."""
    gen = symheads_gen
    ws = gen.mean_latent(torch.zeros(1, 25))
    cam = look_at(
        torch.tensor([0.7]), torch.tensor([0.0])
    )  # side view: nose and left ear both visible
    g = gen.decode(ws)
    nose = g.ell_centre[0, 6]
    ear = g.ell_centre[0, 9]
    nose_px = _feature_mask(gen, ws, cam[0], nose, 4)
    ear_px = _feature_mask(gen, ws, cam[0], ear, 4)
    nose_row = [r for r, (name, _) in enumerate(ROWS) if name == "nose"][0]
    ear_row = [r for r, (name, _) in enumerate(ROWS) if name == "ears"][0]
    with torch.no_grad():
        base = from_model_range(gen.render(ws, cam[None]).image)[0, 0]
        for row, changed, unchanged in ((nose_row, nose_px, ear_px), (ear_row, ear_px, nose_px)):
            edit = ws.clone()
            edit[:, row] += 3.0 * gen.layout.projection(row)[0]
            img = from_model_range(gen.render(edit, cam[None]).image)[0, 0]
            diff = (img - base).abs().amax(0)
            assert float(diff[changed].max()) > 0.05, ROWS[row][0]
            assert float(diff[unchanged].max()) < 1e-3, ROWS[row][0]


def test_each_row_changes_the_render(symheads_gen):
    gen = symheads_gen
    ws = gen.mean_latent(torch.zeros(1, 25))
    cams = look_at(torch.tensor([0.0, 0.8]))[None]
    with torch.no_grad():
        base = gen.render(ws, cams, neural_resolution=32).image
        for row in range(gen.num_ws):
            edit = ws.clone()
            edit[:, row] += 2.0 * gen.layout.projection(row).sum(0)
            img = gen.render(edit, cams, neural_resolution=32).image
            assert float((img - base).abs().max()) > 0.02, ROWS[row][0]


def test_generator_renders_scene_latent_part(symheads_gen, side_cameras):
    gen = symheads_gen
    plain = SymHeadsScene(6, AsymmetryConfig.none(), world=gen)
    detailed = SymHeadsScene(6, AsymmetryConfig(), world=gen)
    with torch.no_grad():
        out = gen.render(plain.ws, side_cameras[None])
    img = from_model_range(out.image)[0]
    truth = plain.render(side_cameras)
    assert psnr(img, truth.image) > 60.0
    assert torch.allclose(out.depth[0], truth.depth, atol=1e-4)
    # The latent part alone is close to, but clearly not, the detailed scene.
    p = psnr(img, detailed.render(side_cameras).image)
    assert 22.0 < p < 40.0


def test_build_symheads_options():
    gen = build_symheads(
        w_dim=16, residual={"resolution": 16, "colour_channels": 4}, render_settings={"num_fine": 8}
    )
    assert gen.w_dim == 16 and gen.residual.planes()[1].shape == (3, 4, 16, 16)
    assert gen.render_settings.num_fine == 8
    with pytest.raises(ConfigError):
        build_symheads(no_such_option=1)
    with pytest.raises(ConfigError):
        build_symheads(w_dim=0)


def test_bad_inputs_raise(symheads_gen):
    gen = symheads_gen
    ws = gen.mean_latent(torch.zeros(1, 25))
    with pytest.raises(ShapeError):
        gen.render(ws, torch.zeros(1, 25))
    with pytest.raises(ShapeError):
        gen.render(ws, torch.zeros(2, 1, 25))
    with pytest.raises(ShapeError):
        gen.render(ws[:, :3], torch.zeros(1, 1, 25))
