import pytest

from sym3d.config import InversionConfig, apply_overrides, dump_toml, load_toml, structure, unstructure
from sym3d.errors import ConfigError


def test_defaults_are_spi_hyperparameters():
    cfg = InversionConfig()
    assert cfg.latent.steps == 500 and cfg.latent.lr == 0.01 and cfg.latent.space == "w+"
    assert cfg.tune.steps == 1000 and cfg.tune.lr == 3e-4 and cfg.tune.aux_every == 4
    assert cfg.tune.warp.weight == pytest.approx(0.4) and cfg.tune.mirror.weight == pytest.approx(0.02)
    assert cfg.tune.depth_reg.symmetric is True


def test_toml_roundtrip(tmp_path):
    cfg = apply_overrides(InversionConfig(), ["tune.steps=7", "tune.mirror.regions=['mouth']", "latent.space='w'"])
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
