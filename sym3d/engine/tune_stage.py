"""Stage 2: fine-tune the generator around the frozen pivot latent, with the stage's priors."""

from __future__ import annotations

import time
from typing import Any

import torch

from sym3d.engine.events import StageFinished, StageStarted, emit
from sym3d.engine.run import Run, render_step, sum_terms
from sym3d.image import from_model_range

__all__ = ["run_tune_stage"]


def run_tune_stage(run: Run, ws: torch.Tensor, resume: dict[str, Any] | None = None) -> tuple[dict[str, torch.Tensor], bool, int]:
    """Run stage 2 on ``run.generator`` in place.

    Reconstruction: ``mse_weight * MSE + perceptual_weight * perceptual`` on the input view, with
    MSE measured on the generator's ``[-1, 1]`` range as in SPI (4x the ``[0, 1]`` MSE). The
    priors of the stage (pseudo views, mirror regions, depth regulariser, custom ones) add their
    terms on their steps. Early stop: once the reconstruction perceptual loss is at most
    ``config.tune.early_stop`` the loop ends *before* applying that step (SPI's order).

    Returns:
        the tuned parameters (detached CPU copies), whether it stopped early, steps run.
    """
    cfg = run.config.tune
    gen = run.generator
    params = gen.tunable_parameters(cfg.scope)
    for p in gen.parameters():  # type: ignore[attr-defined]
        p.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    opt = torch.optim.Adam(list(params.values()), lr=cfg.lr)
    ws = ws.detach()
    start = 0
    if resume is not None and resume.get("stage") == "generator":
        with torch.no_grad():
            for name, value in resume["tuned"].items():
                params[name].copy_(value.to(params[name]))
        opt.load_state_dict(resume["tune_opt"])
        start = int(resume["step"])
    emit(run.callbacks, StageStarted(stage="generator", num_steps=cfg.steps, start_step=start))
    stage_start = time.perf_counter()

    def state() -> dict[str, Any]:
        return {
            "stage": "generator",
            "ws": ws.cpu(),
            "tuned": {n: p.detach().cpu().clone() for n, p in params.items()},
            "tune_opt": opt.state_dict(),
        }

    early = False
    step = start
    for step in range(start, cfg.steps):
        t0 = time.perf_counter()
        main, terms = render_step(run, "generator", step, cfg.steps, ws)
        pred = from_model_range(main.image[:, 0])
        rec = run.objective.perceptual(pred, run.target).mean()
        terms["rec/perceptual"] = cfg.perceptual_weight * rec
        terms["rec/_perceptual_unweighted"] = rec.detach()
        if cfg.mse_weight > 0:
            terms["rec/mse"] = cfg.mse_weight * 4.0 * run.objective.mse(pred, run.target).mean()
        loss = sum_terms(terms)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        terms["total"] = loss
        losses = run.log_step("generator", step, cfg.steps, terms, cfg.lr, t0)
        if cfg.early_stop > 0 and losses["rec/_perceptual_unweighted"] <= cfg.early_stop:
            early = True
            break
        opt.step()
        run.maybe_checkpoint("generator", step + 1, cfg.steps, lambda: {**state(), "step": step + 1})
    for p in params.values():
        p.requires_grad_(False)
    steps_run = (step + 1 - start) if cfg.steps > start else 0
    emit(run.callbacks, StageFinished(stage="generator", steps_run=steps_run, early_stopped=early, seconds=time.perf_counter() - stage_start))
    return {n: p.detach().cpu().clone() for n, p in params.items()}, early, steps_run
