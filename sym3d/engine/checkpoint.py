"""Resumable run checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint is one ``torch.save`` file written atomically (temp file, then rename) holding the
stage, the step, the optimised tensors and optimizer states, the random generator state, the loss
history and a fingerprint of the inputs. Resuming with different inputs is refused.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from sym3d.atomic import atomic_path
from sym3d.errors import UserInputError

__all__ = ["fingerprint", "save_checkpoint", "load_checkpoint", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "run_state.pt"


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


def save_checkpoint(directory: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``directory/run_state.pt`` atomically."""
    path = Path(directory) / CHECKPOINT_NAME
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(directory: str | os.PathLike, expected_fingerprint: str) -> dict[str, Any] | None:
    """Load the checkpoint in ``directory`` if there is one.

    Raises:
        UserInputError: the checkpoint belongs to a run with other inputs or settings.
    """
    path = Path(directory) / CHECKPOINT_NAME
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)  # never executes code from the file
    if state.get("fingerprint") != expected_fingerprint:
        raise UserInputError(
            f"{path}: this checkpoint belongs to a different run (other image, camera, generator or settings).",
            hint="use another output folder, or delete the checkpoint to start over.",
        )
    return state
