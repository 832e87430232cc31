"""Shared SymHeads fixtures (module-scoped: the world is deterministic and rendering is the cost)."""

from __future__ import annotations

import pytest
import torch

from sym3d.camera import look_at
from sym3d_extras.synthetic import SymHeadsGenerator


@pytest.fixture(scope="session")
def symheads_gen() -> SymHeadsGenerator:
    return SymHeadsGenerator()


@pytest.fixture(scope="session")
def side_cameras() -> torch.Tensor:
    """``[3, 25]``: frontal-ish and two side views with some pitch."""
    return look_at(torch.tensor([0.35, -0.6, 0.9]), torch.tensor([0.05, -0.1, 0.15]))
