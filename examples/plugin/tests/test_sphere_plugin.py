"""The example plugin passes sym3d's conformance suites and inverts a photo of itself."""

import importlib.metadata

import pytest
import torch
from sphere_heads import plugin
from sphere_heads.generator import SphereHeads
from sphere_heads.terms import CharbonnierLoss, DepthTVPrior

import sym3d
from sym3d.camera import look_at
from sym3d.image import from_model_range
from sym3d.plugins import build_registry, get_plugin_manager
from sym3d.testing import CHECKS, run_check
from sym3d.testing.components import check_loss, check_prior


@pytest.fixture(scope="module")
def generator():
    return SphereHeads()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_generator_conformance(generator, check):
    run_check(check, generator)


def test_loss_conformance():
    check_loss(CharbonnierLoss())


def test_prior_conformance():
    check_prior(DepthTVPrior())


@pytest.fixture(scope="module")
def registry():
    """The plugin registered through its hooks (the same path an installed entry point takes)."""
    pm = get_plugin_manager(autoload=False, plugins=[("sphere", plugin)])
    assert not pm.broken, pm.broken
    return build_registry(pm)


def test_hooks_register_every_component(registry):
    assert registry.get("generator", "sphere").plugin == "sphere"
    assert "charbonnier" in registry.names("loss") and "depth-tv" in registry.names("prior")
    assert isinstance(registry.build("generator", "sphere", resolution=16), SphereHeads)


def test_short_inversion_from_python(registry):
    gen = SphereHeads()
    camera = look_at(0.3, 0.05)[None]
    with torch.no_grad():
        ws = gen.mapping(
            torch.randn(1, gen.z_dim, generator=torch.Generator().manual_seed(3)), camera
        )
        photo = from_model_range(gen.render(ws, camera[:, None]).image[:, 0]).clamp(0, 1)
    overrides = [
        "perceptual=charbonnier",
        "perceptual_resize=0",
        "contextual_features=filterbank",
        "tune.num_views=2",
        "tune.terms.mirror_regions.crop_size=32",
        "latent.steps=3",
        "tune.steps=2",
    ]
    result = sym3d.invert(
        photo,
        camera,
        generator="sphere",
        overrides=overrides,
        priors=["depth-tv"],
        registry=registry,
    )
    assert tuple(result.ws.shape) == (1, 3, 16) and torch.isfinite(result.ws).all()
    assert any("depth_tv/tv" in h for h in result.history)


def _installed() -> bool:
    try:
        importlib.metadata.distribution("sym3d-sphere-heads")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(
    not _installed(), reason="examples/plugin is not pip-installed (make install does it)"
)
def test_installed_entry_point_is_discovered():
    pm = get_plugin_manager()
    assert not pm.broken, pm.broken
    info = pm.info("sphere")
    assert info.dist == "sym3d-sphere-heads" and info.version == "0.1.0"
    assert build_registry(pm).get("generator", "sphere").plugin == "sphere"
