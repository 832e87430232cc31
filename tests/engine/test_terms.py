"""Each objective term on its own (no inversion), and adding a term."""

import math

import pytest
import torch

import sym3d
from sym3d.camera import look_at, mirror_camera, rotate_camera, yaw_pitch_roll
from sym3d.config import InversionConfig, dump_toml, load_toml
from sym3d.engine.presets import PRESETS
from sym3d.image import from_model_range
from sym3d.plugins import default_registry
from sym3d.protocols import FaceObservation, PriorContext, PriorViews
from sym3d.terms import (
    DepthRegConfig,
    MirrorRegionsConfig,
    MirrorViewConfig,
    ReconstructionConfig,
    TermEnv,
    UnseenAnchorConfig,
    WarpViewsConfig,
    region_boxes,
)
from sym3d.terms.losses import build_losses
from sym3d.testing import TinyGenerator3D
from sym3d.warp import warp_photo

from .conftest import FAST


@pytest.fixture(scope="module")
def losses():
    return build_losses("mse", 0, "filterbank", default_registry(), torch.device("cpu"))


def env(losses, stage="generator", **kw):
    return TermEnv(stage=stage, losses=losses, every=1, num_views=kw.pop("num_views", 2), **kw)


def context(
    gen, ws, image, cam, *, render=None, reference=None, observation=None, stage="generator"
):
    return PriorContext(
        stage=stage,
        step=0,
        num_steps=1,
        generator=gen,
        reference=reference,
        ws=ws,
        target=image,
        camera=cam,
        observation=observation,
        render=render,
        rng=torch.Generator().manual_seed(0),
    )


def render_views(gen, ws, cams):
    with torch.no_grad():
        return gen.render(ws, cams)


def test_depth_reg_is_zero_against_itself_and_positive_after_a_perturbation(
    truth, side_view, losses
):
    gen, ws = truth
    img, cam = side_view
    working = TinyGenerator3D()
    working.load_state_dict(gen.state_dict())
    term = DepthRegConfig(weight=1.0).setup(env(losses))
    ctx = context(working, ws, img, cam, reference=working.frozen_copy())
    cams = term.views(ctx)[None]
    assert cams.shape == (1, 2, 25)
    same = term(ctx, PriorViews(cameras=cams, render=render_views(working, ws, cams)))["depth"]
    assert float(same) == 0.0
    with torch.no_grad():
        working.planes.add_(
            0.5 * torch.randn(working.planes.shape, generator=torch.Generator().manual_seed(1))
        )
    moved = term(ctx, PriorViews(cameras=cams, render=render_views(working, ws, cams)))["depth"]
    assert float(moved) > 1e-6
    assert term(ctx, None) == {} and term(context(working, ws, img, cam), None) == {}


@pytest.mark.parametrize(
    ("config", "one_sided"),
    [
        (DepthRegConfig(symmetric=False, pitch_range=0.0), True),
        (DepthRegConfig(pitch_range=0.0), False),
        (UnseenAnchorConfig(yaw_range=0.5, pitch_range=0.0), False),
    ],
)
def test_orbit_terms_draw_their_views_within_the_configured_yaw_range(
    truth, side_view, losses, config, one_sided
):
    gen, ws = truth
    img, cam = side_view
    term = config.setup(env(losses, num_views=64))
    cams = term.views(context(gen, ws, img, cam))
    assert cams.shape == (64, 25)
    position = cams[:, :16].reshape(64, 4, 4)[:, :3, 3]  # on a sphere about the origin
    yaw = torch.atan2(position[:, 0], position[:, 2])
    assert float(yaw.abs().max()) <= config.yaw_range + 1e-5
    assert float(yaw.abs().max()) > 0.5 * config.yaw_range  # 64 uniform draws
    assert (float(yaw.min()) >= -1e-6) == one_sided


def test_mirror_view_weight_follows_the_yaw_curve_and_is_zero_for_a_frontal_face(losses):
    term = MirrorViewConfig().setup(env(losses, stage="latent", mirror_min_yaw=0.2))
    cams = [look_at(y, 0.0)[None] for y in (0.0, 0.1, 0.15, 0.25, 0.35, 0.6, 1.0)]
    yaws = [
        float(yaw_pitch_roll(c)[0]) for c in cams
    ]  # the camera's yaw (the orbit pivots at z=0.2)
    weights = [term.weight(c) for c in cams]
    gauss = [
        0.5 * (1 - math.exp(-0.5 * (y / 0.29) ** 2) / (0.29 * math.sqrt(2 * math.pi)) / 2.7)
        for y in yaws
    ]
    assert weights == pytest.approx(
        [g if y >= 0.2 else 0.0 for g, y in zip(gauss, yaws, strict=True)], abs=1e-6
    )
    assert weights[:2] == [0.0, 0.0] and weights[-1] <= 0.5
    above = [w for w, y in zip(weights, yaws, strict=True) if y >= 0.2]
    assert (
        len(above) >= 4
        and above[0] > 0.29
        and all(a < b for a, b in zip(above[:-1], above[1:], strict=True))
    )
    gen = TinyGenerator3D()
    frontal = look_at(0.05, 0.0)[None]
    img = torch.full((1, 3, 32, 32), 0.5)
    assert term.views(context(gen, None, img, frontal, stage="latent")) is None
    side = look_at(-0.6, 0.0)[None]
    assert torch.allclose(
        term.views(context(gen, None, img, side, stage="latent")), mirror_camera(side)
    )


def test_region_boxes_fall_back_to_the_face_mask_without_landmarks(side_view):
    img, cam = side_view
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:20, 4:28] = 1.0
    gen = TinyGenerator3D()
    names = ("left_eye", "right_eye", "mouth")
    obs = FaceObservation(image=img, camera=cam, face_mask=mask)
    boxes = region_boxes(context(gen, None, img, cam, observation=obs), names, 0.0)
    assert torch.allclose(boxes, torch.tensor([[[4 / 32, 8 / 32, 28 / 32, 20 / 32]]]))
    regions = {
        "left_eye": (0.1, 0.2, 0.3, 0.3),
        "right_eye": (0.6, 0.2, 0.8, 0.3),
        "mouth": (0.3, 0.6, 0.7, 0.8),
    }
    obs = FaceObservation(image=img, camera=cam, face_mask=mask, regions=regions)
    boxes = region_boxes(context(gen, None, img, cam, observation=obs), names, 0.05)
    assert torch.allclose(boxes[0, 2], torch.tensor([0.25, 0.55, 0.75, 0.85]))


def test_unseen_anchor_holds_only_what_the_photo_does_not_see(truth, side_view, losses):
    gen, ws = truth
    img, cam = side_view
    working = TinyGenerator3D()
    working.load_state_dict(gen.state_dict())
    term = UnseenAnchorConfig(weight=1.0, mirror_regions=()).setup(env(losses))
    src = render_views(working, ws, cam[:, None])
    ctx = context(working, ws, img, cam, render=src.view(0), reference=gen.frozen_copy())
    assert term(ctx, None) == {} and term(context(working, ws, img, cam), None) == {}
    mirrored = mirror_camera(cam)[:, None]
    views = torch.cat([cam[:, None], mirrored], dim=1)  # [1, 2, 25]: the photo's, the mirrored
    same = term(ctx, PriorViews(cameras=views, render=render_views(working, ws, views)))
    assert float(same["mse"]) == 0.0  # the tuned generator is still the frozen one
    # At the photo's own camera only the background is held (the photo sees all of the head);
    # at the mirrored camera the far cheek is held too.
    background = 1.0 - (src.opacity[0] > 0.5).float().mean()
    with torch.no_grad():
        working.planes.add_(
            0.5 * torch.randn(working.planes.shape, generator=torch.Generator().manual_seed(1))
        )
    at_input = term(
        ctx, PriorViews(cameras=cam[:, None], render=render_views(working, ws, cam[:, None]))
    )
    at_mirror = term(ctx, PriorViews(cameras=mirrored, render=render_views(working, ws, mirrored)))
    assert abs(float(at_input["_unseen"]) - float(background)) < 0.05
    assert float(at_mirror["_unseen"]) > float(at_input["_unseen"]) + 0.1
    assert float(at_mirror["mse"]) > float(at_input["mse"]) > 0.0
    assert "unseen_anchor" in sym3d.terms.term_names()


def test_unseen_anchor_rim_holds_the_edge_of_the_seen_region(truth, side_view, losses):
    """``rim`` erodes the seen region by ``round(rim * W)`` pixels: more of the view is held."""
    term = UnseenAnchorConfig(rim=2 / 32).setup(env(losses))
    seen = torch.zeros(2, 1, 32, 32)
    seen[0, :, 10:20, 5:15] = 1.0
    seen[1] = 0.5
    eroded = term.erode(seen)
    assert eroded[0].sum() == 6 * 6 and eroded[0, 0, 12:18, 7:13].eq(1.0).all()
    assert torch.equal(eroded[1], seen[1])  # a uniform map is its own erosion
    assert torch.equal(UnseenAnchorConfig().setup(env(losses)).erode(seen), seen)
    with pytest.raises(ValueError):
        UnseenAnchorConfig(rim=-0.1)
    gen, ws = truth
    img, cam = side_view
    src = render_views(gen, ws, cam[:, None])
    mirrored = mirror_camera(cam)[:, None]
    views = PriorViews(cameras=mirrored, render=render_views(gen, ws, mirrored))
    ctx = context(gen, ws, img, cam, render=src.view(0), reference=gen)

    def unseen(rim: float) -> float:
        cfg = UnseenAnchorConfig(rim=rim, mirror_regions=())
        return float(cfg.setup(env(losses))(ctx, views)["_unseen"])

    assert unseen(2 / 32) > unseen(0.0) + 0.02


def test_unseen_anchor_occluder_window_holds_surface_behind_nearer_edges(truth, side_view, losses):
    """``occluder_window`` makes the occlusion test look around the projection: at the mirrored
    camera more of the head is held, and the photo still sees more of its own view than of that."""
    gen, ws = truth
    img, cam = side_view
    src = render_views(gen, ws, cam[:, None])
    mirrored = mirror_camera(cam)[:, None]
    ctx = context(gen, ws, img, cam, render=src.view(0), reference=gen)

    def unseen(window: float, cameras: torch.Tensor) -> float:
        views = PriorViews(cameras=cameras, render=render_views(gen, ws, cameras))
        cfg = UnseenAnchorConfig(occluder_window=window, mirror_regions=())
        return float(cfg.setup(env(losses))(ctx, views)["_unseen"])

    assert unseen(2 / 32, mirrored) > unseen(0.0, mirrored) + 0.1  # measured 0.70 vs 0.51
    assert unseen(2 / 32, cam[:, None]) < unseen(2 / 32, mirrored) - 0.1
    with pytest.raises(ValueError):
        UnseenAnchorConfig(occluder_window=-0.1)


def test_unseen_anchor_leaves_the_mirror_regions_to_the_mirror(truth, side_view, losses):
    """The unseen pixels the mirror regions supply are not held; the rest of the unseen side is."""
    gen, ws = truth
    img, cam = side_view
    src = render_views(gen, ws, cam[:, None])
    mirrored = mirror_camera(cam)[:, None]
    at_mirror = PriorViews(cameras=mirrored, render=render_views(gen, ws, mirrored))
    at_input = PriorViews(cameras=cam[:, None], render=src)

    def unseen(observation, **kw):
        term = UnseenAnchorConfig(**kw).setup(env(losses))
        ctx = context(gen, ws, img, cam, render=src.view(0), reference=gen, observation=observation)
        return float(term(ctx, at_mirror)["_unseen"]), float(term(ctx, at_input)["_unseen"])

    mask = (src.opacity[:, 0] > 0.5).float()  # [1, 1, H, W]
    eyes = {"left_eye": (0.2, 0.3, 0.45, 0.45), "right_eye": (0.55, 0.3, 0.8, 0.45)}
    obs = FaceObservation(image=img, camera=cam, face_mask=mask, regions=eyes)
    everything, _ = unseen(obs, mirror_regions=())
    no_eyes, _ = unseen(obs, mirror_regions=("left_eye", "right_eye"))
    no_face, input_view = unseen(None)  # no regions known: one box around the face
    _, input_view_all = unseen(None, mirror_regions=())
    # Two eye boxes release part of what the whole face box releases, at the mirrored camera;
    # at the input camera the photo sees the face already: the regions change little there.
    assert everything - 0.15 > no_face
    assert no_face + 0.02 < no_eyes < everything - 0.01
    assert abs(input_view - input_view_all) < 0.03


def test_warp_views_into_the_source_camera_is_the_identity_on_visible_pixels(
    truth, side_view, losses
):
    gen, ws = truth
    img, cam = side_view
    src = render_views(gen, ws, cam[:, None])
    ctx = context(gen, ws, img, cam, render=src.view(0))
    cfg = WarpViewsConfig()
    warped = warp_photo(
        ctx,
        src,
        cam[:, None],
        depth_mode=cfg.depth_mode,
        use_face_mask=False,
        occlusion_threshold=cfg.occlusion_threshold,
    )
    visible = warped.mask[0, 0, 0] > 0.999
    assert float(visible.float().mean()) > 0.3  # the head covers a good part of the view
    err = (warped.image[0, 0] - img[0]).abs()[:, visible]
    # float32 unproject -> project round trip moves a sample by ~1e-4 px; times the sharpest
    # gradient of this 32 px image (< 10 per px) that is < 2e-3; a wrong camera moves pixels >1 px.
    assert float(err.max()) < 2e-3 and float(err.mean()) < 2e-4
    terms = cfg.setup(env(losses)).__call__(ctx, PriorViews(cameras=cam[:, None], render=src))
    assert (
        float(terms["_valid"]) > 0.3 and float(terms["perceptual"]) < 1e-6
    )  # the render is the photo


def test_mirror_regions_authentic_mask_drops_conflicting_pixels_only_when_on(
    truth, side_view, losses
):
    gen, ws = truth
    img, cam = side_view
    marked = img.clone()
    marked[:, :, 14:18, 19:23] = 0.05  # a one-sided mark on the seen cheek (see test_warp.py)
    src = render_views(gen, ws, cam[:, None])
    tcams = torch.stack([rotate_camera(mirror_camera(cam)[0], d, 0.0) for d in (0.3, 0.4, 0.5)])[
        None
    ]
    views = PriorViews(cameras=tcams, render=render_views(gen, ws, tcams))
    ctx = context(gen, ws, marked, cam, render=src.view(0))
    on = MirrorRegionsConfig(authentic_mask=True).setup(env(losses, num_views=3))
    off = MirrorRegionsConfig(authentic_mask=False).setup(env(losses, num_views=3))
    _, mask_on, conflict = on.pseudo_labels(ctx, views)
    _, mask_off, no_conflict = off.pseudo_labels(ctx, views)
    dropped = conflict > 0.5
    assert int(dropped.sum()) > 10 and float(no_conflict.abs().max()) == 0.0
    assert bool((mask_off[dropped] > 0.5).all()) and float(mask_on[dropped].abs().max()) == 0.0
    assert torch.equal(mask_on[~dropped], mask_off[~dropped])
    # gated: no views for a frontal input
    assert on.views(context(gen, ws, img, look_at(0.1, 0.0)[None])) is None


def test_reconstruction_weights_and_ranges(truth, side_view, losses):
    gen, ws = truth
    img, cam = side_view
    render = render_views(gen, ws, cam[:, None]).view(0)
    target = (img + 0.1).clamp(0, 1)
    ctx = context(gen, ws, target, cam, render=render)
    pred = from_model_range(render.image[:, 0])
    mse = float((pred - target).square().mean())
    public = ReconstructionConfig(perceptual_weight=2.0, mse_weight=1.0).setup(env(losses))(
        ctx, None
    )
    model = ReconstructionConfig(mse_weight=1.0, mse_range="model").setup(env(losses))(ctx, None)
    assert float(public["perceptual"]) == pytest.approx(
        2 * mse, rel=1e-5
    )  # MSE is the "perceptual" here
    assert float(public["_perceptual"]) == pytest.approx(mse, rel=1e-5)
    assert float(public["mse"]) == pytest.approx(mse, rel=1e-5)
    assert float(model["mse"]) == pytest.approx(4 * mse, rel=1e-5)  # [-1, 1] range, as SPI
    assert "mse" not in ReconstructionConfig().setup(env(losses))(ctx, None)


def test_a_new_term_is_one_module_plus_one_preset_line(side_view, monkeypatch, tmp_path):
    from . import example_term  # the new module

    monkeypatch.setitem(PRESETS, "spi-center", {"tune.terms.center_depth.weight": 0.05})  # the line
    img, cam = side_view
    r = sym3d.invert(
        img,
        cam,
        generator=TinyGenerator3D(),
        preset="spi-center",
        overrides=[*FAST, "latent.steps=2", "tune.steps=4"],
    )
    assert isinstance(r.config.tune.terms["center_depth"], example_term.CenterDepthConfig)
    tune = [h for h in r.history if h["stage"] == "generator"]
    assert [("center_depth/depth" in h) for h in tune] == [
        True,
        False,
        True,
        False,
    ]  # tune.aux_every=2
    assert tune[0]["center_depth/_centre"] > 0
    dump_toml(r.config, tmp_path / "c.toml")
    assert load_toml(tmp_path / "c.toml") == r.config  # the results folder's config reads back
    assert "center_depth" not in InversionConfig().tune.terms
