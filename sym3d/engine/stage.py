"""The one optimisation loop of both stages.

A :class:`Stage` is a parameter set (what is optimised, and how a step's latent and camera are
made from it), a learning-rate schedule, a typed stop rule, a typed keep rule (which step's
parameters the stage ends on) and a list of terms. Every step renders all the views its terms
need in one call (:func:`sym3d.engine.step.render_step`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs
import torch

from sym3d.engine.events import StageFinished, StageStarted, emit
from sym3d.engine.step import Run, render_step, sum_terms
from sym3d.protocols import Prior
from sym3d.terms.base import StageName
from sym3d.terms.reconstruction import PERCEPTUAL_KEY

__all__ = [
    "ParameterSet",
    "StopRule",
    "Never",
    "PerceptualBelow",
    "KeepRule",
    "KeepLast",
    "KeepLowest",
    "Stage",
    "StageOutcome",
    "run_stage",
]


class ParameterSet(Protocol):
    """What a stage optimises."""

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimiser parameter groups; a group's ``lr_scale`` multiplies the scheduled lr."""
        ...

    def prepare(self, step: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """This step's ``ws [1, num_ws, w_dim]`` and camera ``[1, 25]`` (may draw from ``rng``)."""
        ...

    def regularizers(self) -> dict[str, torch.Tensor]:
        """Terms of the parameters themselves (e.g. ``noise_reg``), summed after the terms."""
        ...

    def after_update(self) -> None:
        """Called after each optimiser step (e.g. re-normalise noise maps)."""
        ...

    def diagnostics(self) -> dict[str, torch.Tensor]:
        """Logged values (names ending in ``/_x``), never optimised."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The optimised tensors (CPU copies)."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        ...


class StopRule(Protocol):
    """Decides after a step's backward pass, before its update, whether the stage ends there."""

    def __call__(self, losses: Mapping[str, float]) -> bool:
        """True to end the stage at this step (its update is not applied)."""
        ...


@attrs.frozen
class Never:
    """Run every step."""

    def __call__(self, losses: Mapping[str, float]) -> bool:
        """Never stop early."""
        return False


@attrs.frozen
class PerceptualBelow:
    """Stop once the reconstruction's unweighted perceptual loss is at most ``threshold``.

    SPI's order: the stopping step is not applied. ``threshold <= 0`` never stops.
    """

    threshold: float

    def __call__(self, losses: Mapping[str, float]) -> bool:
        """True when the step's reconstruction perceptual loss is at most the threshold."""
        value = losses.get(PERCEPTUAL_KEY)
        return self.threshold > 0 and value is not None and value <= self.threshold


class KeepRule(Protocol):
    """Decides which step's parameters a stage ends on (the last step's, or an earlier one)."""

    def observe(self, step: int, losses: Mapping[str, float], params: ParameterSet) -> None:
        """See a step's logged values, before its update (``params`` are those it rendered)."""
        ...

    def restore(self, params: ParameterSet) -> int | None:
        """At the end of the stage: load the kept parameters; the kept step (``None``: the last)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """What a resumed stage needs to keep deciding alike."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        ...


@attrs.define
class KeepLast:
    """End on the last step's parameters (what an optimiser gives)."""

    def observe(self, step: int, losses: Mapping[str, float], params: ParameterSet) -> None:
        """Nothing to track."""

    def restore(self, params: ParameterSet) -> int | None:
        """Keep the parameters as they are."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """No state."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """No state."""


def _copy_state(state: Any) -> Any:
    """A deep copy of a parameter set's ``state_dict()``.

    The protocol asks for copies, but a plugin's parameter set may return views of its live
    tensors (``.cpu()`` of a CPU tensor is one): a kept state must not share their storage.
    """
    if isinstance(state, torch.Tensor):
        return state.detach().clone()
    if isinstance(state, Mapping):
        return {k: _copy_state(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_copy_state(v) for v in state)
    return state


@attrs.define
class KeepLowest:
    """End on the parameters of the step where the logged value ``key`` was lowest.

    Steps that do not log ``key`` (a term that validates every k-th step, or one left out) do
    not count; when no step logged it the stage ends on its last step. Ties keep the earlier
    step. The kept parameters are those the step rendered (before its update).
    """

    key: str
    best: float = math.inf
    step: int = -1
    state: dict[str, Any] | None = None

    def observe(self, step: int, losses: Mapping[str, float], params: ParameterSet) -> None:
        """Remember ``params`` when this step's value is the lowest so far."""
        value = losses.get(self.key)
        if value is not None and math.isfinite(value) and value < self.best:
            self.best, self.step, self.state = value, step, _copy_state(params.state_dict())

    def restore(self, params: ParameterSet) -> int | None:
        """Load the kept parameters (if any step logged the key)."""
        if self.state is None:
            return None
        params.load_state_dict(self.state)
        return self.step

    def state_dict(self) -> dict[str, Any]:
        """The best value, its step and parameters."""
        if self.state is None:
            return {}
        return {"best": self.best, "step": self.step, "state": self.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (empty: nothing kept yet)."""
        if state:
            self.best, self.step = float(state["best"]), int(state["step"])
            self.state = _copy_state(state["state"])


@attrs.define(eq=False)
class Stage:
    """One stage: parameters, schedule, stop and keep rules, terms; owns its Adam optimiser."""

    name: StageName
    num_steps: int
    params: ParameterSet
    schedule: Callable[[int], float]
    terms: Sequence[Prior]
    stop: StopRule = attrs.field(factory=Never)
    keep: KeepRule = attrs.field(factory=KeepLast)
    optimizer: torch.optim.Optimizer = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.optimizer = torch.optim.Adam(self.params.param_groups(), lr=self.schedule(0))

    def state_dict(self) -> dict[str, Any]:
        """The optimised tensors, the optimiser state and the keep rule's state."""
        return {
            "params": self.params.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "keep": self.keep.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (to continue an interrupted stage)."""
        self.params.load_state_dict(state["params"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.keep.load_state_dict(state.get("keep", {}))  # absent in older run states


@attrs.frozen
class StageOutcome:
    """How a stage ended.

    Attributes:
        steps_run: steps run in this call.
        early_stopped: whether the stop rule ended it.
        kept_step: the step whose parameters the keep rule restored (``None``: the last).
    """

    steps_run: int
    early_stopped: bool
    kept_step: int | None = None


def run_stage(
    run: Run, stage: Stage, start: int = 0, checkpoint: Callable[[int], None] | None = None
) -> StageOutcome:
    """Run ``stage`` from step ``start``; ``checkpoint(next_step)`` is called after each update."""
    n = stage.num_steps
    emit(run.callbacks, StageStarted(stage=stage.name, num_steps=n, start_step=start))
    began = time.perf_counter()
    opt = stage.optimizer
    early = False
    step = start
    for step in range(start, n):
        t0 = time.perf_counter()
        lr = stage.schedule(step)
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        ws, camera = stage.params.prepare(step, run.rng)
        terms = render_step(run, stage.name, step, n, stage.terms, ws, camera)
        terms.update(stage.params.regularizers())
        loss = sum_terms(terms)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        terms["total"] = loss
        terms.update(stage.params.diagnostics())
        losses = run.log_step(stage.name, step, n, terms, lr, t0)
        stage.keep.observe(step, losses, stage.params)
        if stage.stop(losses):
            early = True
            break
        opt.step()
        stage.params.after_update()
        if checkpoint is not None:
            checkpoint(step + 1)
    steps_run = (step + 1 - start) if n > start else 0
    kept = stage.keep.restore(stage.params)
    seconds = time.perf_counter() - began
    emit(
        run.callbacks,
        StageFinished(stage=stage.name, steps_run=steps_run, early_stopped=early, seconds=seconds),
    )
    return StageOutcome(steps_run=steps_run, early_stopped=early, kept_step=kept)
