"""Six kinds of broken plugin installed at once: each is named, every other plugin keeps working."""

import importlib.metadata
import json
import sys
import types

import pytest
import torch

import sym3d
from sym3d import plugins
from sym3d.camera import look_at
from sym3d.cli import main
from sym3d.hookspecs import hookimpl
from sym3d.testing import TinyGenerator3D

FAST = [
    "perceptual=mse",
    "perceptual_resize=0",
    "contextual_features=filterbank",
    "tune.num_views=2",
    "tune.aux_every=2",
    "tune.terms.mirror_regions.crop_size=32",
    "latent.steps=2",
    "tune.steps=2",
]


class FakeDist:
    """The two attributes of importlib.metadata.Distribution that discovery reads."""

    def __init__(self, name, version):
        self.name, self.version = name, version


class HealthyGenerator(TinyGenerator3D):
    name = "healthy-gen"


def _ep(name, module, dist, version="1.0"):
    ep = importlib.metadata.EntryPoint(name=name, value=module, group="sym3d")
    vars(ep).update(dist=FakeDist(dist, version))
    return ep


@pytest.fixture
def six_broken(monkeypatch, tmp_path):
    """The installed entry points plus a healthy plugin and six broken ones (fake distributions)."""
    monkeypatch.delenv("SYM3D_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("SYM3D_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("SYM3D_DISABLE_PLUGIN_AUTOLOAD", raising=False)

    def module(name, **hooks):
        mod = types.ModuleType(name)
        for k, v in hooks.items():
            setattr(mod, k, v)
        monkeypatch.setitem(sys.modules, name, mod)

    @hookimpl(specname="register_generators")
    def healthy(register):
        register("healthy-gen", lambda **kw: HealthyGenerator(**kw), description="third-party")

    @hookimpl(specname="register_generators")
    def raising(register):
        register("never-seen", lambda **kw: None)
        raise ModuleNotFoundError("No module named 'fancy_cuda_ext'")

    @hookimpl(specname="register_generators")
    def clashing(register):
        register("symheads", lambda **kw: None)
        register("clash-own-gen", lambda **kw: HealthyGenerator(**kw))

    @hookimpl
    def register_genrators(register):
        register("typo-gen", lambda **kw: None)

    @hookimpl(specname="register_generators")
    def impostor(register):
        register("impostor-gen", lambda **kw: None)

    module("fake_healthy", register_generators=healthy)
    module("fake_raising", register_generators=raising)
    module("fake_clashing", register_generators=clashing)
    module("fake_typo", register_genrators=register_genrators)
    module("fake_impostor", register_generators=impostor)
    boom = "raise RuntimeError('eager import of torch_scatter failed')\n"
    (tmp_path / "fake_import_boom.py").write_text(boom)
    monkeypatch.syspath_prepend(str(tmp_path))

    fakes = [
        _ep(
            "symheads", "fake_impostor", "impostor-symheads", "6.6"
        ),  # before the real one on purpose
        _ep("ghost", "no_such_module_for_sym3d_tests", "ghost-dist", "0.1"),
        _ep("boom", "fake_import_boom", "boom-dist", "0.2"),
        _ep("raising", "fake_raising", "raising-dist", "0.3"),
        _ep("clashing", "fake_clashing", "clashing-dist", "0.4"),
        _ep("typo", "fake_typo", "typo-dist", "0.5"),
        _ep("healthy", "fake_healthy", "healthy-dist", "1.2"),
    ]
    installed = plugins._entry_points()
    monkeypatch.setattr(plugins, "_entry_points", lambda: fakes + installed)
    plugins.reset_default_caches()
    yield
    plugins.reset_default_caches()


EXPECTED = {  # plugin -> (distribution, a phrase of its error)
    "symheads": ("impostor-symheads 6.6", "already used by sym3d"),
    "ghost": ("ghost-dist 0.1", "no_such_module_for_sym3d_tests"),
    "boom": ("boom-dist 0.2", "eager import of torch_scatter failed"),
    "raising": ("raising-dist 0.3", "fancy_cuda_ext"),
    "clashing": ("clashing-dist 0.4", "registered twice"),
    "typo": ("typo-dist 0.5", "did you mean 'register_generators'?"),
}


def test_plugins_command_names_each_broken_plugin_and_exits_0(six_broken, capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith(("  plugin", "  generator"))]
    for name, (source, phrase) in EXPECTED.items():
        hits = [ln for ln in lines if f"plugin {name} ({source})" in ln and phrase in ln]
        assert hits, (name, out)
    # the clash names both sides
    clash = next(ln for ln in lines if "clashing" in ln)
    assert "'symheads' (sym3d" in clash and "'clashing' (clashing-dist 0.4)" in clash
    impostor = next(ln for ln in lines if "impostor-symheads" in ln)
    assert "impostor-symheads 6.6" in impostor and "sym3d 0" in impostor


def test_plugins_json_and_registry_keep_every_healthy_component(six_broken, capsys):
    assert main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    broken = {(b["name"], b["dist"]): b for b in data["broken"]}
    for name, (source, phrase) in EXPECTED.items():
        dist, version = source.split()
        record = broken[(name, dist)]
        assert record["version"] == version and phrase in record["error"]
    assert broken[("clashing", "clashing-dist")]["component"] == "generator 'symheads'"
    assert len(data["broken"]) == len(EXPECTED)
    comps = {(c["kind"], c["name"]): c for c in data["components"]}
    assert comps[("generator", "symheads")]["plugin"] == "symheads"
    assert comps[("generator", "symheads")]["dist"] == "sym3d"
    for name in ("tiny", "eg3d", "healthy-gen", "clash-own-gen"):
        assert ("generator", name) in comps
    for name in ("never-seen", "typo-gen", "impostor-gen"):
        assert ("generator", name) not in comps
    assert ("pose", "mediapipe") in comps and ("loss", "lpips-vgg") in comps


def test_doctor_labels_them_broken(six_broken, capsys):
    assert main(["doctor", "--json"]) == 0
    checks = json.loads(capsys.readouterr().out)
    broken = [c for c in checks if c["broken"]]
    assert len(broken) == len(EXPECTED)
    for name, (source, _) in EXPECTED.items():
        assert any(f"plugin {name} ({source})" in c["name"] for c in broken), name
    assert all(not c["ok"] and not c["required"] for c in broken)


def test_doctor_table_says_broken_not_missing(six_broken, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    row = next(ln for ln in out.splitlines() if "plugin ghost" in ln)
    assert "broken" in row and "missing" not in row


def test_invert_command_and_generators_still_work(six_broken, capsys):
    assert main(["invert", "--help"]) == 0  # the core's application commands
    capsys.readouterr()
    reg = plugins.default_registry()
    symheads = sym3d.load_generator("symheads")
    assert symheads.name == "symheads"
    cam = look_at(0.0, 0.0)[None]
    for name in ("tiny", "healthy-gen"):
        gen = sym3d.load_generator(name, registry=reg)
        with torch.no_grad():
            z = torch.randn(1, gen.z_dim, generator=torch.Generator().manual_seed(0))
            ws = gen.mapping(z, cam)
            target = (gen.render(ws, cam[:, None]).image[:, 0] + 1) / 2
        result = sym3d.invert(target.clamp(0, 1), cam, generator=name, overrides=FAST, registry=reg)
        assert torch.isfinite(result.ws).all() and tuple(result.ws.shape) == tuple(ws.shape)


def test_strict_mode_raises_on_the_first_broken_plugin(six_broken, monkeypatch):
    monkeypatch.setenv("SYM3D_STRICT_PLUGINS", "1")
    with pytest.raises(sym3d.errors.PluginError) as info:
        plugins.get_plugin_manager()
    assert "impostor-symheads 6.6" in str(info.value)


# --- sym3d's own plugins: one entry point per concern of sym3d_extras -----------------------

CONCERNS = {  # entry point -> (module, components it registers, hooks it implements, commands)
    "symheads": (
        "sym3d_extras.synthetic.plugin",
        {("generator", "symheads")},
        {"register_generators"},
        set(),
    ),
    "lpips": (
        "sym3d_extras.perceptual.plugin",
        {("loss", "lpips-vgg"), ("loss", "lpips-alex"), ("loss", "features:vgg16")},
        {"register_losses", "doctor_checks"},
        set(),
    ),
    "mediapipe": (
        "sym3d_extras.faces.plugin",
        {("pose", "mediapipe")},
        {"register_pose_estimators", "doctor_checks"},
        set(),
    ),
    "benchmarks": (
        "sym3d_extras.benchmarks.plugin",
        set(),
        {"register_commands"},
        {"demo", "bench quality", "bench batch"},
    ),
}
APP_COMMANDS = {"invert", "render", "edit", "batch", "plugins", "doctor", "bench", "bench engine"}


def _own_entry_points():
    """The entry points declared in pyproject.toml (not the installed metadata, which may lag)."""
    import pathlib

    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    root = pathlib.Path(__file__).resolve().parents[2]
    table = tomllib.loads((root / "pyproject.toml").read_text())["project"]["entry-points"]["sym3d"]
    return [_ep(name, module, "sym3d", sym3d.__version__) for name, module in table.items()]


def _commands(app) -> set[str]:
    import typer.main

    group = typer.main.get_command(app)
    names = set(group.commands)
    names |= {f"bench {n}" for n in group.commands["bench"].commands}
    return names


@pytest.fixture
def own_plugins(monkeypatch):
    """Discovery sees exactly sym3d's own entry points from pyproject.toml."""
    for var in ("SYM3D_STRICT_PLUGINS", "SYM3D_LOAD_PLUGINS", "SYM3D_DISABLE_PLUGIN_AUTOLOAD"):
        monkeypatch.delenv(var, raising=False)
    eps = _own_entry_points()
    monkeypatch.setattr(plugins, "_entry_points", lambda: eps)
    plugins.reset_default_caches()
    yield {ep.name: ep for ep in eps}
    plugins.reset_default_caches()


def test_own_entry_points_are_the_reserved_names(own_plugins):
    assert set(own_plugins) | {"sym3d"} == set(plugins.RESERVED_NAMES)
    for name, (module, *_rest) in CONCERNS.items():
        assert own_plugins[name].value == module


@pytest.mark.parametrize("name", sorted(CONCERNS))
def test_each_extras_entry_point_registers_only_its_own_concern(name, own_plugins, monkeypatch):
    module, components, hooks, commands = CONCERNS[name]
    pm = plugins.get_plugin_manager(entry_points=[own_plugins[name]])
    assert [p.name for p in pm.loaded] == ["sym3d", name] and not pm.broken
    impls = {h.name for h in pm.get_hookcallers(pm.get_plugin(name))}
    assert impls == hooks
    registry = plugins.build_registry(pm)
    own = {(s.kind, s.name) for s in registry.specs() if s.plugin == name}
    assert own == components
    # the commands it adds, and nothing else beyond the core's own
    monkeypatch.setattr(plugins, "_entry_points", lambda: [own_plugins[name]])
    plugins.reset_default_caches()
    from sym3d.cli.app import build_app

    assert _commands(build_app()) - APP_COMMANDS == commands


@pytest.mark.parametrize("name", sorted(CONCERNS))
def test_a_failing_extras_plugin_leaves_the_others_working(name, own_plugins, monkeypatch, capsys):
    module = CONCERNS[name][0]
    monkeypatch.setitem(sys.modules, module, None)  # importing it raises ImportError
    pm = plugins.default_plugin_manager()
    assert [b.name for b in pm.broken] == [name]
    assert module in pm.broken[0].error
    registry = plugins.default_registry()
    have = {(s.kind, s.name) for s in registry.specs()}
    for other, (_, components, _, _) in CONCERNS.items():
        if other == name:
            assert not components & have
        else:
            assert components <= have, other
    from sym3d.cli.app import build_app

    expected = set().union(*(c[3] for n, c in CONCERNS.items() if n != name))
    assert _commands(build_app()) >= APP_COMMANDS | expected
    if name != "symheads":
        assert sym3d.load_generator("symheads").name == "symheads"
    assert main(["invert", "--help"]) == 0 and main(["plugins"]) == 0
    assert f"plugin {name} (sym3d" in capsys.readouterr().out


def test_a_missing_optional_dependency_disables_only_its_components(own_plugins, monkeypatch):
    monkeypatch.setitem(sys.modules, "lpips", None)  # the lpips extra is not installed
    registry = plugins.default_registry()
    assert not plugins.default_plugin_manager().broken
    with pytest.raises(sym3d.errors.MissingDependencyError) as info:
        registry.build("loss", "lpips-vgg")
    assert info.value.extra == "lpips" and "sym3d[lpips]" in info.value.hint
    assert registry.build("generator", "symheads").name == "symheads"
    assert registry.get("pose", "mediapipe").plugin == "mediapipe"
