"""State shared by the two stages of one inversion, and the step that renders all views at once."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from sym3d.config import InversionConfig
from sym3d.engine.checkpoint import save_checkpoint
from sym3d.engine.events import Callback, CheckpointSaved, StepFinished, emit
from sym3d.engine.objective import Objective
from sym3d.protocols import FaceObservation, Generator3D, Prior, PriorContext, PriorViews, RenderOutput

__all__ = ["Run", "render_step", "sum_terms"]


@attrs.define(eq=False)
class Run:
    """Everything the stages share (engine-internal).

    Attributes:
        generator: the working copy that is optimised (the caller's generator is never modified).
        reference: the frozen pretrained generator (for the depth regulariser), or ``None``.
        target: ``[1, 3, H, W]`` input image in ``[0, 1]`` at the generator's resolution.
        camera: ``[1, 25]`` input camera.
        observation: masks and regions at the generator's resolution, when known.
        rng: the CPU random generator of every random draw (saved in checkpoints).
        history: logged terms per step.
        fingerprint: identifies the inputs, to refuse resuming a different run.
    """

    generator: Generator3D
    reference: Generator3D | None
    target: torch.Tensor
    camera: torch.Tensor
    observation: FaceObservation | None
    config: InversionConfig
    objective: Objective
    priors: Sequence[Prior]
    rng: torch.Generator
    callbacks: Sequence[Callback]
    checkpoint_dir: Path | None
    fingerprint: str
    history: list[dict[str, Any]] = attrs.field(factory=list)
    checkpoint_state: dict[str, Any] = attrs.field(factory=dict)

    @property
    def device(self) -> torch.device:
        """Device of the target image (and of the generator)."""
        return self.target.device

    def context(self, stage: str, step: int, num_steps: int, ws: torch.Tensor, render: RenderOutput | None = None) -> PriorContext:
        """The :class:`PriorContext` of one step."""
        return PriorContext(
            stage=stage,  # type: ignore[arg-type]
            step=step,
            num_steps=num_steps,
            generator=self.generator,
            reference=self.reference,
            ws=ws,
            target=self.target,
            camera=self.camera,
            observation=self.observation,
            render=render,
            rng=self.rng,
        )

    def log_step(self, stage: str, step: int, num_steps: int, terms: Mapping[str, torch.Tensor], lr: float, started: float) -> dict[str, float]:
        """Record the step's terms (one host sync for all of them) and emit :class:`StepFinished`."""
        names = list(terms)
        values = torch.stack([terms[n].detach().float().reshape(()) for n in names]).cpu().tolist() if names else []
        losses = dict(zip(names, values))
        seconds = time.perf_counter() - started
        self.history.append({"stage": stage, "step": step, "lr": lr, "seconds": seconds, **losses})
        emit(self.callbacks, StepFinished(stage=stage, step=step, num_steps=num_steps, losses=losses, lr=lr, seconds=seconds))
        return losses

    def maybe_checkpoint(self, stage: str, next_step: int, num_steps: int, make_state: Callable[[], dict[str, Any]], *, force: bool = False) -> None:
        """Save a resumable checkpoint every ``config.checkpoint_every`` steps (or when ``force``)."""
        if self.checkpoint_dir is None:
            return
        every = self.config.checkpoint_every
        due = force or (every > 0 and next_step % every == 0 and next_step < num_steps)
        if not due:
            return
        state = {
            "fingerprint": self.fingerprint,
            "rng": self.rng.get_state(),
            "history": list(self.history),
            **self.checkpoint_state,
            **make_state(),
        }
        path = save_checkpoint(self.checkpoint_dir, state)
        emit(self.callbacks, CheckpointSaved(path=str(path), stage=stage, step=next_step))


def sum_terms(terms: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Sum of the optimised terms (names whose last part starts with ``_`` are diagnostics)."""
    total: torch.Tensor | None = None
    for name, value in terms.items():
        if name.rsplit("/", 1)[-1].startswith("_"):
            continue
        total = value if total is None else total + value
    if total is None:
        raise RuntimeError("no loss term to optimise")
    return total


def render_step(run: Run, stage: str, step: int, num_steps: int, ws: torch.Tensor) -> tuple[RenderOutput, dict[str, torch.Tensor]]:
    """Render the input view and every view the active priors ask for in **one** call, then run the priors.

    Returns:
        the input-view render ``[1, 1, ...]`` and the priors' terms named ``"<prior>/<term>"``.
    """
    base = run.context(stage, step, num_steps, ws)
    active = [p for p in run.priors if stage in p.stages and step % p.every == 0]
    requests: list[torch.Tensor | None] = []
    for prior in active:
        cams = prior.views(base)
        if cams is not None:
            cams = cams.reshape(-1, 25).to(run.camera)
        requests.append(cams)
    cameras = torch.cat([run.camera] + [c for c in requests if c is not None], dim=0)[None]
    out = run.generator.render(ws, cameras, generator=run.rng)
    main = out.view(0)
    ctx = attrs.evolve(base, render=main)
    terms: dict[str, torch.Tensor] = {}
    offset = 1
    for prior, cams in zip(active, requests):
        views = None
        if cams is not None:
            n = cams.shape[0]
            views = PriorViews(cameras=cameras[:, offset : offset + n], render=out.views(offset, offset + n))
            offset += n
        for key, value in prior(ctx, views).items():
            terms[f"{prior.name}/{key}"] = value
    return main, terms
