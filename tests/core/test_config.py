import pytest

from sym3d.config import (
    InversionConfig,
    apply_overrides,
    dump_toml,
    load_toml,
    structure,
    unstructure,
)
from sym3d.errors import ConfigError


def test_defaults_are_spi_hyperparameters():
    cfg = InversionConfig()
    assert cfg.latent.steps == 500 and cfg.latent.lr == 0.01 and cfg.latent.space == "w+"
    assert cfg.tune.steps == 1000 and cfg.tune.lr == 3e-4 and cfg.tune.aux_every == 4
    terms = cfg.tune.terms
    assert terms["warp_views"].weight == pytest.approx(0.4) and terms[
        "mirror_regions"
    ].weight == pytest.approx(0.02)
    assert terms["depth_reg"].symmetric is True
    assert (
        terms["reconstruction"].mse_weight == 1.0 and terms["reconstruction"].mse_range == "model"
    )
    assert cfg.latent.terms["reconstruction"].mse_weight == 0.0 and cfg.mirror_min_yaw == 0.2


def test_toml_roundtrip(tmp_path):
    cfg = apply_overrides(
        InversionConfig(),
        ["tune.steps=7", "tune.terms.mirror_regions.regions=['mouth']", "latent.space='w'"],
    )
    path = tmp_path / "c.toml"
    dump_toml(cfg, path)
    assert load_toml(path) == cfg


def test_toml_partial_file_overrides_base(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[tune]\nsteps = 12\n")
    base = apply_overrides(InversionConfig(), ["latent.steps=3"])
    cfg = load_toml(path, base=base)
    assert cfg.tune.steps == 12 and cfg.latent.steps == 3


def test_errors_are_path_qualified(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[tune]\nsteps = "many"\nbogus = 1\n[latent]\nspace = "z"\n')
    with pytest.raises(ConfigError) as info:
        load_toml(path)
    text = "\n".join(info.value.messages)
    assert "bad.toml.tune.steps" in text and "expected an integer" in text
    assert "bogus" in text and "bad.toml.latent.space" in text


def test_syntax_error_and_missing_file(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text("[tune\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_toml(path)
    with pytest.raises(ConfigError, match="not found"):
        load_toml(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("tune.stepz=3", "did you mean 'tune.steps'"),
        ("tune.steps=true", "expected an integer"),
        ("tune.lr=-1", "'lr' must be > 0.0"),
        ("latent.space=z", "one of"),
        ("tune", "expected the form key.path=value"),
        ("seed.x=1", "is a value, not a section"),
    ],
)
def test_override_errors(override, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(".", r"\.")):
        apply_overrides(InversionConfig(), [override])


def test_override_mapping_and_bare_strings():
    cfg = apply_overrides(InversionConfig(), {"perceptual": "mse", "tune.early_stop": 0})
    assert cfg.perceptual == "mse" and cfg.tune.early_stop == 0.0
    cfg = apply_overrides(InversionConfig(), ["perceptual=lpips-alex"])
    assert cfg.perceptual == "lpips-alex"


def test_structure_rejects_unknown_top_level():
    with pytest.raises(ConfigError, match="unknown keys"):
        structure({**unstructure(InversionConfig()), "nope": 1}, InversionConfig)


def test_deprecated_keys_still_work_with_a_warning(tmp_path):
    with pytest.warns(DeprecationWarning) as caught:
        cfg = apply_overrides(
            InversionConfig(), ["tune.warp.yaw_range=0.3", "tune.mirror.gate_threshold=0.1"]
        )
    messages = [str(w.message) for w in caught]
    assert any("'tune.warp.yaw_range' is deprecated" in m for m in messages)
    assert any(
        "'tune.mirror.gate_threshold' is deprecated; use 'mirror_min_yaw'" in m for m in messages
    )
    assert (
        cfg.tune.terms["warp_views"].yaw_range == 0.3
        and cfg.tune.terms["mirror_regions"].yaw_range == 0.3
    )
    assert cfg.mirror_min_yaw == pytest.approx(0.1)
    # a config.resolved.toml written before the terms were modules still loads, to the same values
    old = tmp_path / "old.toml"
    old.write_text(
        "[latent]\nsteps = 7\nperceptual_weight = 0.5\n[latent.mirror]\nenabled = false\nthreshold = 0.3\n"
        "[tune]\nmse_weight = 2.0\n[tune.warp]\nweight = 0.1\n[tune.mirror]\ncrop_size = 40\n"
        "[tune.depth_reg]\nweight = 100.0\n"
    )
    with pytest.warns(DeprecationWarning):
        cfg = load_toml(old)
    lat, tune = cfg.latent.terms, cfg.tune.terms
    assert (
        cfg.latent.steps == 7
        and not lat["mirror_view"].enabled
        and cfg.mirror_min_yaw == pytest.approx(0.3)
    )
    assert (
        lat["reconstruction"].perceptual_weight == 0.5
        and lat["mirror_view"].perceptual_weight == 0.5
    )
    assert tune["reconstruction"].mse_weight == 2.0 and tune["warp_views"].weight == pytest.approx(
        0.1
    )
    assert tune["mirror_regions"].crop_size == 40 and tune["depth_reg"].weight == 100.0


def test_terms_table_errors():
    with pytest.raises(ConfigError, match="unknown term 'warp_view'"):
        apply_overrides(InversionConfig(), ["tune.terms.warp_view.weight=1"])
    with pytest.raises(ConfigError, match="does not run in the generator stage"):
        apply_overrides(InversionConfig(), ["tune.terms.mirror_view.enabled=true"])
    with pytest.raises(ConfigError, match=r"weight.*must be >= 0.*depth_reg.*config\.tune\.terms"):
        apply_overrides(InversionConfig(), ["tune.terms.depth_reg.weight=-1"])
