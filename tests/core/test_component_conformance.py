"""The conformance suites for losses, priors and pose estimators, on the built-ins and on bugs."""

import pytest
import torch

from sym3d.camera import look_at
from sym3d.engine.api import resolve_config
from sym3d.engine.runner import build_terms
from sym3d.errors import FaceNotFoundError
from sym3d.plugins import build_registry, get_plugin_manager
from sym3d.protocols import FaceObservation
from sym3d.terms import BasePrior, TermEnv
from sym3d.terms.losses import build_losses
from sym3d.testing import ConformanceError
from sym3d.testing.components import (
    LOSS_CHECKS,
    LossOptions,
    PoseOptions,
    check_loss,
    check_pose_estimator,
    check_prior,
)
from sym3d.testing.conformance import run_checks

FAST = [
    "perceptual=mse",
    "perceptual_resize=0",
    "contextual_features=filterbank",
    "tune.num_views=2",
    "tune.terms.mirror_regions.crop_size=32",
]


@pytest.fixture(scope="module")
def registry():
    return build_registry(get_plugin_manager(autoload=False))


@pytest.mark.parametrize("name", ["mse", "l1", "ssim"])
def test_builtin_losses_pass(registry, name):
    check_loss(registry.build("loss", name))


class MeanIsNotMean:
    """Deliberately wrong: 'mean' is the sum, and the mask is ignored."""

    def __call__(self, pred, target, *, mask=None, reduction="mean"):
        per = (pred - target).abs().flatten(1).mean(1)
        return per if reduction == "none" else per.sum()


def test_wrong_loss_fails_naming_the_checks():
    report = run_checks(MeanIsNotMean(), LOSS_CHECKS, LossOptions())
    failed = {r.name for r in report.failures}
    assert failed == {"check_loss_reductions", "check_loss_mask"}, str(report)
    with pytest.raises(ConformanceError, match="check_loss_mask: FAILED: changing pixels outside"):
        check_loss(MeanIsNotMean())


def _builtin_priors(registry):
    """The providers of the spi preset's terms, both stages (reconstruction included)."""
    cfg = resolve_config("spi", overrides=FAST)
    dev = torch.device("cpu")
    losses = build_losses(
        cfg.perceptual, cfg.perceptual_resize, cfg.contextual_features, registry, dev
    )
    tune = cfg.tune
    latent = build_terms(cfg.latent.terms, TermEnv(stage="latent", losses=losses))
    env = TermEnv(stage="generator", losses=losses, every=tune.aux_every, num_views=tune.num_views)
    return [*latent, *build_terms(tune.terms, env)]


def test_the_spi_preset_has_seven_builtin_terms(registry):
    names = [p.name for p in _builtin_priors(registry)]
    assert names == [
        "mirror_view",
        "reconstruction",
        "warp_views",
        "mirror_regions",
        "depth_reg",
        "reconstruction",
        "unseen_anchor",
    ]


@pytest.mark.parametrize("index", range(7))
def test_builtin_priors_pass(registry, index):
    check_prior(_builtin_priors(registry)[index])


class GlobalRandomPrior(BasePrior):
    """Deliberately wrong: draws its view from the global RNG and returns a detached term."""

    def __init__(self):
        super().__init__("global_random", ("latent",))

    def views(self, ctx):
        return look_at(float(torch.rand(())) - 0.5, 0.0)[None]

    def __call__(self, ctx, views):
        return {"depth": views.render.depth.mean().detach()}


def test_wrong_prior_fails_naming_the_checks():
    with pytest.raises(ConformanceError) as info:
        check_prior(GlobalRandomPrior())
    msg = str(info.value)
    assert "check_prior_attributes: passed" in msg
    assert "check_prior_terms: FAILED: stage 'latent': the terms ['depth'] carry no gradient" in msg
    assert "check_prior_reproducible: FAILED: stage 'latent': views() differ" in msg


class CentreCrop:
    """A minimal pose estimator: the centred square, a frontal camera; grey images have no face."""

    name = "centre-crop"

    def __init__(self, scale=1.0):
        self.scale = scale

    def __call__(self, image):
        if float(image.std()) < 1e-3:
            raise FaceNotFoundError("no face: the image is uniform.")
        s = min(image.shape[-2:])
        crop = image[..., :s, :s]
        return FaceObservation(
            image=crop * self.scale, camera=look_at(0.0, 0.0)[None], confidence=0.5
        )


def test_pose_suite_passes_a_correct_estimator_and_names_a_wrong_range():
    photo = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    check_pose_estimator(CentreCrop(), PoseOptions(photo=photo))
    with pytest.raises(ConformanceError) as info:
        check_pose_estimator(CentreCrop(scale=255.0), PoseOptions(photo=photo))
    assert "check_pose_observation: FAILED: observation.image must be finite and in [0, 1]" in str(
        info.value
    )
    assert "check_pose_no_face: passed" in str(info.value)
