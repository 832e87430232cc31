"""Runs the stages of one inversion: builds each stage's terms, resumes, checkpoints."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from sym3d.camera import yaw_pitch_roll
from sym3d.config import InversionConfig, Terms
from sym3d.engine.checkpoint import Phase, RunState, load_run_state, save_run_state
from sym3d.engine.events import CheckpointSaved, Resumed, emit
from sym3d.engine.latent_stage import LatentParams, latent_stage
from sym3d.engine.stage import Stage, run_stage
from sym3d.engine.step import Run
from sym3d.engine.tune_stage import TuneParams, tune_stage
from sym3d.protocols import Prior
from sym3d.terms.base import StageName, TermEnv
from sym3d.terms.losses import Losses

__all__ = ["build_terms", "RunOutcome", "Runner"]


def build_terms(terms: Terms, env: TermEnv, extra: Sequence[Prior] = ()) -> list[Prior]:
    """The providers of the enabled terms (in config order), then the extra priors of the stage."""
    built = [cfg.setup(env) for cfg in terms.values() if cfg.enabled]
    return [*built, *(p for p in extra if env.stage in p.stages)]


@attrs.frozen(kw_only=True)
class RunOutcome:
    """What the stages produced: pivot, stage-2 camera, tuned parameters and run facts."""

    ws: torch.Tensor
    camera: torch.Tensor
    tuned: dict[str, torch.Tensor]
    summary: dict[str, Any]


@attrs.define(eq=False)
class Runner:
    """One inversion's stages over a prepared :class:`~sym3d.engine.step.Run`.

    Attributes:
        run: the shared inputs and the working generator.
        config: the resolved configuration.
        losses: the image losses the terms use.
        extra: priors passed by the caller (added to the stages they name).
        checkpoint_dir: where the run state is kept (``None``: no checkpoints).
        fingerprint: identifies inputs and settings in the run state.
    """

    run: Run
    config: InversionConfig
    losses: Losses
    extra: Sequence[Prior]
    checkpoint_dir: Path | None
    fingerprint: str

    def env(self, stage: StageName) -> TermEnv:
        """The set-up environment of ``stage``'s terms."""
        tune = self.config.tune
        every, views = (tune.aux_every, tune.num_views) if stage == "generator" else (1, 1)
        return TermEnv(
            stage=stage,
            losses=self.losses,
            every=every,
            num_views=views,
            mirror_min_yaw=self.config.mirror_min_yaw,
        )

    def save(
        self,
        stage: Phase,
        step: int,
        *,
        latent: torch.Tensor | None = None,
        camera: torch.Tensor | None = None,
        stage_state: dict[str, Any] | None = None,
        tuned: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """Write the run state (no-op without a checkpoint folder)."""
        if self.checkpoint_dir is None:
            return
        state = RunState(
            fingerprint=self.fingerprint,
            stage=stage,
            step=step,
            latent=None if latent is None else latent.detach().cpu(),
            camera=None if camera is None else camera.detach().cpu(),
            stage_state=stage_state or {},
            tuned=tuned or {},
            rng=self.run.rng.get_state(),
            history=tuple(self.run.history),
        )
        path = save_run_state(self.checkpoint_dir, state)
        emit(self.run.callbacks, CheckpointSaved(path=str(path), stage=stage, step=step))

    def periodic(self, stage: Stage, **fixed: Any) -> Any:
        """The ``checkpoint(next_step)`` callback of a stage: every ``checkpoint_every`` steps."""
        every = self.config.checkpoint_every

        def checkpoint(next_step: int) -> None:
            if every > 0 and next_step % every == 0 and next_step < stage.num_steps:
                self.save(stage.name, next_step, stage_state=stage.state_dict(), **fixed)

        return checkpoint

    def resume(self, resume: bool) -> RunState | None:
        """Load the run state when resuming (restores the RNG and history; emits ``Resumed``)."""
        if self.checkpoint_dir is None or not resume:
            return None
        state = load_run_state(self.checkpoint_dir, self.fingerprint)
        if state is not None:
            self.run.rng.set_state(state.rng)
            self.run.history[:] = list(state.history)
            emit(
                self.run.callbacks,
                Resumed(path=str(self.checkpoint_dir), stage=state.stage, step=state.step),
            )
        return state

    def latent(
        self, state: RunState | None, pivot: torch.Tensor | None, summary: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 1 (or the saved/given pivot): ``ws`` and the camera of stage 2."""
        run = self.run
        if state is not None and state.latent is not None and state.camera is not None:
            return state.latent.to(run.target.device), state.camera.to(run.target.device)
        if pivot is not None:
            summary["pivot_given"] = True
            return pivot.detach().to(run.target.device, torch.float32), run.camera
        terms = build_terms(self.config.latent.terms, self.env("latent"), self.extra)
        stage = latent_stage(run.generator, run.camera, self.config.latent, terms, run.rng)
        start = 0
        if state is not None and state.stage == "latent" and state.stage_state:
            stage.load_state_dict(state.stage_state)
            start = state.step
        outcome = run_stage(run, stage, start, self.periodic(stage))
        if self.config.latent.select_by:
            summary["latent_kept_step"] = outcome.kept_step  # None: no step logged the value
        assert isinstance(stage.params, LatentParams)
        ws, camera = stage.params.finish()
        if self.config.latent.refine_camera:
            (y1, p1, _), (y0, p0, _) = yaw_pitch_roll(camera), yaw_pitch_roll(run.camera)
            summary.update(camera_refined_dyaw=float(y1 - y0), camera_refined_dpitch=float(p1 - p0))
        self.save("generator", 0, latent=ws, camera=camera)
        return ws, camera

    def tune(
        self,
        state: RunState | None,
        ws: torch.Tensor,
        camera: torch.Tensor,
        summary: dict[str, Any],
    ) -> dict[str, torch.Tensor]:
        """Stage 2 (or the saved result): the tuned parameters."""
        if state is not None and state.stage == "done":
            return dict(state.tuned)
        if self.config.tune.steps == 0:
            return {}
        terms = build_terms(self.config.tune.terms, self.env("generator"), self.extra)
        stage = tune_stage(self.run.generator, ws, camera, self.config.tune, terms)
        start = 0
        if state is not None and state.stage == "generator" and state.stage_state:
            stage.load_state_dict(state.stage_state)
            start = state.step
        outcome = run_stage(self.run, stage, start, self.periodic(stage, latent=ws, camera=camera))
        summary.update(tune_early_stopped=outcome.early_stopped, tune_steps_run=outcome.steps_run)
        assert isinstance(stage.params, TuneParams)
        return stage.params.finish()

    def __call__(self, *, resume: bool, pivot: torch.Tensor | None) -> RunOutcome:
        """Run (or continue) both stages; the final run state is saved as ``"done"``."""
        state = self.resume(resume)
        summary: dict[str, Any] = {}
        t0 = time.perf_counter()
        ws, camera = self.latent(state, pivot, summary)
        summary["latent_seconds"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        tuned = self.tune(state, ws, camera, summary)
        summary["tune_seconds"] = time.perf_counter() - t1
        self.save("done", self.config.tune.steps, latent=ws, camera=camera, tuned=tuned)
        return RunOutcome(
            ws=ws.detach().cpu(), camera=camera.detach().cpu(), tuned=tuned, summary=summary
        )
