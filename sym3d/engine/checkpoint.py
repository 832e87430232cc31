"""The run state: the one thing saved to continue an interrupted inversion exactly.

A :class:`RunState` is written as one ``torch.save`` file, atomically (temp file, then rename),
and read with ``weights_only=True`` (never executes code from the file). Resuming with other
inputs or settings is refused (the fingerprint differs).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
import torch

from sym3d.atomic import atomic_path
from sym3d.errors import CheckpointError, UserInputError

__all__ = [
    "Phase",
    "RunState",
    "fingerprint",
    "save_run_state",
    "load_run_state",
    "CHECKPOINT_NAME",
]

CHECKPOINT_NAME = "run_state.pt"
RUN_STATE_FORMAT = "sym3d-run-state/2"
Phase = Literal["latent", "generator", "done"]
"""The stage a run state continues, or ``"done"``."""


@attrs.frozen(kw_only=True)
class RunState:
    """Where an inversion stands.

    Attributes:
        fingerprint: identifies the inputs and settings (see :func:`fingerprint`).
        stage: the stage to continue (``"latent"``, ``"generator"``) or ``"done"``.
        step: the next step of that stage.
        latent: ``[1, num_ws, w_dim]`` pivot once stage 1 is over, else ``None``.
        camera: ``[1, 25]`` camera of stage 2 (refined when camera refinement is on) once
            stage 1 is over, else ``None``.
        stage_state: the running stage's ``state_dict()`` (its tensors and optimiser state);
            empty at a stage's step 0.
        tuned: the tuned parameters by name when ``stage == "done"``.
        rng: state of the run's random generator.
        history: every logged step so far.
    """

    fingerprint: str
    stage: Phase
    step: int
    latent: torch.Tensor | None = None
    camera: torch.Tensor | None = None
    stage_state: Mapping[str, Any] = attrs.field(factory=dict)
    tuned: Mapping[str, torch.Tensor] = attrs.field(factory=dict)
    rng: torch.Tensor
    history: tuple[Mapping[str, Any], ...] = ()


def fingerprint(*parts: Any) -> str:
    """SHA-256 over tensors (their bytes), strings and other reprs."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            h.update(part.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        else:
            h.update(repr(part).encode())
        h.update(b"|")
    return h.hexdigest()


def save_run_state(directory: str | os.PathLike, state: RunState) -> Path:
    """Write ``state`` to ``directory/run_state.pt`` atomically."""
    path = Path(directory) / CHECKPOINT_NAME
    data = {f.name: getattr(state, f.name) for f in attrs.fields(RunState)}
    data.update(
        format=RUN_STATE_FORMAT,
        history=list(state.history),
        stage_state=dict(state.stage_state),
        tuned=dict(state.tuned),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(data, tmp)
    return path


def load_run_state(directory: str | os.PathLike, expected_fingerprint: str) -> RunState | None:
    """The run state in ``directory``, or ``None`` when there is none.

    Raises:
        UserInputError: the state belongs to a run with other inputs or settings.
        CheckpointError: the file is unreadable or not a run state of this version.
    """
    from sym3d.files import check_regular_file

    path = Path(directory) / CHECKPOINT_NAME
    if not path.exists():
        return None
    check_regular_file(path, "a run state")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(  # torch's own text advises weights_only=False: never relay it
            f"{path}: the resumable checkpoint of this run cannot be read ({type(exc).__name__}); it is "
            "damaged or was not written by this sym3d.",
            hint="run again with --no-resume (resume=False) to start over, or delete it.",
        ) from None
    if not isinstance(data, dict) or data.get("format") != RUN_STATE_FORMAT:
        raise CheckpointError(
            f"{path}: not a run state of this sym3d version.",
            hint="delete it to start the run over.",
        )
    if data.get("fingerprint") != expected_fingerprint:
        raise UserInputError(
            f"{path}: this checkpoint belongs to a different run "
            "(other image, camera, generator or settings).",
            hint="use another output folder, or delete the checkpoint to start over.",
        )
    data.pop("format")
    data["history"] = tuple(data["history"])
    try:
        return RunState(**data)
    except TypeError as exc:
        raise CheckpointError(f"{path}: malformed run state ({exc}).") from None
