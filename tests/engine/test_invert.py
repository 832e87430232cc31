import copy

import pytest
import torch

import sym3d
from sym3d.camera import look_at
from sym3d.engine import (
    CheckpointSaved,
    InversionResult,
    StageFinished,
    StageStarted,
    StepFinished,
    get_preset,
    preset_names,
)
from sym3d.errors import PluginNotFoundError, RangeError, ShapeError, UserInputError
from sym3d.image import from_model_range
from sym3d.terms import BasePrior
from sym3d.testing import TinyGenerator3D

from .conftest import FAST


def fast(*extra):
    return [*FAST, *extra]


class SpyGenerator(TinyGenerator3D):
    """Records (generator id, number of views) for every render call."""

    calls: list = []

    def render(self, ws, cameras, **kw):
        SpyGenerator.calls.append((id(self), cameras.shape[1], torch.is_grad_enabled()))
        return super().render(ws, cameras, **kw)


def test_presets():
    assert set(preset_names()) >= {
        "w",
        "w+",
        "pti",
        "pti-depth-reg",
        "spi",
        "spi-no-mirror",
        "spi-no-warp",
        "spi-no-authentic-mask",
        "spi-no-depth-reg",
    }

    def on(cfg, stage, name):
        return getattr(cfg, stage).terms[name].enabled

    pti = get_preset("pti")
    assert not any(on(pti, "tune", n) for n in ("warp_views", "mirror_regions", "depth_reg"))
    assert not on(pti, "latent", "mirror_view") and on(pti, "tune", "reconstruction")
    assert on(get_preset("pti-depth-reg"), "tune", "depth_reg")
    spi = get_preset("spi")
    assert all(on(spi, "tune", n) for n in ("warp_views", "mirror_regions", "depth_reg"))
    assert on(spi, "latent", "mirror_view") and spi.tune.terms["mirror_regions"].authentic_mask
    assert get_preset("w").latent.space == "w" and get_preset("w").tune.steps == 0
    with pytest.raises(PluginNotFoundError, match="did you mean 'spi'"):
        get_preset("sp")


def test_end_to_end_events_and_caller_generator_untouched(side_view):
    img, cam = side_view
    gen = TinyGenerator3D()
    before = copy.deepcopy(gen.state_dict())
    events = []
    result = sym3d.invert(
        img,
        cam,
        generator=gen,
        overrides=fast("latent.steps=4", "tune.steps=4"),
        callbacks=[events.append],
    )
    kinds = [type(e).__name__ for e in events]
    assert (
        kinds[0] == "StageStarted"
        and kinds[5] == "StageFinished"
        and kinds[6] == "StageStarted"
        and kinds[-1] == "StageFinished"
    )
    assert [e.stage for e in events if isinstance(e, (StageStarted, StageFinished))] == [
        "latent",
        "latent",
        "generator",
        "generator",
    ]
    assert sum(isinstance(e, StepFinished) for e in events) == 8
    assert all(torch.equal(v, before[k]) for k, v in gen.state_dict().items())
    assert result.ws.shape == (1, gen.num_ws, gen.w_dim)
    assert set(result.tuned) == {"planes"} and float(result.tuned["planes"].abs().max()) > 0
    assert len(result.history) == 8 and "reconstruction/perceptual" in result.history[0]


def test_one_render_call_per_step_with_all_views(side_view):
    img, cam = side_view
    SpyGenerator.calls = []
    gen = SpyGenerator()
    sym3d.invert(
        img,
        cam,
        generator=gen,
        overrides=fast("latent.steps=2", "tune.steps=2", "tune.aux_every=2"),
    )
    calls = SpyGenerator.calls
    working = [v for _, v, g in calls if g]  # renders with gradients: the optimised generator
    # each stage's light probe (spi's max_render_asymmetry) first fits a latent of its own to
    # the photo, one view a step; then one call per step
    probe = [1] * get_preset("spi").latent.terms["mirror_view"].probe_steps
    # stage 1: input + mirror view in one call per step (yaw 0.6 > 0.2)
    assert working[: len(probe) + 2] == [*probe, 2, 2]
    # stage 2 step 0 (auxiliary): input + 2 warp + 2 mirror + 2 depth-reg + 2 anchor views in one
    # call; step 1: input only
    assert working[len(probe) + 2 :] == [*probe, 9, 1]
    # the frozen reference is rendered once, without gradients, for the depth regulariser
    ref_calls = [c for c in calls if not c[2] and c[1] == 2]
    assert len(ref_calls) >= 1


def test_frontal_input_skips_mirror_terms(truth):
    gen_t, ws = truth
    cam = look_at(0.05, 0.0)[None]
    with torch.no_grad():
        img = from_model_range(gen_t.render(ws, cam[:, None]).image[:, 0]).clamp(0, 1)
    SpyGenerator.calls = []
    r = sym3d.invert(
        img,
        cam,
        generator=SpyGenerator(),
        overrides=fast("latent.steps=2", "tune.steps=2", "tune.aux_every=2"),
    )
    working = [v for _, v, g in SpyGenerator.calls if g]
    assert working == [1, 1, 7, 1]  # no mirror view in stage 1, no mirror-region views in stage 2
    assert not any(k.startswith("mirror") for h in r.history for k in h)


def test_deterministic_with_seed(side_view):
    img, cam = side_view
    a = sym3d.invert(
        img, cam, generator=TinyGenerator3D(), overrides=fast("latent.steps=5", "tune.steps=4")
    )
    b = sym3d.invert(
        img, cam, generator=TinyGenerator3D(), overrides=fast("latent.steps=5", "tune.steps=4")
    )
    assert torch.equal(a.ws, b.ws) and torch.equal(a.tuned["planes"], b.tuned["planes"])
    c = sym3d.invert(
        img,
        cam,
        generator=TinyGenerator3D(),
        overrides=fast("latent.steps=5", "tune.steps=4", "seed=1"),
    )
    assert not torch.equal(a.ws, c.ws)


def test_losses_decrease(side_view):
    img, cam = side_view
    r = sym3d.invert(
        img,
        cam,
        generator=TinyGenerator3D(),
        preset="pti",
        overrides=fast("latent.steps=30", "tune.steps=20"),
    )
    lat = [h["reconstruction/perceptual"] for h in r.history if h["stage"] == "latent"]
    tun = [h["reconstruction/perceptual"] for h in r.history if h["stage"] == "generator"]
    assert lat[-1] < 0.5 * lat[0]
    assert tun[-1] < 0.5 * tun[0]


def test_early_stop_before_applying_the_step(side_view):
    img, cam = side_view
    r = sym3d.invert(
        img,
        cam,
        generator=TinyGenerator3D(),
        preset="pti",
        overrides=fast("latent.steps=3", "tune.steps=10", "tune.early_stop=10.0"),
    )
    assert r.summary["tune_early_stopped"] and r.summary["tune_steps_run"] == 1
    assert (
        float(r.tuned["planes"].abs().max()) == 0.0
    )  # the stopping step is not applied (SPI's order)


class Interrupt(Exception):
    pass


def _interrupt_at(stage, step):
    def cb(event):
        if isinstance(event, StepFinished) and event.stage == stage and event.step == step:
            raise Interrupt

    return cb


@pytest.mark.parametrize("stage, step", [("latent", 4), ("generator", 4)])
def test_resume_after_interruption_matches_uninterrupted(side_view, tmp_path, stage, step):
    img, cam = side_view
    over = fast("latent.steps=6", "tune.steps=6", "checkpoint_every=3")
    full = sym3d.invert(img, cam, generator=TinyGenerator3D(), overrides=over)
    saved = []
    with pytest.raises(Interrupt):
        sym3d.invert(
            img,
            cam,
            generator=TinyGenerator3D(),
            overrides=over,
            checkpoint_dir=tmp_path,
            callbacks=[_interrupt_at(stage, step), saved.append],
        )
    assert any(isinstance(e, CheckpointSaved) for e in saved)
    events = []
    resumed = sym3d.invert(
        img,
        cam,
        generator=TinyGenerator3D(),
        overrides=over,
        checkpoint_dir=tmp_path,
        callbacks=[events.append],
    )
    assert type(events[0]).__name__ == "Resumed" and events[0].step == 3
    assert torch.allclose(resumed.ws, full.ws, atol=1e-6)
    assert torch.allclose(resumed.tuned["planes"], full.tuned["planes"], atol=1e-6)
    assert [h["step"] for h in resumed.history] == [h["step"] for h in full.history]


def test_resume_refuses_other_inputs(side_view, tmp_path):
    img, cam = side_view
    over = fast("latent.steps=4", "tune.steps=0", "checkpoint_every=2")
    with pytest.raises(Interrupt):
        sym3d.invert(
            img,
            cam,
            generator=TinyGenerator3D(),
            overrides=over,
            checkpoint_dir=tmp_path,
            callbacks=[_interrupt_at("latent", 3)],
        )
    with pytest.raises(UserInputError, match="belongs to a different run"):
        sym3d.invert(
            img.flip(-1), cam, generator=TinyGenerator3D(), overrides=over, checkpoint_dir=tmp_path
        )


def test_result_save_load_apply(side_view, tmp_path):
    img, cam = side_view
    r = sym3d.invert(
        img, cam, generator=TinyGenerator3D(), overrides=fast("latent.steps=3", "tune.steps=3")
    )
    r.save(tmp_path / "res")
    assert {p.name for p in (tmp_path / "res").iterdir()} >= {
        "latent.pt",
        "tuned.safetensors",
        "history.json",
        "config.resolved.toml",
        "input.png",
    }
    back = InversionResult.load(tmp_path / "res")
    assert (
        torch.equal(back.ws, r.ws)
        and torch.equal(back.tuned["planes"], r.tuned["planes"])
        and back.config == r.config
    )
    cams = look_at(torch.tensor([-0.5, 0.5]), 0.0)
    a = r.render(r.apply(TinyGenerator3D()), cams)
    b = back.render(back.apply(TinyGenerator3D()), cams)
    assert torch.equal(a.image, b.image)


class CountingPrior(BasePrior):
    """A custom prior: asks for a frontal view every 2nd step and pulls its depth toward 2.5."""

    def __init__(self):
        super().__init__("custom", ("latent", "generator"), every=2)
        self.seen = []

    def views(self, ctx):
        return look_at(0.0, 0.0, device=ctx.camera.device)[None]

    def __call__(self, ctx, views):
        self.seen.append((ctx.stage, ctx.step, views.render.image.shape[1]))
        return {
            "depth": 0.01 * (views.render.depth - 2.5).square().mean(),
            "_note": torch.tensor(1.0),
        }


def test_custom_prior_composes(side_view):
    img, cam = side_view
    prior = CountingPrior()
    r = sym3d.invert(
        img,
        cam,
        generator=TinyGenerator3D(),
        preset="pti",
        overrides=fast("latent.steps=4", "tune.steps=4"),
        priors=[prior],
    )
    assert prior.seen == [
        ("latent", 0, 1),
        ("latent", 2, 1),
        ("generator", 0, 1),
        ("generator", 2, 1),
    ]
    assert "custom/depth" in r.history[0] and "custom/_note" in r.history[0]
    assert "custom/depth" not in r.history[1]


def test_bad_inputs_raise_typed_errors(side_view):
    img, cam = side_view
    gen = TinyGenerator3D()
    with pytest.raises(ShapeError, match="image"):
        sym3d.invert(img[0, :2], cam, generator=gen)
    with pytest.raises(RangeError, match="from_model_range"):
        sym3d.invert(img * 2 - 1, cam, generator=gen)
    with pytest.raises(ShapeError, match="camera"):
        sym3d.invert(img, cam[:, :16], generator=gen)
    with pytest.raises(PluginNotFoundError, match="available"):
        sym3d.invert(img, cam, generator="no-such-generator")
    with pytest.raises(UserInputError, match="does not satisfy sym3d.protocols.Prior"):
        sym3d.invert(img, cam, generator=gen, priors=[object()])
    with pytest.raises(UserInputError, match="does not satisfy sym3d.protocols.Generator3D"):
        sym3d.invert(img, cam, generator=torch.nn.Linear(2, 2))
    with pytest.raises(UserInputError, match="pass an image and its camera"):
        sym3d.invert(generator=gen)
    with pytest.raises(UserInputError, match=r"no pose estimator 'no-such-pose'.*sym3d\[faces\]"):
        sym3d.invert(img, generator=gen, pose_estimator="no-such-pose")
