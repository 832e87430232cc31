"""Stage 1: optimise the latent (W or W+) with the projector schedule, plus the priors of the stage."""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F

from sym3d.camera import rotate_camera
from sym3d.engine.events import StageFinished, StageStarted, emit
from sym3d.engine.run import Run, render_step, sum_terms
from sym3d.engine.schedule import latent_noise_scale, projector_lr
from sym3d.image import from_model_range

__all__ = ["run_latent_stage", "noise_regularizer"]


def noise_regularizer(buffers: list[torch.Tensor]) -> torch.Tensor:
    """StyleGAN2's noise regulariser: squared autocorrelation at shift 1 (x and y), over an image pyramid down to 8x8.

    Args:
        buffers: noise maps ``[..., H, W]``.
    """
    total = buffers[0].new_zeros(())
    for buf in buffers:
        x = buf.reshape(1, 1, *buf.shape[-2:])
        while True:
            total = total + (x * torch.roll(x, 1, dims=3)).mean().square() + (x * torch.roll(x, 1, dims=2)).mean().square()
            if x.shape[-1] <= 8:
                break
            x = F.avg_pool2d(x, 2)
    return total


def _normalize_(buffers: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for buf in buffers:
            mean = buf.mean()
            std = buf.square().mean().sub(mean.square()).clamp_min(1e-12).sqrt()
            buf.sub_(mean).div_(std)


def run_latent_stage(run: Run, resume: dict[str, Any] | None = None) -> torch.Tensor:
    """Run stage 1 and return the pivot ``ws [1, num_ws, w_dim]`` (detached).

    The latent starts at the generator's mean latent conditioned on the input camera. ``W``
    mode optimises one vector broadcast to all rows; ``W+`` one per row. A Gaussian perturbation
    whose scale ramps down to 0 is added to the latent before each render; noise buffers are
    optionally optimised (then restored: SPI discards them).
    """
    cfg = run.config.latent
    gen = run.generator
    for p in gen.parameters():  # type: ignore[attr-defined]
        p.requires_grad_(False)  # only the latent (and optionally noise) is optimised here
    with torch.no_grad():
        w_avg = gen.mean_latent(run.camera, num_samples=cfg.mean_samples, seed=cfg.mean_seed)
        w_std = float(gen.latent_std(run.camera, num_samples=cfg.mean_samples, seed=cfg.mean_seed).mean())
    var = (w_avg[:, :1] if cfg.space == "w" else w_avg).detach().clone().requires_grad_(True)
    noise = list(gen.noise_buffers()) if cfg.optimize_noise else []
    originals = [b.detach().clone() for b in noise]
    with torch.no_grad():
        for b in noise:
            b.copy_(torch.randn(b.shape, generator=run.rng).to(b))
    for b in noise:
        b.requires_grad_(True)
    groups: list[dict[str, Any]] = [{"params": [var, *noise], "lr_scale": 1.0}]
    base_camera = run.camera
    cam_offset = torch.zeros(2, device=var.device, requires_grad=True)  # (yaw, pitch), pre-tanh
    if cfg.refine_camera:
        groups.append({"params": [cam_offset], "lr_scale": cfg.camera_lr / cfg.lr})
    opt = torch.optim.Adam(groups, lr=cfg.lr, betas=(0.9, 0.999))
    start = 0
    if resume is not None and resume.get("stage") == "latent":
        with torch.no_grad():
            var.copy_(resume["latent_var"].to(var))
            for b, saved in zip(noise, resume.get("latent_noise", [])):
                b.copy_(saved.to(b))
            if "camera_offset" in resume:
                cam_offset.copy_(resume["camera_offset"].to(cam_offset))
        opt.load_state_dict(resume["latent_opt"])
        start = int(resume["step"])

    def refined_camera() -> torch.Tensor:
        off = cfg.camera_max_offset * torch.tanh(cam_offset)
        return rotate_camera(base_camera, off[0], off[1])
    emit(run.callbacks, StageStarted(stage="latent", num_steps=cfg.steps, start_step=start))
    stage_start = time.perf_counter()

    def state() -> dict[str, Any]:
        return {
            "stage": "latent",
            "latent_var": var.detach().cpu(),
            "latent_noise": [b.detach().cpu() for b in noise],
            "latent_opt": opt.state_dict(),
            "camera_offset": cam_offset.detach().cpu(),
        }

    for step in range(start, cfg.steps):
        t0 = time.perf_counter()
        t = step / cfg.steps
        lr = projector_lr(t, peak=cfg.lr, rampup=cfg.lr_rampup, rampdown=cfg.lr_rampdown)
        for group in opt.param_groups:
            group["lr"] = lr * group["lr_scale"]
        if cfg.refine_camera:
            run.camera = refined_camera()
        sigma = latent_noise_scale(t, w_std=w_std, strength=cfg.noise_strength, ramp=cfg.noise_ramp)
        perturbed = var + sigma * torch.randn(var.shape, generator=run.rng).to(var) if sigma > 0 else var
        ws = perturbed.expand(-1, gen.num_ws, -1)
        main, terms = render_step(run, "latent", step, cfg.steps, ws)
        pred = from_model_range(main.image[:, 0])
        terms["rec/perceptual"] = cfg.perceptual_weight * run.objective.perceptual(pred, run.target).mean()
        if cfg.mse_weight > 0:
            terms["rec/mse"] = cfg.mse_weight * run.objective.mse(pred, run.target).mean()
        if noise:
            terms["noise_reg"] = cfg.noise_reg_weight * noise_regularizer(noise)
        loss = sum_terms(terms)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _normalize_(noise)
        terms["total"] = loss
        if cfg.refine_camera:
            off = cfg.camera_max_offset * torch.tanh(cam_offset.detach())
            terms["camera/_dyaw"], terms["camera/_dpitch"] = off[0], off[1]
        run.log_step("latent", step, cfg.steps, terms, lr, t0)
        run.maybe_checkpoint("latent", step + 1, cfg.steps, lambda: {**state(), "step": step + 1})

    with torch.no_grad():
        for b, orig in zip(noise, originals):
            b.requires_grad_(False)
            b.copy_(orig)
        run.camera = refined_camera().detach() if cfg.refine_camera else base_camera
    emit(run.callbacks, StageFinished(stage="latent", steps_run=max(0, cfg.steps - start), early_stopped=False, seconds=time.perf_counter() - stage_start))
    return var.detach().expand(-1, gen.num_ws, -1).clone()
