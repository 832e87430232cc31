"""The Makefile's --no-deps installs stay in step with pyproject.toml's pins and extras."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _pyproject() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_no_deps_pins_match_the_extras():
    extras = _pyproject()["project"]["optional-dependencies"]
    make = (ROOT / "Makefile").read_text()
    no_deps = re.search(r"^NO_DEPS := (.+)$", make, re.M).group(1).split()
    assert no_deps, "NO_DEPS is empty"
    pinned = {req for reqs in extras.values() for req in reqs}
    for req in no_deps:
        assert req in pinned, f"Makefile NO_DEPS {req!r} is not pinned like that in pyproject.toml"
    # every extra but the ones replaced by NO_DEPS is installed by make
    line = re.search(r'pip install -e "\.\[([^\]]+)\]"', make).group(1).split(",")
    names = {r.split("==")[0] for r in no_deps}
    replaced = {e for e, reqs in extras.items() if any(r.split("==")[0] in names for r in reqs)}
    assert set(extras) - replaced - {"all"} <= set(line), line
    # the faces extra is mediapipe plus what make installs in its place
    assert "sym3d[faces-runtime]" in extras["faces"]


def test_every_package_data_pattern_matches_a_file():
    """A pattern that matches nothing names a folder that does not exist (was ``presets/*.toml``)."""
    package_data = _pyproject()["tool"]["setuptools"]["package-data"]
    for package, patterns in package_data.items():
        for pattern in patterns:
            assert list((ROOT / package).glob(pattern)), f"{package}: {pattern!r} matches no file"
