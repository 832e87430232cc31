"""Fixtures for the EG3D plugin tests.

The value fixtures were made by running the official EG3D code (see
``<fixtures>/README.md``). Their directory is ``$SYM3D_EG3D_FIXTURES`` or, by default,
``<repo>/../shared/fixtures/eg3d``; tests that need a missing file are skipped with the path.

Parity checks go through the ``parity`` fixture, which records the max abs error of every
comparison; the table is printed at the end of the run (and written as JSON to
``$SYM3D_PARITY_REPORT`` when that is set).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

PARITY_ATOL = 1e-4


def fixture_dir() -> Path:
    """Directory of the EG3D fixtures (see :func:`tests.conftest.eg3d_fixture_dir`)."""
    from tests.conftest import eg3d_fixture_dir

    return eg3d_fixture_dir()


def fixture_path(name: str) -> Path:
    """Path of one fixture file; skips the calling test when it is missing."""
    path = fixture_dir() / name
    if not path.exists():
        pytest.skip(f"EG3D fixture {path} not found (set SYM3D_EG3D_FIXTURES)")
    return path


def load_values(name: str) -> dict:
    """Load a ``torch.save`` value fixture safely (tensors, numbers, strings, containers only)."""
    return torch.load(fixture_path(name), weights_only=True, map_location="cpu")


@pytest.fixture(scope="module")
def small_fixture() -> dict:
    """``eg3d_small.pt``: SMALL config (2X SR, 128 px), loaded once per test module."""
    return load_values("eg3d_small.pt")


@pytest.fixture(scope="module")
def sr512_fixture() -> dict:
    """``eg3d_sr512_8xdc.pt``: 8XDC SR at 512 px behind a small backbone."""
    return load_values("eg3d_sr512_8xdc.pt")


@pytest.fixture(scope="module")
def ffhq512_keys() -> dict:
    """``eg3d_ffhq512_keys.json``: structure (no values) of the full ffhq512-128 generator.

    This 46 KB file (made with the official code) is also kept in ``tests/eg3d/data`` so the
    structure test runs where the large value fixtures are absent.
    """
    local = Path(__file__).resolve().parent / "data" / "eg3d_ffhq512_keys.json"
    return json.loads(local.read_text())


@pytest.fixture(scope="session")
def eg3d_small_pkl() -> Path:
    """The persistence-like snapshot of the SMALL generator (``eg3d_small_persistence_like.pkl``)."""
    return fixture_path("eg3d_small_persistence_like.pkl")


# ---------------------------------------------------------------------------------------------
# Parity recording
# ---------------------------------------------------------------------------------------------


class ParityRecorder:
    """Compares outputs with reference values and remembers the max abs error of each."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, float]] = {}

    def check(
        self, name: str, actual: torch.Tensor, expected: torch.Tensor, atol: float = PARITY_ATOL
    ) -> float:
        """Assert ``max|actual - expected| <= atol`` (same shape); record and return the error."""
        assert tuple(actual.shape) == tuple(expected.shape), (
            f"{name}: shape {list(actual.shape)} != reference {list(expected.shape)}"
        )
        err = (actual.detach().double().cpu() - expected.double()).abs().max().item() if actual.numel() else 0.0
        self.records[name] = {"max_abs_err": err, "atol": atol}
        assert err <= atol, f"{name}: max abs error {err:.3g} > {atol:g}"
        return err

    def check_sum(self, name: str, actual: torch.Tensor, expected: torch.Tensor, numel: int) -> float:
        """Compare float64 per-channel sums of ``numel`` values each.

        The tolerance is ``PARITY_ATOL * numel``: what ``numel`` element errors of at most
        ``PARITY_ATOL`` can add up to. Records the raw error.
        """
        atol = PARITY_ATOL * numel
        return self.check(name, actual, expected, atol=atol)


_PARITY_KEY = pytest.StashKey[ParityRecorder]()


@pytest.fixture(scope="session")
def parity(request: pytest.FixtureRequest) -> ParityRecorder:
    """The session's :class:`ParityRecorder`."""
    stash = request.config.stash
    if _PARITY_KEY not in stash:
        stash[_PARITY_KEY] = ParityRecorder()
    return stash[_PARITY_KEY]


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    recorder = config.stash.get(_PARITY_KEY, None)
    if recorder is None or not recorder.records:
        return
    tr = terminalreporter
    tr.section("EG3D parity (max abs error vs official)")
    width = max(len(k) for k in recorder.records)
    for name, rec in recorder.records.items():
        tr.write_line(f"{name:<{width}}  {rec['max_abs_err']:.3e}  (atol {rec['atol']:.1e})")
    out = os.environ.get("SYM3D_PARITY_REPORT")
    if out:
        Path(out).write_text(json.dumps(recorder.records, indent=1))
