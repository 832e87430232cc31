"""Stage 2's parameter set: the generator's tunable parameters around the frozen pivot latent."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from sym3d.config import TuneStageConfig
from sym3d.engine.stage import PerceptualBelow, Stage
from sym3d.protocols import Generator3D, Prior

__all__ = ["TuneParams", "tune_stage"]


class TuneParams:
    """The parameters of ``scope`` of the working generator (tuned in place); ``ws`` is frozen."""

    def __init__(
        self, generator: Generator3D, ws: torch.Tensor, camera: torch.Tensor, scope: str
    ) -> None:
        self.params = generator.tunable_parameters(scope)
        for p in generator.parameters():
            p.requires_grad_(False)
        for p in self.params.values():
            p.requires_grad_(True)
        self.ws = ws.detach()
        self.camera = camera.detach()

    def param_groups(self) -> list[dict[str, Any]]:
        """One group: every tunable parameter."""
        return [{"params": list(self.params.values())}]

    def prepare(self, step: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The pivot latent and the stage's camera (no randomness)."""
        return self.ws, self.camera

    def regularizers(self) -> dict[str, torch.Tensor]:
        """None."""
        return {}

    def after_update(self) -> None:
        """Nothing to do."""

    def diagnostics(self) -> dict[str, torch.Tensor]:
        """None."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """The tuned parameters by name (CPU copies)."""
        return {n: p.detach().cpu().clone() for n, p in self.params.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        with torch.no_grad():
            for name, value in state.items():
                self.params[name].copy_(value.to(self.params[name]))

    def finish(self) -> dict[str, torch.Tensor]:
        """Freeze the parameters again; return their tuned values (CPU copies)."""
        for p in self.params.values():
            p.requires_grad_(False)
        return self.state_dict()


def tune_stage(
    generator: Generator3D,
    ws: torch.Tensor,
    camera: torch.Tensor,
    config: TuneStageConfig,
    terms: Sequence[Prior],
) -> Stage:
    """Stage 2: constant learning rate, early stop on the reconstruction's perceptual loss."""
    params = TuneParams(generator, ws, camera, config.scope)
    return Stage(
        "generator",
        config.steps,
        params,
        lambda _step: config.lr,
        terms,
        PerceptualBelow(config.early_stop),
    )
