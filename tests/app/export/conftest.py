"""Fixtures for the export tests: the tiny generator and an inversion result built without running one."""

from __future__ import annotations

import pytest
import torch

from sym3d.camera import look_at
from sym3d.engine.result import InversionResult
from sym3d.image import from_model_range
from sym3d.testing import TinyGenerator3D


@pytest.fixture(scope="session")
def tiny() -> TinyGenerator3D:
    return TinyGenerator3D()


@pytest.fixture(scope="session")
def tiny_ws(tiny: TinyGenerator3D) -> torch.Tensor:
    return tiny.mean_latent(look_at(0.0, 0.0)[None])


def _history() -> tuple[dict, ...]:
    rows = []
    for s in range(12):
        rows.append(
            {
                "stage": "latent",
                "step": s,
                "lr": 0.01 * min(1.0, (s + 1) / 3),
                "seconds": 0.01,
                "rec/perceptual": 0.5 / (s + 1),
                "mirror/perceptual": 0.2 / (s + 1),
                "mirror/_weight": 0.36,
                "total": 0.7 / (s + 1),
            }
        )
    for s in range(9):
        row = {
            "stage": "generator",
            "step": s,
            "lr": 3e-4,
            "seconds": 0.02,
            "rec/mse": 0.01 / (s + 1),
            "total": 0.012 / (s + 1),
        }
        if s % 4 == 0:
            row["warp/perceptual"] = 0.003
            row["warp/_valid"] = 0.7
        rows.append(row)
    return tuple(rows)


@pytest.fixture(scope="session")
def tiny_result(tiny: TinyGenerator3D) -> InversionResult:
    """A result as `sym3d.invert` would return it: latent, a small tuned residual, history, target."""
    cam = look_at(0.35, 0.05)[None]
    g = torch.Generator().manual_seed(1)
    ws = tiny.mapping(torch.randn(1, tiny.z_dim, generator=g), cam)
    planes = torch.randn(tiny.planes.shape, generator=g) * 0.05
    with torch.no_grad():
        target = from_model_range(tiny.render(ws, cam[:, None]).image[:, 0], clamp=True)
    return InversionResult(
        ws=ws,
        camera=cam,
        generator_name="tiny",
        tuned={"planes": planes},
        history=_history(),
        target=target,
        summary={
            "preset": "spi",
            "latent_seconds": 1.5,
            "tune_seconds": 2.5,
            "tune_steps_run": 9,
            "tune_early_stopped": False,
        },
    )
