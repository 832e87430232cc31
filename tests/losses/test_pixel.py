from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sym3d.errors import ConfigError, ShapeError
from sym3d.losses import L1Loss, MSELoss, l1_loss, mse_loss
from sym3d.protocols import Loss

FUNCS = [
    (mse_loss, MSELoss, lambda a, b: (a - b) ** 2),
    (l1_loss, L1Loss, lambda a, b: (a - b).abs()),
]
IDS = ["mse", "l1"]


@pytest.mark.parametrize(("fn", "module", "err"), FUNCS, ids=IDS)
class TestPixelLosses:
    def test_smoke(self, fn, module, err):
        x = torch.rand(2, 3, 8, 8)
        out = fn(x, torch.rand_like(x))
        assert out.shape == () and torch.isfinite(out)

    @pytest.mark.parametrize("shape", [(1, 3, 4, 4), (3, 3, 5, 7), (2, 1, 6, 6)])
    @pytest.mark.parametrize("with_mask", [False, True])
    def test_cardinality(self, fn, module, err, shape, with_mask):
        x, y = torch.rand(shape), torch.rand(shape)
        mask = torch.rand(shape[0], 1, *shape[2:]) if with_mask else None
        assert fn(x, y, mask=mask, reduction="none").shape == (shape[0],)
        assert fn(x, y, mask=mask, reduction="sum").shape == ()

    def test_matches_torch_without_mask(self, fn, module, err):
        x, y = torch.rand(2, 3, 6, 6), torch.rand(2, 3, 6, 6)
        ref = F.mse_loss(x, y) if fn is mse_loss else F.l1_loss(x, y)
        torch.testing.assert_close(fn(x, y), ref)

    def test_binary_mask_selects_pixels(self, fn, module, err):
        x, y = torch.rand(2, 3, 6, 6), torch.rand(2, 3, 6, 6)
        mask = torch.zeros(2, 1, 6, 6)
        mask[0, :, :3] = 1
        mask[1, :, :, 4:] = 1
        got = fn(x, y, mask=mask, reduction="none")
        want = torch.stack(
            [err(x[0, :, :3], y[0, :, :3]).mean(), err(x[1, :, :, 4:], y[1, :, :, 4:]).mean()]
        )
        torch.testing.assert_close(got, want)

    def test_soft_mask_is_weighted_mean(self, fn, module, err):
        x, y = torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4)
        m = torch.rand(1, 1, 4, 4)
        want = (err(x, y) * m).sum() / (m.sum() * 3)
        torch.testing.assert_close(fn(x, y, mask=m), want)

    def test_empty_mask_is_zero_without_nan(self, fn, module, err):
        x = torch.rand(2, 3, 4, 4, requires_grad=True)
        mask = torch.ones(2, 1, 4, 4)
        mask[1] = 0
        out = fn(x, torch.rand(2, 3, 4, 4), mask=mask, reduction="none")
        assert out[1] == 0
        out.sum().backward()
        assert torch.isfinite(x.grad).all() and (x.grad[1] == 0).all()

    def test_exception(self, fn, module, err):
        x = torch.rand(2, 3, 4, 4)
        with pytest.raises(ShapeError, match=r"target.*\[2, 3, 4, 5\]"):
            fn(x, torch.rand(2, 3, 4, 5))
        with pytest.raises(ShapeError, match="pred"):
            fn(torch.rand(3, 4, 4), torch.rand(3, 4, 4))
        with pytest.raises(ShapeError, match="mask"):
            fn(x, x, mask=torch.ones(2, 1, 3, 4))
        with pytest.raises(ShapeError, match="mask"):
            fn(x, x, mask=torch.ones(2, 2, 4, 4))
        with pytest.raises(ConfigError, match="reduction"):
            fn(x, x, reduction="avg")

    def test_gradcheck(self, fn, module, err):
        x = torch.rand(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
        y = torch.rand(1, 2, 3, 3, dtype=torch.float64) + 1.0  # keep |x - y| away from 0 for L1
        m = torch.rand(1, 1, 3, 3, dtype=torch.float64)
        assert torch.autograd.gradcheck(lambda a: fn(a, y, mask=m), (x,))

    def test_module(self, fn, module, err):
        x, y, m = torch.rand(2, 3, 5, 5), torch.rand(2, 3, 5, 5), torch.rand(2, 1, 5, 5)
        mod = module(reduction="none")
        assert isinstance(mod, Loss)
        torch.testing.assert_close(mod(x, y, mask=m), fn(x, y, mask=m, reduction="none"))
        torch.testing.assert_close(mod(x, y, reduction="mean"), fn(x, y))
