"""One truthiness for every on/off environment variable (``sym3d.env``) and its callers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import sym3d.cli.main  # noqa: F401  (loads the module for cli_main below)
from sym3d import checks, plugins
from sym3d.env import env_flag

cli_main = sys.modules["sym3d.cli.main"]  # the package re-exports main() under the same name

OFF = ["", "0", "false", "False", "FALSE", "no", "No", "off", "OFF", " false ", " 0"]
ON = ["1", "true", "True", "yes", "on", "2", "debug"]


@pytest.mark.parametrize("raw", OFF)
def test_off_values(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("SYM3D_TEST_FLAG", raw)
    assert env_flag("SYM3D_TEST_FLAG") is False
    assert env_flag("SYM3D_TEST_FLAG", default=True) is False


@pytest.mark.parametrize("raw", ON)
def test_on_values(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("SYM3D_TEST_FLAG", raw)
    assert env_flag("SYM3D_TEST_FLAG") is True
    assert env_flag("SYM3D_TEST_FLAG", default=False) is True


def test_unset_takes_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYM3D_TEST_FLAG", raising=False)
    assert env_flag("SYM3D_TEST_FLAG") is False
    assert env_flag("SYM3D_TEST_FLAG", default=True) is True


@pytest.mark.parametrize(
    ("raw", "on"), [("no", False), ("off", False), ("False", False), ("yes", True)]
)
def test_callers_share_the_truthiness(monkeypatch: pytest.MonkeyPatch, raw: str, on: bool) -> None:
    """SYM3D_DEBUG, SYM3D_CHECKS and SYM3D_STRICT_PLUGINS read the same table."""
    monkeypatch.setenv("SYM3D_DEBUG", raw)
    monkeypatch.setenv("SYM3D_CHECKS", raw)
    monkeypatch.setenv("SYM3D_STRICT_PLUGINS", raw)
    assert cli_main._debug_requested([]) is on
    assert checks.checks_enabled() is on
    assert plugins._strict() is on


def test_checks_default_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYM3D_CHECKS", raising=False)
    assert checks.checks_enabled() is True


def _run(env_debug: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYM3D_DEBUG": env_debug}
    args = [sys.executable, "-m", "sym3d.cli.main", "bench", "engine", "--generator", "no-such-gan"]
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)


def test_debug_false_prints_no_traceback() -> None:
    """``SYM3D_DEBUG=false sym3d ...``: a user mistake is one line and exit 2 (was a traceback)."""
    r = _run("false")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert "unknown generator 'no-such-gan'" in r.stderr


def test_debug_on_prints_traceback() -> None:
    r = _run("yes")
    assert r.returncode == 1
    assert "Traceback" in r.stderr and "PluginNotFoundError" in r.stderr
