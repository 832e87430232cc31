import importlib.metadata
import sys
import types

import pytest

from sym3d.errors import (
    MissingDependencyError,
    PluginConflictError,
    PluginLoadError,
    PluginNotFoundError,
)
from sym3d.hookspecs import hookimpl
from sym3d.plugins import build_registry, get_plugin_manager


class FakeDist:
    """The two attributes of importlib.metadata.Distribution that discovery reads."""

    def __init__(self, name: str, version: str) -> None:
        self.name, self.version = name, version


def _module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    for k, v in attrs.items():
        setattr(mod, k, v)
    return mod


@pytest.fixture
def fake_plugins(monkeypatch):
    """Install fake plugin modules and return synthetic entry points for them."""

    @hookimpl
    def register_generators(register):
        register("good-gen", lambda **kw: ("built", kw), description="a good generator")

    @hookimpl
    def register_generators_dup(register):
        register("good-gen", lambda **kw: None)

    @hookimpl
    def register_genrators(register):  # misspelled hook name
        register("typo-gen", lambda **kw: None)

    @hookimpl
    def register_needs(register):
        register(
            "needs-gen",
            lambda **kw: None,
            requires=("definitely_not_installed_mod",),
            extra="faces",
        )

    good = _module("fake_good", register_generators=register_generators)
    dup = _module("fake_dup")
    dup.register_generators = register_generators_dup
    typo = _module("fake_typo", register_genrators=register_genrators)
    needs = _module("fake_needs")
    needs.register_generators = register_needs
    for m in (good, dup, typo, needs):
        monkeypatch.setitem(sys.modules, m.__name__, m)

    def ep(name, module):
        return importlib.metadata.EntryPoint(name=name, value=module, group="sym3d")

    return {
        "good": ep("good", "fake_good"),
        "dup": ep("dup", "fake_dup"),
        "typo": ep("typo", "fake_typo"),
        "needs": ep("needs", "fake_needs"),
        "broken": ep("broken", "fake_module_that_does_not_exist"),
    }


def test_good_plugin_registers_with_metadata(fake_plugins):
    pm = get_plugin_manager(entry_points=[fake_plugins["good"]])
    reg = build_registry(pm)
    spec = reg.get("generator", "good-gen")
    assert spec.plugin == "good" and spec.description == "a good generator"
    assert reg.build("generator", "good-gen", x=1) == ("built", {"x": 1})
    assert "tiny" in reg.names("generator")  # built-ins are a plugin too


def test_broken_plugin_is_reported_and_skipped(fake_plugins, monkeypatch):
    monkeypatch.delenv("SYM3D_STRICT_PLUGINS", raising=False)
    pm = get_plugin_manager(entry_points=[fake_plugins["broken"], fake_plugins["good"]])
    assert [b.name for b in pm.broken] == ["broken"]
    assert "fake_module_that_does_not_exist" in pm.broken[0].error
    assert "good-gen" in build_registry(pm).names("generator")


def test_strict_mode_raises(fake_plugins, monkeypatch):
    monkeypatch.setenv("SYM3D_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="broken"):
        get_plugin_manager(entry_points=[fake_plugins["broken"]])


def test_misspelled_hook_is_caught_by_check_pending(fake_plugins, monkeypatch):
    monkeypatch.delenv("SYM3D_STRICT_PLUGINS", raising=False)
    pm = get_plugin_manager(entry_points=[fake_plugins["typo"], fake_plugins["good"]])
    assert [b.name for b in pm.broken] == ["typo"]
    assert "register_genrators" in pm.broken[0].error
    assert "did you mean 'register_generators'?" in pm.broken[0].error
    assert "typo-gen" not in build_registry(pm).names("generator")


def test_duplicate_names_are_reported_naming_both_and_first_is_kept(fake_plugins, monkeypatch):
    monkeypatch.delenv("SYM3D_STRICT_PLUGINS", raising=False)
    pm = get_plugin_manager(entry_points=[fake_plugins["good"], fake_plugins["dup"]])
    reg = build_registry(pm)
    assert reg.get("generator", "good-gen").plugin == "good"
    [broken] = pm.broken
    assert broken.name == "dup" and broken.component == "generator 'good-gen'"
    assert "'good'" in broken.error and "'dup'" in broken.error
    build_registry(pm)  # building again does not report it twice
    assert len(pm.broken) == 1


def test_duplicate_names_raise_in_strict_mode(fake_plugins, monkeypatch):
    monkeypatch.setenv("SYM3D_STRICT_PLUGINS", "1")
    pm = get_plugin_manager(entry_points=[fake_plugins["good"], fake_plugins["dup"]])
    with pytest.raises(PluginConflictError) as info:
        build_registry(pm)
    assert "'good'" in str(info.value) and "'dup'" in str(info.value)


def test_unknown_name_lists_available_and_closest(fake_plugins):
    reg = build_registry(get_plugin_manager(entry_points=[fake_plugins["good"]]))
    with pytest.raises(PluginNotFoundError) as info:
        reg.get("generator", "good-gne")
    err = info.value
    assert "good-gen" in err.available and err.suggestions[0] == "good-gen"
    assert "did you mean 'good-gen'" in str(err)
    assert not isinstance(err, KeyError)


def test_missing_requirement_names_extra(fake_plugins):
    reg = build_registry(get_plugin_manager(entry_points=[fake_plugins["needs"]]))
    spec = reg.get("generator", "needs-gen")
    assert not spec.available
    with pytest.raises(MissingDependencyError, match=r"sym3d\[faces\]"):
        reg.build("generator", "needs-gen")


def test_missing_requirement_of_third_party_names_its_distribution(fake_plugins):
    ep = fake_plugins["needs"]
    vars(ep).update(dist=FakeDist("acme-gan", "2.1"))
    reg = build_registry(get_plugin_manager(entry_points=[ep]))
    with pytest.raises(MissingDependencyError) as info:
        reg.build("generator", "needs-gen")
    assert "pip install 'acme-gan[faces]'" in str(info.value) and "sym3d[" not in str(info.value)
    assert "definitely_not_installed_mod" in str(info.value)


def test_autoload_switches(fake_plugins, monkeypatch):
    monkeypatch.setenv("SYM3D_DISABLE_PLUGIN_AUTOLOAD", "1")
    pm = get_plugin_manager(entry_points=[fake_plugins["good"]])
    assert "good-gen" not in build_registry(pm).names("generator")
    monkeypatch.delenv("SYM3D_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("SYM3D_LOAD_PLUGINS", "needs")
    pm = get_plugin_manager(entry_points=[fake_plugins["good"], fake_plugins["needs"]])
    names = build_registry(pm).names("generator")
    assert "needs-gen" in names and "good-gen" not in names


def test_installed_plugins_load():
    pm = get_plugin_manager()
    names = {p.name for p in pm.loaded}
    assert {"sym3d", "eg3d", "symheads", "lpips", "mediapipe", "benchmarks"} <= names
    assert not pm.broken, pm.broken
