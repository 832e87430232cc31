from __future__ import annotations

import math

import kornia
import pytest
import torch

from sym3d.errors import ConfigError, ShapeError
from sym3d.losses import SSIMLoss, ssim, ssim_loss
from sym3d.protocols import Loss


def _pair(shape=(2, 3, 16, 16)):
    x = torch.rand(shape)
    return x, (x + 0.1 * torch.randn_like(x)).clamp(0, 1)


class TestSSIM:
    def test_smoke(self):
        x, y = _pair()
        out = ssim(x, y)
        assert out.shape == (2,) and bool(((out > 0) & (out < 1)).all())

    @pytest.mark.parametrize("shape", [(1, 3, 12, 12), (3, 3, 16, 20), (2, 1, 13, 11)])
    @pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
    def test_cardinality(self, shape, reduction):
        x, y = _pair(shape)
        mask = torch.rand(shape[0], 1, *shape[2:])
        want = (shape[0],) if reduction == "none" else ()
        assert ssim(x, y, mask=mask, reduction=reduction).shape == want
        assert ssim_loss(x, y, mask=mask, reduction=reduction).shape == want

    def test_identical(self):
        x = torch.rand(2, 3, 16, 16)
        torch.testing.assert_close(ssim(x, x), torch.ones(2))
        torch.testing.assert_close(ssim_loss(x, x), torch.tensor(0.0))

    def test_matches_kornia(self):
        x, y = _pair()
        torch.testing.assert_close(ssim_loss(x, y), kornia.losses.ssim_loss(x, y, 11))
        torch.testing.assert_close(
            ssim(x, y, reduction="mean"), kornia.metrics.ssim(x, y, 11).mean()
        )

    def test_golden_skimage_interior(self):
        metrics = pytest.importorskip("skimage.metrics")
        x, y = _pair((1, 3, 32, 32))
        # skimage averages the SSIM map over the interior (5 px border cropped for an 11 window),
        # where padding does not matter: an interior mask must reproduce it
        mask = torch.zeros(1, 1, 32, 32)
        mask[..., 5:-5, 5:-5] = 1
        want = metrics.structural_similarity(
            x[0].double().numpy(),
            y[0].double().numpy(),
            data_range=1.0,
            channel_axis=0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        got = ssim(x.double(), y.double(), mask=mask.double())
        assert abs(float(got) - want) < 1e-6

    def test_full_mask_equals_no_mask(self):
        x, y = _pair()
        torch.testing.assert_close(ssim(x, y, mask=torch.ones(2, 1, 16, 16)), ssim(x, y))

    def test_empty_mask(self):
        x, y = _pair()
        x.requires_grad_(True)
        mask = torch.ones(2, 1, 16, 16)
        mask[0] = 0
        assert math.isnan(float(ssim(x.detach(), y, mask=mask)[0]))
        loss = ssim_loss(x, y, mask=mask, reduction="none")
        assert loss[0] == 0 and loss[1] > 0
        loss.sum().backward()
        assert torch.isfinite(x.grad).all() and (x.grad[0] == 0).all()

    def test_exception(self):
        x = torch.rand(1, 3, 16, 16)
        with pytest.raises(ShapeError, match="target"):
            ssim(x, torch.rand(1, 3, 16, 15))
        with pytest.raises(ShapeError, match="mask"):
            ssim(x, x, mask=torch.ones(1, 1, 8, 8))
        with pytest.raises(ShapeError, match="window_size"):
            ssim(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4))
        with pytest.raises(ConfigError, match="window_size"):
            ssim(x, x, window_size=4)
        with pytest.raises(ConfigError, match="reduction"):
            ssim_loss(x, x, reduction="bogus")

    def test_gradcheck(self):
        x = torch.rand(1, 1, 6, 6, dtype=torch.float64, requires_grad=True)
        y = torch.rand(1, 1, 6, 6, dtype=torch.float64)
        m = torch.rand(1, 1, 6, 6, dtype=torch.float64)
        assert torch.autograd.gradcheck(lambda a: ssim_loss(a, y, mask=m, window_size=3), (x,))

    def test_module(self):
        x, y = _pair()
        m = torch.rand(2, 1, 16, 16)
        mod = SSIMLoss(window_size=7, reduction="none")
        assert isinstance(mod, Loss)
        torch.testing.assert_close(
            mod(x, y, mask=m), ssim_loss(x, y, mask=m, window_size=7, reduction="none")
        )
