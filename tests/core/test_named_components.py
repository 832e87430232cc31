"""Priors, generator options and losses by registry name: TOML, overrides, the registry, Python."""

import sys
import types

import pytest
import torch

import sym3d
from sym3d.camera import look_at
from sym3d.config import InversionConfig, PriorSpec, apply_overrides, load_toml, parse_option
from sym3d.errors import ConfigError, PluginNotFoundError
from sym3d.hookspecs import hookimpl
from sym3d.image import from_model_range
from sym3d.plugins import build_registry, get_plugin_manager
from sym3d.priors import build_priors, check_priors
from sym3d.registry import ComponentSpec, Registry
from sym3d.terms import BasePrior
from sym3d.testing import TinyGenerator3D

FAST = [
    "perceptual=mse",
    "perceptual_resize=0",
    "contextual_features=filterbank",
    "tune.num_views=2",
    "tune.aux_every=1",
    "tune.terms.mirror_regions.crop_size=32",
    "latent.steps=2",
    "tune.steps=2",
]

TINY_OPTIONS = ["far", "near", "num_samples", "plane_resolution", "resolution", "seed"]
EXAMPLE = "the example plugin (examples/plugin) is not installed"


class MeanDepthPrior(BasePrior):
    """``scale * mean(depth)`` of the input view, in the latent stage."""

    def __init__(self, scale: float = 1.0, every: int = 1) -> None:
        super().__init__("mean_depth", ("latent",), every=every)
        self.scale = scale

    def __call__(self, ctx, views):
        depth = ctx.render.depth.mean()
        return {"depth": self.scale * depth, "_depth": depth.detach()}


@pytest.fixture(scope="module")
def photo():
    """A tiny-generator view from yaw 0.4: (image [1,3,32,32] in [0,1], camera [1,25])."""
    gen = TinyGenerator3D()
    cam = look_at(0.4, 0.0)[None]
    with torch.no_grad():
        ws = gen.mapping(torch.randn(1, gen.z_dim, generator=torch.Generator().manual_seed(3)), cam)
        img = from_model_range(gen.render(ws, cam[:, None]).image[:, 0]).clamp(0, 1)
    return img, cam


@pytest.fixture
def registry(monkeypatch):
    """The core's built-ins plus a plugin registering ``mean-depth`` with declared options."""

    @hookimpl
    def register_priors(register):
        register("mean-depth", lambda **kw: MeanDepthPrior(**kw), options=("scale", "every"))

    mod = types.ModuleType("fake_named_priors")
    mod.register_priors = register_priors
    monkeypatch.setitem(sys.modules, "fake_named_priors", mod)
    monkeypatch.setenv("SYM3D_DISABLE_PLUGIN_AUTOLOAD", "1")
    return build_registry(get_plugin_manager(plugins=[("named", mod)]))


# ------------------------------------------------------------------------------------ TOML


def test_toml_priors_build_the_example_depth_tv_with_its_options(tmp_path, photo):
    """Before: `unknown setting 'priors'`. The example plugin's prior, from the default registry."""
    pytest.importorskip("sphere_heads", reason=EXAMPLE)
    toml = tmp_path / "run.toml"
    toml.write_text('priors = [{ name = "depth-tv", weight = 0.3, every = 2 }]\n')
    cfg = load_toml(toml)
    assert cfg.priors == (PriorSpec(name="depth-tv", options={"weight": 0.3, "every": 2}),)
    img, cam = photo
    gen = TinyGenerator3D()
    r = sym3d.invert(img, cam, generator=gen, config=toml, overrides=FAST, progress="off")
    first, second = r.history[0], r.history[1]
    assert first["depth_tv/tv"] == pytest.approx(0.3 * first["depth_tv/_tv"], rel=1e-5)
    assert first["depth_tv/_tv"] > 0
    assert "depth_tv/tv" not in second  # every = 2
    assert r.config.priors == cfg.priors  # recorded in config.resolved.toml


def test_toml_priors_with_declared_options_and_result_round_trip(tmp_path, photo, registry):
    toml = tmp_path / "run.toml"
    toml.write_text('priors = [{ name = "mean-depth", scale = 0.5 }]\n')
    img, cam = photo
    r = sym3d.invert(
        img, cam, generator=TinyGenerator3D(), config=toml, overrides=FAST, registry=registry,
        progress="off",
    )  # fmt: skip
    latent = [h for h in r.history if h["stage"] == "latent"]
    tuned = [h for h in r.history if h["stage"] == "generator"]
    assert all(h["mean_depth/depth"] == pytest.approx(0.5 * h["mean_depth/_depth"]) for h in latent)
    assert all("mean_depth/depth" not in h for h in tuned)  # its stages: latent only
    r.save(tmp_path / "res")
    back = sym3d.InversionResult.load(tmp_path / "res")
    assert back.config.priors == (PriorSpec(name="mean-depth", options={"scale": 0.5}),)


def test_toml_prior_with_an_unknown_name_or_option_is_a_config_error(registry):
    cfg = apply_overrides(InversionConfig(), ['priors=[{ name = "mean-dpeth" }]'])
    with pytest.raises(ConfigError, match=r"priors\[0\]: unknown prior 'mean-dpeth'") as exc:
        check_priors(cfg.priors, registry)
    assert exc.value.hint == "did you mean 'mean-depth'?"
    cfg = apply_overrides(InversionConfig(), ['priors=[{ name = "mean-depth", sclae = 2 }]'])
    with pytest.raises(ConfigError, match="prior 'mean-depth' has no option 'sclae'") as exc:
        build_priors(cfg.priors, registry)
    assert "accepted options: every, scale" in str(exc.value)
    assert exc.value.hint == "did you mean 'scale'?"


def test_a_prior_given_twice_is_refused():
    reg = Registry()
    reg.add(ComponentSpec(kind="prior", name="mean-depth", factory=MeanDepthPrior))
    cfg = apply_overrides(InversionConfig(), ['priors=["mean-depth", { name = "mean-depth" }]'])
    with pytest.raises(ConfigError, match="'mean-depth' is given twice"):
        check_priors(cfg.priors, reg)


def test_a_prior_given_twice_to_invert_is_refused(photo):
    """Before: the second one's losses silently replaced the first one's in the objective."""
    img, cam = photo
    with pytest.raises(ConfigError, match="two priors are named 'mean_depth'"):
        sym3d.invert(
            img, cam, generator=TinyGenerator3D(), overrides=FAST, progress="off",
            priors=[MeanDepthPrior(), MeanDepthPrior(2.0)],
        )  # fmt: skip


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("[{ weight = 1 }]", "expected a prior name in key 'name'"),
        ('[{ name = "Depth TV" }]', "prior name 'Depth TV'"),
        ('[{ name = "depth-tv", weight = [1, 2] }]', "option 'weight': expected a string"),
        ('[{ name = "depth-tv", weight = nan }]', "expected a finite number"),
        ('"depth-tv"', "expected an array of tables"),
    ],
)
def test_malformed_priors_name_the_setting(value, problem):
    with pytest.raises(ConfigError, match="config.priors") as exc:
        apply_overrides(InversionConfig(), [f"priors={value}"])
    assert problem in str(exc.value)


# ------------------------------------------------------------------ option parsing (CLI form)


def test_prior_spec_parse_types_values():
    spec = PriorSpec.parse("depth-tv:weight=0.1,every=2,symmetric=true,mode=z,shift=-1e-3")
    assert spec.name == "depth-tv"
    expected = {"weight": 0.1, "every": 2, "symmetric": True, "mode": "z", "shift": -1e-3}
    assert spec.options == expected
    assert type(spec.options["every"]) is int and type(spec.options["weight"]) is float
    assert PriorSpec.parse("depth-tv") == PriorSpec(name="depth-tv")
    assert parse_option(" seed = 7 ", "--generator-option") == ("seed", 7)


@pytest.mark.parametrize(
    "text",
    ["depth-tv:weight", ":weight=1", "depth-tv:", "depth-tv:w=1,w=2", "Depth:w=1", "tv:1w=2"],
)
def test_prior_spec_parse_refuses_bad_syntax(text):
    with pytest.raises(ConfigError, match="--prior"):
        PriorSpec.parse(text)


# ------------------------------------------------------------------------------- registry


def test_accepted_options_come_from_the_declaration_or_the_signature():
    def explicit(*, resolution: int = 32, seed: int = 0):
        return (resolution, seed)

    def passthrough(**options):
        return options

    spec = ComponentSpec(kind="loss", name="a", factory=explicit)
    assert spec.accepted_options() == ["resolution", "seed"]
    assert ComponentSpec(kind="loss", name="b", factory=passthrough).accepted_options() is None
    declared = ComponentSpec(kind="loss", name="c", factory=passthrough, options=["eps"])
    assert declared.accepted_options() == ["eps"]


def test_build_turns_a_refused_option_into_a_config_error_and_keeps_other_type_errors():
    def passthrough(**options):
        return MeanDepthPrior(**options)

    def broken(**options):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")

    reg = Registry()
    reg.add(ComponentSpec(kind="prior", name="p", factory=passthrough))
    reg.add(ComponentSpec(kind="prior", name="q", factory=broken))
    assert reg.build("prior", "p", scale=2.0).scale == 2.0
    with pytest.raises(ConfigError, match="prior 'p' has no option 'scael'"):
        reg.build("prior", "p", scael=2.0)
    with pytest.raises(TypeError, match="unsupported operand"):
        reg.build("prior", "q", scale=1.0)


def test_builtin_tiny_generator_declares_its_constructor_options():
    import inspect

    spec = sym3d.plugins.default_registry().get("generator", "tiny")
    params = inspect.signature(TinyGenerator3D).parameters
    assert spec.accepted_options() == sorted(params)
    with pytest.raises(ConfigError, match="generator 'tiny' has no option 'resolutoin'") as exc:
        sym3d.load_generator("tiny", resolutoin=64)
    assert f"accepted options: {', '.join(TINY_OPTIONS)}" in str(exc.value)


# ---------------------------------------------------------------------------- Python: losses


def test_a_registered_loss_is_built_by_name_without_a_registry():
    """Before: sym3d.losses had no load_loss; a Loss object needed a Registry built by hand."""
    from sym3d.losses import load_loss

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g)
    l1, mse = load_loss("l1"), load_loss("mse")
    composed = 0.5 * l1(x, y, reduction="none") + 2.0 * mse(x, y, reduction="none")
    expected = 0.5 * (x - y).abs().flatten(1).mean(1) + 2.0 * (x - y).square().flatten(1).mean(1)
    torch.testing.assert_close(composed, expected, rtol=1e-5, atol=1e-7)
    with pytest.raises(PluginNotFoundError, match="unknown loss 'l2'"):
        load_loss("l2")


def test_the_example_plugin_loss_is_built_by_name_with_options():
    pytest.importorskip("sphere_heads", reason=EXAMPLE)
    from sphere_heads.terms import CharbonnierLoss

    from sym3d.losses import load_loss

    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(1, 3, 8, 8, generator=g), torch.rand(1, 3, 8, 8, generator=g)
    loss = load_loss("charbonnier", eps=0.1)
    assert loss.eps == 0.1
    torch.testing.assert_close(loss(x, y), CharbonnierLoss(eps=0.1)(x, y))
    with pytest.raises(ConfigError, match="loss 'charbonnier' has no option 'esp'"):
        load_loss("charbonnier", esp=0.1)


def test_plugins_json_lists_declared_options(capsys):
    import json

    from sym3d.cli import main

    assert main(["plugins", "--json"]) == 0
    components = json.loads(capsys.readouterr().out)["components"]
    tiny = next(c for c in components if c["kind"] == "generator" and c["name"] == "tiny")
    assert tiny["options"] == TINY_OPTIONS
