"""Stage 1's parameter set: the latent (W or W+), optionally the noise maps and a camera offset."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from sym3d.camera import rotate_camera
from sym3d.config import LatentStageConfig
from sym3d.engine.schedule import latent_noise_scale, projector_lr
from sym3d.engine.stage import KeepLast, KeepLowest, Never, Stage
from sym3d.generator_base import latent_stats
from sym3d.protocols import Generator3D, Prior

__all__ = ["LatentParams", "latent_stage", "noise_regularizer"]


def noise_regularizer(buffers: list[torch.Tensor]) -> torch.Tensor:
    """StyleGAN2's noise regulariser: squared autocorrelation at shift 1 (x and y).

    Summed over an image pyramid of each map, down to 8x8.

    Args:
        buffers: noise maps ``[..., H, W]``.
    """
    total = buffers[0].new_zeros(())
    for buf in buffers:
        x = buf.reshape(1, 1, *buf.shape[-2:])
        while True:
            total = total + (x * torch.roll(x, 1, dims=3)).mean().square()
            total = total + (x * torch.roll(x, 1, dims=2)).mean().square()
            if x.shape[-1] <= 8:
                break
            x = F.avg_pool2d(x, 2)
    return total


class LatentParams:
    """The latent, started at the generator's mean latent conditioned on the input camera.

    ``W`` mode optimises one vector broadcast to all rows; ``W+`` one per row. A Gaussian
    perturbation whose scale ramps down to 0 is added before each render. Noise buffers are
    optionally optimised (then restored by :meth:`finish`: SPI discards them). With
    ``refine_camera``, bounded yaw/pitch offsets of the input camera are optimised too.
    """

    def __init__(
        self,
        generator: Generator3D,
        camera: torch.Tensor,
        config: LatentStageConfig,
        rng: torch.Generator,
    ) -> None:
        self.config = config
        self.num_ws = generator.num_ws
        self.input_camera = camera
        for p in generator.parameters():
            p.requires_grad_(False)  # only the latent (and optionally noise) is optimised here
        with torch.no_grad():
            w_avg, w_std = latent_stats(
                generator, camera, num_samples=config.mean_samples, seed=config.mean_seed
            )
            self.w_std = float(w_std.mean())
        self.var = (
            (w_avg[:, :1] if config.space == "w" else w_avg).detach().clone().requires_grad_(True)
        )
        self.noise = list(generator.noise_buffers()) if config.optimize_noise else []
        self.originals = [b.detach().clone() for b in self.noise]
        with torch.no_grad():
            for b in self.noise:
                b.copy_(torch.randn(b.shape, generator=rng).to(b))
        for b in self.noise:
            b.requires_grad_(True)
        self.camera_offset = torch.zeros(2, device=self.var.device, requires_grad=True)  # pre-tanh

    def param_groups(self) -> list[dict[str, Any]]:
        """The latent (and noise); the camera offset with ``camera_lr / lr`` when refined."""
        groups: list[dict[str, Any]] = [{"params": [self.var, *self.noise], "lr_scale": 1.0}]
        if self.config.refine_camera:
            groups.append(
                {"params": [self.camera_offset], "lr_scale": self.config.camera_lr / self.config.lr}
            )
        return groups

    def camera(self) -> torch.Tensor:
        """``[1, 25]``: the input camera, rotated by the bounded offsets when refined."""
        if not self.config.refine_camera:
            return self.input_camera
        off = self.config.camera_max_offset * torch.tanh(self.camera_offset)
        return rotate_camera(self.input_camera, off[0], off[1])

    def prepare(self, step: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The perturbed latent of this step and the (refined) camera."""
        c = self.config
        camera = self.camera()
        sigma = latent_noise_scale(
            step / c.steps, w_std=self.w_std, strength=c.noise_strength, ramp=c.noise_ramp
        )
        var = self.var
        perturbed = (
            var + sigma * torch.randn(var.shape, generator=rng).to(var) if sigma > 0 else var
        )
        return perturbed.expand(-1, self.num_ws, -1), camera

    def regularizers(self) -> dict[str, torch.Tensor]:
        """``noise_reg`` when the noise maps are optimised."""
        if not self.noise:
            return {}
        return {"noise_reg": self.config.noise_reg_weight * noise_regularizer(self.noise)}

    def after_update(self) -> None:
        """Re-normalise the noise maps to zero mean, unit variance."""
        with torch.no_grad():
            for buf in self.noise:
                mean = buf.mean()
                std = buf.square().mean().sub(mean.square()).clamp_min(1e-12).sqrt()
                buf.sub_(mean).div_(std)

    def diagnostics(self) -> dict[str, torch.Tensor]:
        """The camera offsets (radians) used this step, when refined."""
        if not self.config.refine_camera:
            return {}
        off = self.config.camera_max_offset * torch.tanh(self.camera_offset.detach())
        return {"camera/_dyaw": off[0], "camera/_dpitch": off[1]}

    def state_dict(self) -> dict[str, Any]:
        """Latent, noise maps and camera offset (CPU copies, never views of the live tensors)."""

        def copy(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to("cpu", copy=True)  # .cpu() alone returns the tensor on the CPU

        return {
            "latent": copy(self.var),
            "noise": [copy(b) for b in self.noise],
            "camera_offset": copy(self.camera_offset),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        with torch.no_grad():
            self.var.copy_(state["latent"].to(self.var))
            for b, saved in zip(self.noise, state["noise"], strict=True):
                b.copy_(saved.to(b))
            self.camera_offset.copy_(state["camera_offset"].to(self.camera_offset))

    def finish(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Restore the noise maps; return the pivot and the camera of stage 2.

        Returns:
            ``ws [1, num_ws, w_dim]`` and the camera ``[1, 25]``, both detached.
        """
        with torch.no_grad():
            for b, orig in zip(self.noise, self.originals, strict=True):
                b.requires_grad_(False)
                b.copy_(orig)
        return self.var.detach().expand(-1, self.num_ws, -1).clone(), self.camera().detach()


def latent_stage(
    generator: Generator3D,
    camera: torch.Tensor,
    config: LatentStageConfig,
    terms: Sequence[Prior],
    rng: torch.Generator,
) -> Stage:
    """Stage 1: the latent with the StyleGAN2 projector's learning-rate schedule, no early stop.

    With ``config.select_by`` the stage ends on the latent of the step where that logged value
    was lowest (:class:`~sym3d.engine.stage.KeepLowest`), else on the last step's.
    """

    def schedule(step: int) -> float:
        t = step / max(config.steps, 1)  # steps=0: no step runs; the optimiser still needs an lr
        return projector_lr(t, peak=config.lr, rampup=config.lr_rampup, rampdown=config.lr_rampdown)

    params = LatentParams(generator, camera, config, rng)
    keep = KeepLowest(config.select_by) if config.select_by else KeepLast()
    return Stage("latent", config.steps, params, schedule, terms, Never(), keep)
