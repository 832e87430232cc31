"""What the stages share, and the step that renders every view of a step in one call."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch

from sym3d.engine.events import Callback, StepFinished, emit
from sym3d.protocols import (
    FaceObservation,
    Generator3D,
    Prior,
    PriorContext,
    PriorViews,
    RenderOutput,
)
from sym3d.terms.base import StageName

__all__ = ["Run", "render_step", "sum_terms"]


@attrs.define(eq=False)
class Run:
    """Everything the stages of one inversion share (engine-internal).

    Attributes:
        generator: the working copy that is optimised (the caller's generator is never modified).
        reference: the frozen pretrained generator (for terms that need it), or ``None``.
        target: ``[1, 3, H, W]`` input image in ``[0, 1]`` at the generator's resolution.
        camera: ``[1, 25]`` input camera (never changed; a refined camera is a stage output).
        observation: masks and regions at the generator's resolution, when known.
        rng: the CPU random generator of every random draw (saved in the run state).
        callbacks: receive the events.
        history: logged terms per step.
    """

    generator: Generator3D
    reference: Generator3D | None
    target: torch.Tensor
    camera: torch.Tensor
    observation: FaceObservation | None
    rng: torch.Generator
    callbacks: Sequence[Callback]
    history: list[dict[str, Any]] = attrs.field(factory=list)

    def log_step(
        self,
        stage: str,
        step: int,
        num_steps: int,
        terms: Mapping[str, torch.Tensor],
        lr: float,
        started: float,
    ) -> dict[str, float]:
        """Record the step's terms (one host sync for all) and emit :class:`StepFinished`."""
        names = list(terms)
        values = [terms[n].detach().float().reshape(()) for n in names]
        losses = dict(zip(names, torch.stack(values).cpu().tolist() if names else [], strict=True))
        seconds = time.perf_counter() - started
        self.history.append({"stage": stage, "step": step, "lr": lr, "seconds": seconds, **losses})
        emit(
            self.callbacks,
            StepFinished(
                stage=stage, step=step, num_steps=num_steps, losses=losses, lr=lr, seconds=seconds
            ),
        )
        return losses


def sum_terms(terms: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Sum of the optimised terms, in order (a last name part starting ``_`` is a diagnostic)."""
    total: torch.Tensor | None = None
    for name, value in terms.items():
        if name.rsplit("/", 1)[-1].startswith("_"):
            continue
        total = value if total is None else total + value
    if total is None:
        raise RuntimeError("no loss term to optimise: enable at least one term of the stage")
    return total


def render_step(
    run: Run,
    stage: StageName,
    step: int,
    num_steps: int,
    terms: Sequence[Prior],
    ws: torch.Tensor,
    camera: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Render the input view and every view the active terms ask for in **one** call, then run them.

    Args:
        terms: the stage's providers, in summation order.
        ws: ``[1, num_ws, w_dim]`` this step's latent; camera: ``[1, 25]`` this stage's camera.

    Returns:
        the terms' values named ``"<term>/<value>"``.
    """
    base = PriorContext(
        stage=stage,
        step=step,
        num_steps=num_steps,
        generator=run.generator,
        reference=run.reference,
        ws=ws,
        target=run.target,
        camera=camera,
        observation=run.observation,
        render=None,
        rng=run.rng,
    )
    active = [p for p in terms if stage in p.stages and step % p.every == 0]
    requests: list[torch.Tensor | None] = []
    for prior in active:
        cams = prior.views(base)
        requests.append(None if cams is None else cams.reshape(-1, 25).to(camera))
    cameras = torch.cat([camera] + [c for c in requests if c is not None], dim=0)[None]
    out: RenderOutput = run.generator.render(ws, cameras, generator=run.rng)
    ctx = attrs.evolve(base, render=out.view(0))
    values: dict[str, torch.Tensor] = {}
    offset = 1
    for prior, cams in zip(active, requests, strict=True):
        views = None
        if cams is not None:
            n = cams.shape[0]
            views = PriorViews(
                cameras=cameras[:, offset : offset + n], render=out.views(offset, offset + n)
            )
            offset += n
        for key, value in prior(ctx, views).items():
            values[f"{prior.name}/{key}"] = value
    return values
