"""The relit mirror label (``relight``) and the stage-1 authentic mask, wired into the terms."""

from __future__ import annotations

import logging

import attrs
import pytest
import torch
import torch.nn.functional as F

import sym3d
import sym3d.terms.relit as relit_module
from sym3d.camera import look_at
from sym3d.engine import get_preset
from sym3d.image import from_model_range, mirror_image
from sym3d.lighting import depth_normals
from sym3d.plugins import default_registry
from sym3d.protocols import FaceObservation, PriorContext, PriorViews
from sym3d.terms import MirrorRegionsConfig, MirrorViewConfig, TermEnv
from sym3d.terms.losses import build_losses

from .conftest import FAST
from .test_invert import SpyGenerator

YAW = 0.45


@pytest.fixture(scope="module")
def losses():
    return build_losses("mse", 0, "filterbank", default_registry(), torch.device("cpu"))


@pytest.fixture(scope="module")
def scene(truth):
    """The truth at yaw 0.45: its render, camera, and the photo under a side / symmetric light."""
    gen, ws = truth
    cam = look_at(YAW, 0.0)[None]
    with torch.no_grad():
        render = gen.render(ws, cam[:, None])
    img = from_model_range(render.image[:, 0]).clamp(0, 1)
    n = depth_normals(render.depth_z[:, 0], cam)
    n = F.interpolate(n, size=img.shape[-2:], mode="bilinear", align_corners=False)

    def lit(odd: float) -> torch.Tensor:
        return (img * (1.0 + odd * n[:, :1] + 0.3 * n[:, 2:3]) / 1.3).clamp(0, 1)

    return {"render": render, "camera": cam, "side": lit(0.5), "symmetric": lit(0.0)}


def context(truth, scene, target, *, step=0, stage="latent", observation=None):
    gen, ws = truth
    return PriorContext(
        stage=stage,
        step=step,
        num_steps=4,
        generator=gen,
        reference=None,
        ws=ws,
        target=target,
        camera=scene["camera"],
        observation=observation,
        render=scene["render"].view(0),
        rng=torch.Generator().manual_seed(0),
    )


def mirror_views(truth, term, ctx):
    gen, ws = truth
    cams = term.views(ctx)[None]
    with torch.no_grad():
        return PriorViews(cameras=cams, render=gen.render(ws, cams))


def view_term(losses, **kw):
    return MirrorViewConfig(mse_weight=1.0, **kw).setup(TermEnv(stage="latent", losses=losses))


def test_relit_label_differs_under_side_light_and_is_the_flip_otherwise(truth, scene, losses):
    on, off = view_term(losses, relight=True), view_term(losses)
    ctx = context(truth, scene, scene["side"])
    photo, info = on.relighter.photo(ctx)
    assert float(info["_relit"]) == 1.0 and float(info["_asymmetry"]) > 0.05
    # the relit label brightens / darkens the cheeks: well above rounding on a [0, 1] image
    assert float((photo - scene["side"]).abs().max()) > 0.05
    views = mirror_views(truth, on, ctx)
    assert float(on(ctx, views)["mse"]) != pytest.approx(float(off(ctx, views)["mse"]), rel=1e-3)
    # option off: the plain flipped photo, and the logged terms are unchanged
    assert set(off(ctx, views)) == {"perceptual", "mse", "_weight"}
    # symmetric light: the fit is taken as symmetric and the label is exactly the flipped photo
    sym = context(truth, scene, scene["symmetric"])
    photo_s, info_s = on.relighter.photo(sym)
    assert float(info_s["_relit"]) == 1.0
    assert torch.allclose(mirror_image(photo_s), mirror_image(scene["symmetric"]), atol=1e-6)
    assert torch.allclose(on(sym, views)["mse"], off(sym, views)["mse"], rtol=1e-6)


def test_light_is_fitted_once_per_step_and_a_refusal_is_recorded_once(
    truth, scene, losses, monkeypatch, caplog
):
    calls = []
    real = relit_module.relight_mirror
    monkeypatch.setattr(
        relit_module, "relight_mirror", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    term = view_term(losses, relight=True)
    ctx = context(truth, scene, scene["side"])
    views = mirror_views(truth, term, ctx)
    term(ctx, views)
    term(ctx, views)
    assert len(calls) == 1
    term(attrs.evolve(ctx, step=1), views)
    assert len(calls) == 2
    # a face mask of a few pixels leaves too few mirror pairs: the plain flipped photo is used
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 14:17, 14:17] = 1.0
    obs = FaceObservation(image=scene["side"], camera=scene["camera"], face_mask=mask)
    with caplog.at_level(logging.INFO, logger="sym3d.terms"):
        for step in (2, 3):
            small = context(truth, scene, scene["side"], step=step, observation=obs)
            photo, info = term.relighter.photo(small)
            assert torch.equal(photo, scene["side"]) and float(info["_relit"]) == 0.0
            assert float(term(small, views)["_relit"]) == 0.0
    assert len(term.relighter.reasons) == 1 and "too few" in term.relighter.reasons[0]
    assert sum("relighting refused" in r.getMessage() for r in caplog.records) == 1


def test_mirror_regions_warps_the_relit_photo(truth, scene, losses):
    env = TermEnv(stage="generator", losses=losses, num_views=2)
    on = MirrorRegionsConfig(relight=True).setup(env)
    off = MirrorRegionsConfig().setup(env)
    gen, ws = truth
    for target, differs in ((scene["side"], True), (scene["symmetric"], False)):
        ctx = context(truth, scene, target, stage="generator")
        cams = on.views(ctx)[None]
        with torch.no_grad():
            views = PriorViews(cameras=cams, render=gen.render(ws, cams))
        lab_on, mask_on, _ = on.pseudo_labels(ctx, views)
        lab_off, mask_off, _ = off.pseudo_labels(ctx, views)
        gap = float((lab_on - lab_off).abs().max())
        assert (gap > 0.05) if differs else (gap < 1e-6)
        out = on(ctx, views)
        assert float(out["_relit"]) == 1.0 and torch.isfinite(out["contextual"])


def test_authentic_mask_drops_a_one_sided_mark_from_the_stage1_loss(truth, scene, losses):
    plain = view_term(losses)
    ctx = context(truth, scene, scene["symmetric"])
    views = mirror_views(truth, plain, ctx)
    masked = view_term(losses, authentic_mask=True)
    clean = masked.authentic(ctx, views, ctx.target)
    assert float(clean.mean()) > 0.97  # a symmetric scene under symmetric light: few conflicts
    # a dark mark on the photo where its mirror label pixel is seen by the photo too
    seen = masked_both_valid(ctx, views)
    v, u = 16, int(torch.nonzero(seen[16]).flatten()[len(torch.nonzero(seen[16])) // 2])
    marked = ctx.target.clone()
    marked[..., v - 1 : v + 2, 31 - u - 1 : 31 - u + 2] = 0.0  # flip(u) in the photo
    ctx_m = attrs.evolve(ctx, target=marked)
    keep = masked.authentic(ctx_m, views, marked)[0, 0]
    assert float(keep[v, u]) == 0.0 and float(keep.mean()) > 0.9  # the mark alone is dropped
    # ... so the loss does not pull the render towards the mark there
    image = views.render.image.clone().requires_grad_(True)
    leaf = PriorViews(cameras=views.cameras, render=attrs.evolve(views.render, image=image))
    for term, expect_zero in ((masked, True), (plain, False)):
        (grad,) = torch.autograd.grad(term(ctx_m, leaf)["mse"], image)
        g = grad[0, 0, :, v, u].abs().sum()
        assert (float(g) == 0.0) if expect_zero else (float(g) > 0.0)


def masked_both_valid(ctx, views):
    """``[H, W]`` bool: the photo and the mirror label both see the mirrored view's pixel."""
    from sym3d.warp import warp_photo

    kw = dict(depth_mode="camera_z", use_face_mask=True, occlusion_threshold=0.05)
    wm = warp_photo(ctx, views.render, views.cameras, mirrored=True, **kw)
    wx = warp_photo(ctx, views.render, views.cameras, **kw)
    return (wm.mask * wx.mask)[0, 0, 0] > 0.99


def test_spi_preset_relights_and_runs_with_one_render_per_step(side_view):
    cfg = get_preset("spi")
    assert (
        cfg.latent.terms["mirror_view"].relight and cfg.latent.terms["mirror_view"].authentic_mask
    )
    assert cfg.tune.terms["mirror_regions"].relight
    assert cfg.latent.terms["mirror_view"].max_correction == 0.05
    assert cfg.latent.terms["mirror_view"].max_render_asymmetry == 0.2
    assert cfg.tune.terms["mirror_regions"].max_render_asymmetry == 0.2
    no_probe = get_preset("spi-no-probe")
    assert no_probe.latent.terms["mirror_view"].max_render_asymmetry == 0.0
    assert no_probe.tune.terms["mirror_regions"].max_render_asymmetry == 0.0
    assert attrs.evolve(no_probe, preset="spi") == attrs.evolve(
        cfg,
        latent=attrs.evolve(
            cfg.latent,
            terms={
                **cfg.latent.terms,
                "mirror_view": attrs.evolve(
                    cfg.latent.terms["mirror_view"], max_render_asymmetry=0.0
                ),
            },
        ),
        tune=attrs.evolve(
            cfg.tune,
            terms={
                **cfg.tune.terms,
                "mirror_regions": attrs.evolve(
                    cfg.tune.terms["mirror_regions"], max_render_asymmetry=0.0
                ),
            },
        ),
    )  # nothing else differs
    assert cfg.tune.terms["unseen_anchor"].weight == 30.0
    assert cfg.tune.terms["unseen_anchor"].occluder_window == 0.06
    # where the probe leaves the mirror out, stage 1 ends on the latent the relit mirror validates
    assert cfg.latent.select_by == "mirror_view/_validation"
    assert cfg.latent.terms["mirror_view"].validate_every == 5
    no_select = get_preset("spi-no-select")
    assert attrs.evolve(no_select, preset="spi") == attrs.evolve(
        cfg,
        latent=attrs.evolve(
            cfg.latent,
            select_by="",
            terms={
                **cfg.latent.terms,
                "mirror_view": attrs.evolve(cfg.latent.terms["mirror_view"], validate_every=0),
            },
        ),
    )  # nothing else differs
    assert not get_preset("spi-no-anchor").tune.terms["unseen_anchor"].enabled
    paper = get_preset("spi-paper")
    assert not paper.latent.terms["mirror_view"].relight
    assert not paper.latent.terms["mirror_view"].authentic_mask
    assert not paper.tune.terms["mirror_regions"].relight
    assert "unseen_anchor" not in paper.tune.terms
    plain = get_preset("spi-no-relight")
    assert not plain.latent.terms["mirror_view"].relight
    assert plain.latent.terms["mirror_view"].authentic_mask
    img, cam = side_view
    SpyGenerator.calls = []
    result = sym3d.invert(
        img,
        cam,
        generator=SpyGenerator(),
        preset="spi",
        overrides=[*FAST, "latent.steps=2", "tune.steps=2", "tune.aux_every=2"],
    )
    working = [v for _, v, g in SpyGenerator.calls if g]
    # one batched pass per step; the relighting renders nothing, the anchor adds its 2 views;
    # each stage's light probe first fits its own latent to the photo (one view a step)
    probe = [1] * get_preset("spi").latent.terms["mirror_view"].probe_steps
    assert working == [*probe, 2, 2, *probe, 9, 1]
    stage1 = [h for h in result.history if h["stage"] == "latent"]
    assert len(stage1) == 2 and all("mirror_view/_relit" in h for h in stage1)
    assert all("mirror_view/_render_asymmetry" in h for h in stage1)
    assert all("mirror_view/_conflict" in h for h in stage1)
    assert "mirror_regions/_relit" in result.history[2]
    assert torch.isfinite(result.ws).all()


def test_max_correction_leaves_the_mirror_out_under_a_strong_side_light(truth, scene, losses):
    kept = view_term(losses, relight=True, max_correction=10.0)
    left = view_term(losses, relight=True, max_correction=0.05)
    for term in (kept, left):
        ctx = context(truth, scene, scene["side"])
        out = term(ctx, mirror_views(truth, term, ctx))
        assert float(out["_relit"]) == 1.0 and float(out["_correction"]) > 0.05
    assert "mse" in kept(ctx, mirror_views(truth, kept, ctx)) and not kept.relighter.left_out
    # left out: no loss on this step, and the next step asks for no mirror view at all ...
    out = left(ctx, mirror_views(truth, kept, ctx))
    assert float(out["_left_out"]) == 1.0 and "mse" not in out and "perceptual" not in out
    next_ctx = context(truth, scene, scene["side"], step=1)
    assert left.views(next_ctx) is None
    assert float(left(next_ctx, None)["_left_out"]) == 1.0  # ... while the light is still fitted
    # under a symmetric light the same threshold keeps the mirror; the gated fit is not snapped
    # to a symmetric light (a small correction), the ungated one is (exactly the plain flip)
    sym_ctx = context(truth, scene, scene["symmetric"], step=2)
    fresh = view_term(losses, relight=True, max_correction=0.05)
    out = fresh(sym_ctx, mirror_views(truth, fresh, sym_ctx))
    assert float(out["_left_out"]) == 0.0 and fresh.views(sym_ctx) is not None
    assert 0.0 < float(out["_correction"]) < 0.02
    assert float(view_term(losses, relight=True).relighter.photo(sym_ctx)[1]["_correction"]) == 0


def test_the_gate_decides_on_the_stage_mean_not_on_one_step(truth, scene, losses, monkeypatch):
    """Fits that flip between a side light and a symmetric one (as at 60 degrees, where the
    visible pairs lie near the midline) keep the mirror out while their mean is above the
    threshold, and let it back once the mean falls below; refused fits are not counted."""
    term = view_term(losses, relight=True, max_correction=0.05)
    fits = [(1, 0.12), (1, 0.0), (0, 0.0), (1, 0.10), (1, 0.0), (1, 0.0), (1, 0.0)]

    def canned(ctx):  # one fit per step, whoever asks
        ok, correction = fits[ctx.step]
        info = {"_relit": torch.tensor(float(ok)), "_correction": torch.tensor(correction)}
        return ctx.target, {**info, "_asymmetry": torch.tensor(0.0)}

    monkeypatch.setattr(term.relighter, "photo", canned)
    decisions, means = [], []
    for step in range(7):
        ctx = context(truth, scene, scene["side"], step=step)
        out = term(ctx, None if term.relighter.left_out else mirror_views(truth, term, ctx))
        decisions.append(int(out["_left_out"]))
        means.append(round(float(out["_mean_correction"]), 4))
    assert means == [0.12, 0.06, 0.06, 0.0733, 0.055, 0.044, 0.0367]
    assert decisions == [1, 1, 1, 1, 1, 0, 0]
    assert sorted(term.relighter.corrections) == [0, 1, 3, 4, 5, 6]  # step 2 was refused


def test_max_correction_leaves_the_stage2_mirror_regions_out_too(truth, scene, losses):
    env = TermEnv(stage="generator", losses=losses, num_views=2)
    left = MirrorRegionsConfig(relight=True, max_correction=0.05, crop_size=16).setup(env)
    kept = MirrorRegionsConfig(relight=True, max_correction=10.0, crop_size=16).setup(env)
    ctx = context(truth, scene, scene["side"], stage="generator")
    assert "contextual" in kept(ctx, mirror_views(truth, kept, ctx))
    out = left(ctx, mirror_views(truth, left, ctx))
    assert float(out["_left_out"]) == 1.0 and "contextual" not in out
    assert left.views(context(truth, scene, scene["side"], step=1, stage="generator")) is None
