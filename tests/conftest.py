"""Shared fixtures: EG3D reference fixtures (made with the official code), seeded RNG."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# Tests never write to the user's caches (kernel builds, weights): use a throwaway folder.
if "SYM3D_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["SYM3D_CACHE_DIR"] = tempfile.mkdtemp(prefix="sym3d-test-cache-")


def eg3d_fixture_dir() -> Path:
    """Directory of the EG3D value fixtures made with the official code (too large for git).

    ``SYM3D_EG3D_FIXTURES`` overrides; otherwise ``../shared/fixtures/eg3d`` next to the checkout,
    then ``/work/shared/fixtures/eg3d`` (the workplace's shared folder, for clones elsewhere).
    """
    env = os.environ.get("SYM3D_EG3D_FIXTURES")
    if env:
        return Path(env)
    for candidate in (
        REPO.parent / "shared" / "fixtures" / "eg3d",
        Path("/work/shared/fixtures/eg3d"),
    ):
        if candidate.exists():
            return candidate
    return REPO.parent / "shared" / "fixtures" / "eg3d"


@pytest.fixture(scope="session")
def eg3d_small() -> dict:
    path = eg3d_fixture_dir() / "eg3d_small.pt"
    if not path.exists():
        pytest.skip(f"EG3D fixture {path} not found (set SYM3D_EG3D_FIXTURES)")
    return torch.load(path, weights_only=True)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _terminal_width(monkeypatch):
    """Help texts render at a fixed width whatever terminal (or CI log) runs the tests."""
    monkeypatch.setenv("COLUMNS", "120")
