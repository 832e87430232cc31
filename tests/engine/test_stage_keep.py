"""Which step's parameters a stage ends on: ``KeepLast`` (the optimiser's) and ``KeepLowest``."""

import math

import pytest
import torch

import sym3d
from sym3d.engine.events import StepFinished
from sym3d.engine.stage import KeepLast, KeepLowest
from sym3d.terms import BasePrior
from sym3d.testing import TinyGenerator3D

from .conftest import FAST


class Params:
    """A one-tensor parameter set whose ``state_dict`` aliases the live tensor (``.cpu()`` views),
    as a plugin's parameter set may: the keep rule must not rely on the protocol's copies."""

    def __init__(self) -> None:
        self.x = torch.zeros(2)

    def state_dict(self):
        return {"x": self.x.detach().cpu(), "nested": [self.x.detach().cpu()]}

    def load_state_dict(self, state):
        self.x.copy_(state["x"])


def test_keep_lowest_restores_the_step_where_the_value_was_lowest():
    params, keep = Params(), KeepLowest("val/_v")
    values = [3.0, None, 1.0, 1.0, math.nan, 2.0]  # None: the step did not log it
    for step, value in enumerate(values):
        params.x.fill_(float(step))  # the parameters the step rendered
        keep.observe(step, {} if value is None else {"val/_v": value, "other": -5.0}, params)
    params.x.fill_(99.0)  # the optimiser moved on; the kept copy must not follow
    assert keep.restore(params) == 2  # ties keep the earlier step; NaN never counts
    assert torch.equal(params.x, torch.full((2,), 2.0))


def test_keep_lowest_without_any_logged_value_keeps_the_last_parameters():
    params, keep = Params(), KeepLowest("val/_v")
    for step in range(3):
        params.x.fill_(float(step))
        keep.observe(step, {"reconstruction/mse": 0.1}, params)
    assert keep.restore(params) is None and float(params.x[0]) == 2.0
    assert keep.state_dict() == {}
    assert KeepLast().restore(params) is None


def test_keep_lowest_state_survives_a_round_trip():
    params, keep = Params(), KeepLowest("val/_v")
    params.x.fill_(7.0)
    keep.observe(4, {"val/_v": 0.5}, params)
    state = keep.state_dict()
    params.x.fill_(8.0)  # a later step moves the live tensor
    resumed = KeepLowest("val/_v")
    resumed.load_state_dict(state)
    params.x.fill_(9.0)
    resumed.observe(5, {"val/_v": 0.7}, params)  # worse: not kept
    assert resumed.restore(params) == 4 and float(params.x[0]) == 7.0


class Validation(BasePrior):
    """Logs ``|step - best|`` (never optimised) and records the latent each step rendered."""

    def __init__(self, best: int) -> None:
        super().__init__("probe_val", ("latent",))
        self.best = best
        self.seen: dict[int, torch.Tensor] = {}

    def __call__(self, ctx, views):
        self.seen[ctx.step] = ctx.ws.detach().clone()
        return {"_validation": torch.tensor(float(abs(ctx.step - self.best)))}


def _run(side_view, prior, *extra, **kw):
    img, cam = side_view
    over = [*FAST, "latent.steps=8", "tune.steps=0", "latent.noise_strength=0", *extra]
    return sym3d.invert(
        img, cam, generator=TinyGenerator3D(), preset="w+", overrides=over, priors=[prior], **kw
    )


def test_stage_one_ends_on_the_selected_latent(side_view):
    prior = Validation(best=3)
    result = _run(side_view, prior, "latent.select_by=probe_val/_validation")
    assert result.summary["latent_kept_step"] == 3
    # noise off: the latent a step renders is the parameter, kept before that step's update
    assert torch.equal(result.ws, prior.seen[3])
    assert not torch.equal(result.ws, prior.seen[7])
    # without select_by the last update is kept, and nothing is recorded in the summary
    plain = _run(side_view, Validation(best=3))
    assert "latent_kept_step" not in plain.summary
    assert not torch.equal(plain.ws, prior.seen[3])
    # a name no term logs: the last latent, and the summary says none was selected
    other = _run(side_view, Validation(best=3), "latent.select_by=probe_val/_nothing")
    assert other.summary["latent_kept_step"] is None
    assert torch.allclose(other.ws, plain.ws, atol=0, rtol=0)


class Interrupt(Exception):
    pass


def test_selection_survives_an_interruption(side_view, tmp_path):
    """The kept latent is part of the run state: a resumed stage 1 ends on the same one."""
    over = ("latent.select_by=probe_val/_validation", "checkpoint_every=2")
    full = _run(side_view, Validation(best=3), *over)

    def stop_at_5(event):
        if isinstance(event, StepFinished) and event.stage == "latent" and event.step == 5:
            raise Interrupt

    with pytest.raises(Interrupt):
        _run(side_view, Validation(best=3), *over, checkpoint_dir=tmp_path, callbacks=[stop_at_5])
    resumed = _run(side_view, Validation(best=3), *over, checkpoint_dir=tmp_path)
    assert resumed.summary["latent_kept_step"] == 3
    assert torch.allclose(resumed.ws, full.ws, atol=1e-6)


def test_latent_params_state_dict_is_a_copy_not_a_view():
    """The stage-1 parameter set keeps the protocol: its state does not follow later steps."""
    from sym3d.camera import look_at
    from sym3d.config import LatentStageConfig
    from sym3d.engine.latent_stage import LatentParams

    cfg = LatentStageConfig(steps=1, refine_camera=True)
    params = LatentParams(TinyGenerator3D(), look_at(0.2, 0.0)[None], cfg, torch.Generator())
    state = params.state_dict()
    before = {
        k: [t.clone() for t in v] if isinstance(v, list) else v.clone() for k, v in state.items()
    }
    with torch.no_grad():
        params.var.add_(1.0)
        params.camera_offset.add_(1.0)
        for b in params.noise:
            b.add_(1.0)
    torch.testing.assert_close(state["latent"], before["latent"], rtol=0, atol=0)
    torch.testing.assert_close(state["camera_offset"], before["camera_offset"], rtol=0, atol=0)
    for now, then in zip(state["noise"], before["noise"], strict=True):
        torch.testing.assert_close(now, then, rtol=0, atol=0)
