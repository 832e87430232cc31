"""Fixtures for the EG3D plugin tests.

The value fixtures were made by running the official EG3D code (see
``<fixtures>/README.md``). Their directory is ``$SYM3D_EG3D_FIXTURES`` or, by default,
``<repo>/../shared/fixtures/eg3d``; tests that need a missing file are skipped with the path.

Parity checks go through the ``parity`` fixture, which compares with the float32 tolerances
of ``_tolerance.py`` and records the max abs error and error/tolerance of every comparison; the
table, with the CPU's instruction-set flags, is printed at the end of the run (and written as
JSON to ``$SYM3D_PARITY_REPORT`` when that is set).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from ._tolerance import DEPTH_FACTOR, RTOL, ChecksumKind, Comparison, checksum, elementwise


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

# Instruction-set flags that change how float32 kernels accumulate (vector width, FMA, AMX tiles).
CPU_FLAGS_OF_INTEREST = (
    "sse4_2",
    "avx",
    "fma",
    "avx2",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
)


def cpu_description(cpuinfo: str | None = None) -> dict:
    """The CPU facts that decide float32 rounding: model, ISA flags, torch's kernel capability.

    ``cpuinfo`` is the text of ``/proc/cpuinfo`` (read when ``None``; "unknown" where absent).
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    flags = set(fields.get("flags", "").split())
    return {
        "model": fields.get("model name", "unknown"),
        "flags": [f for f in CPU_FLAGS_OF_INTEREST if f in flags],
        "flags_absent": [f for f in CPU_FLAGS_OF_INTEREST if f not in flags] if flags else [],
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


class ParityRecorder:
    """Compares outputs with reference values (rules in ``_tolerance.py``) and records each result."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, float]] = {}

    def _record(self, name: str, result: Comparison) -> float:
        self.records[name] = {
            "max_abs_err": result.max_abs_err,
            "tolerance": result.tolerance,
            "ratio": result.ratio,
        }
        assert result.ok, (
            f"{name}: error {result.ratio:.3g} x the float32 tolerance (max abs error "
            f"{result.max_abs_err:.3g}; bound {result.tolerance:.3g} where the ratio peaks)"
        )
        return result.max_abs_err

    def check(self, name: str, actual: torch.Tensor, expected: torch.Tensor) -> float:
        """Assert ``|actual - expected| <= rtol * (max|expected| + |expected|)`` element-wise."""
        assert tuple(actual.shape) == tuple(expected.shape), (
            f"{name}: shape {list(actual.shape)} != reference {list(expected.shape)}"
        )
        return self._record(name, elementwise(actual, expected))

    def check_sum(
        self,
        name: str,
        actual: torch.Tensor,
        expected: torch.Tensor,
        kind: ChecksumKind,
        abssum: torch.Tensor,
        numel: int,
    ) -> float:
        """Compare float64 per-channel checksums (``kind`` sum, abssum or sqsum) of ``numel`` values.

        ``abssum`` is the reference's per-channel ``sum |r|``, which scales a sum's error.
        """
        assert tuple(actual.shape) == tuple(expected.shape), (
            f"{name}: shape {list(actual.shape)} != reference {list(expected.shape)}"
        )
        return self._record(name, checksum(actual, expected, kind, abssum=abssum, numel=numel))

    def max_ratio_by_group(self) -> dict[str, float]:
        """Largest error/tolerance per fixture (the name's part before ``/``)."""
        out: dict[str, float] = {}
        for name, rec in self.records.items():
            group = name.split("/", 1)[0]
            out[group] = max(out.get(group, 0.0), rec["ratio"])
        return out


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
    cpu = cpu_description()
    tr.section(f"EG3D parity vs official (tolerance: {DEPTH_FACTOR} float32 ulps, rtol {RTOL:.2e})")
    tr.write_line(
        f"cpu: {cpu['model']}; torch {cpu['torch']}, capability "
        f"{cpu['torch_cpu_capability']}, {cpu['threads']} threads"
    )
    tr.write_line(f"cpu flags: {' '.join(cpu['flags']) or 'unknown'}")
    tr.write_line(f"cpu flags absent: {' '.join(cpu['flags_absent']) or '-'}")
    width = max(len(k) for k in recorder.records)
    tr.write_line(f"{'entry':<{width}}  max abs err  tol at peak  err/tol")
    for name, rec in recorder.records.items():
        tr.write_line(
            f"{name:<{width}}  {rec['max_abs_err']:.3e}    {rec['tolerance']:.3e}    {rec['ratio']:.3f}"
        )
    groups = recorder.max_ratio_by_group()
    tr.write_line("max err/tol: " + ", ".join(f"{g} {r:.3f}" for g, r in groups.items()))
    out = os.environ.get("SYM3D_PARITY_REPORT")
    if out:
        report = {
            "cpu": cpu,
            "rtol": RTOL,
            "depth_factor": DEPTH_FACTOR,
            "max_ratio": groups,
            "entries": recorder.records,
        }
        Path(out).write_text(json.dumps(report, indent=1))
