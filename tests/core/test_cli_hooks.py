"""The ``register_commands(app, bench)`` hook: plugins extend the objects they are handed."""

from __future__ import annotations

import importlib.metadata
import sys
import types

import pytest
import typer
from typer.testing import CliRunner

from sym3d import plugins
from sym3d.cli import bench_cmd
from sym3d.cli.app import build_app
from sym3d.hookspecs import DoctorCheck, hookimpl


def _group(app: typer.Typer, name: str) -> typer.Typer:
    (info,) = [g for g in app.registered_groups if g.name == name]
    return info.typer_instance


def _commands(group: typer.Typer) -> set[str]:
    return {c.name for c in group.registered_commands}


@pytest.fixture
def fake_cli_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two installed plugins: one with the new hook signature, one with the old ``(app)`` only."""

    def hello() -> None:
        typer.echo("hello from the old plugin")

    def bench_fake() -> None:
        typer.echo("fake benchmark ran")

    @hookimpl
    def register_commands_new(app, bench):  # noqa: ANN001, ANN202
        bench.command("fake")(bench_fake)

    @hookimpl
    def register_commands_old(app):  # noqa: ANN001, ANN202
        app.command("hello")(hello)

    new = types.ModuleType("fake_cli_new")
    new.register_commands = register_commands_new
    old = types.ModuleType("fake_cli_old")
    old.register_commands = register_commands_old
    for m in (new, old):
        monkeypatch.setitem(sys.modules, m.__name__, m)
    eps = [
        importlib.metadata.EntryPoint(name=n, value=f"fake_cli_{n}", group="sym3d")
        for n in ("new", "old")
    ]
    pm = plugins.get_plugin_manager(entry_points=eps)
    monkeypatch.setattr(plugins, "default_plugin_manager", lambda: pm)


def test_core_has_no_shared_bench_group() -> None:
    """The bench group is made per app; nothing module-global for plugins to mutate."""
    assert not hasattr(bench_cmd, "bench_app")
    one, two = typer.Typer(), typer.Typer()
    b1, b2 = bench_cmd.register(one), bench_cmd.register(two)
    assert b1 is not b2
    assert _group(one, "bench") is b1 and _commands(b1) == {"engine"}


def test_plugins_extend_the_bench_group_they_are_given(fake_cli_plugins: None) -> None:
    app1, app2 = build_app(), build_app()
    bench1, bench2 = _group(app1, "bench"), _group(app2, "bench")
    assert bench1 is not bench2
    # One "fake" command per app: building the app again does not add a second copy.
    assert _commands(bench1) == _commands(bench2) == {"engine", "fake"}
    runner = CliRunner()
    r = runner.invoke(app1, ["bench", "fake"])
    assert r.exit_code == 0 and "fake benchmark ran" in r.output
    # A plugin written for the old one-argument hook still works.
    r = runner.invoke(app1, ["hello"])
    assert r.exit_code == 0 and "hello from the old plugin" in r.output
    assert not plugins.default_plugin_manager().broken


def test_installed_plugins_mount_their_benchmarks() -> None:
    """eg3d and benchmarks add ``bench eg3d``, ``bench quality``, ``bench batch`` to the app's group."""
    plugins.reset_default_caches()
    try:
        bench = _group(build_app(), "bench")
    finally:
        plugins.reset_default_caches()
    assert {"engine", "eg3d", "quality", "batch"} <= _commands(bench)


def test_doctor_check_lives_with_the_hooks() -> None:
    from sym3d.cli import doctor

    assert doctor.DoctorCheck is DoctorCheck
    assert DoctorCheck("x", True, "found").fix == ""
