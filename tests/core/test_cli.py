import json
import os
import subprocess
import sys
import textwrap

import pytest

from sym3d.cli import main


def run_cli(*args, env_extra=None, cwd=None):
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "sym3d.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def test_help_and_version(capsys):
    assert main(["--version"]) == 0
    assert "sym3d" in capsys.readouterr().out
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "plugins" in out and "doctor" in out


def test_unknown_command_exits_2_without_traceback():
    r = run_cli("no-such-command")
    assert r.returncode == 2
    assert "No such command" in r.stderr and "Traceback" not in r.stderr


def test_plugins_json_lists_eg3d_and_each_extras_plugin(capsys):
    assert main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    names = {p["name"] for p in data["plugins"]}
    assert {"sym3d", "eg3d", "symheads", "lpips", "mediapipe", "benchmarks"} <= names
    assert any(c["name"] == "tiny" and c["plugin"] == "sym3d" for c in data["components"])


def test_doctor_json(capsys):
    assert main(["doctor", "--json"]) == 0
    checks = json.loads(capsys.readouterr().out)
    torch_check = next(c for c in checks if c["name"] == "torch")
    assert torch_check["ok"] and torch_check["required"]


def test_help_does_not_import_torch():
    code = textwrap.dedent(
        """
        import sys
        from sym3d.cli.app import build_app
        build_app()
        heavy = [m for m in ("torch", "numpy", "mediapipe", "ray") if m in sys.modules]
        print(",".join(heavy))
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"building the CLI imported heavy modules: {r.stdout}"


@pytest.fixture
def broken_plugin_path(tmp_path):
    """A fake installed distribution whose sym3d entry point raises on import."""
    (tmp_path / "evil_plugin.py").write_text(
        "raise RuntimeError('this plugin is broken on purpose')\n"
    )
    dist = tmp_path / "evil_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: evil-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[sym3d]\nevil = evil_plugin\n")
    return tmp_path


def test_broken_plugin_does_not_break_help(broken_plugin_path):
    env = {"PYTHONPATH": str(broken_plugin_path) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = run_cli("--help", env_extra=env)
    assert r.returncode == 0 and "plugins" in r.stdout
    r = run_cli("plugins", "--json", env_extra=env)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert [b["name"] for b in data["broken"]] == ["evil"]
    assert "broken on purpose" in data["broken"][0]["error"]
    r = run_cli("plugins", env_extra={**env, "SYM3D_STRICT_PLUGINS": "1"})
    assert r.returncode == 1 and "broken on purpose" in r.stderr and "Traceback" not in r.stderr
