import pytest

from sym3d.engine.schedule import latent_noise_scale, projector_lr


def test_projector_lr_shape():
    kw = dict(peak=0.01, rampup=0.05, rampdown=0.25)
    assert projector_lr(0.0, **kw) == 0.0
    assert projector_lr(0.025, **kw) == pytest.approx(0.005)
    assert projector_lr(0.5, **kw) == pytest.approx(0.01)
    assert projector_lr(0.875, **kw) == pytest.approx(0.005)
    assert projector_lr(1.0, **kw) == pytest.approx(0.0)


def test_latent_noise_decays_to_zero():
    kw = dict(w_std=2.0, strength=0.05, ramp=0.75)
    assert latent_noise_scale(0.0, **kw) == pytest.approx(0.1)
    assert latent_noise_scale(0.375, **kw) == pytest.approx(0.025)
    assert latent_noise_scale(0.75, **kw) == 0.0 and latent_noise_scale(0.9, **kw) == 0.0
