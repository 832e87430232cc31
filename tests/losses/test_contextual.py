from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sym3d.errors import ConfigError, ShapeError, UserInputError
from sym3d.losses import (
    SPI_REGION_NAMES,
    ContextualLoss,
    FeatureExtractor,
    GaussianDerivativeFeatures,
    RegionContextualLoss,
    contextual_loss,
    crop_boxes,
    region_contextual_loss,
    spi_boxes_from_landmarks,
)

EPS = 1e-5
MIN_LOSS = -math.log(1 + EPS)


def _reference_cx(
    x: torch.Tensor, y: torch.Tensor, h: float = 0.5, eps: float = EPS
) -> torch.Tensor:
    """Direct transcription of Mechrez's equations (batch-mean centring), for one batch."""
    x, y = x.flatten(2).double(), y.flatten(2).double()
    mu = y.mean(dim=(0, 2), keepdim=True)
    x = (x - mu) / (x - mu).norm(dim=1, keepdim=True)
    y = (y - mu) / (y - mu).norm(dim=1, keepdim=True)
    out = []
    for b in range(x.shape[0]):
        d = 1 - x[b].T @ y[b]  # [Np, Nt]
        rel = torch.clamp(d / (d.min(dim=1, keepdim=True).values + eps), max=10.0)
        w = torch.exp((1 - rel) / h)
        cx = w / w.sum(dim=1, keepdim=True)
        out.append(-torch.log(cx.max(dim=0).values.mean() + eps))
    return torch.stack(out)


def _stripes(b: int, size: int, period: float, vertical: bool) -> torch.Tensor:
    t = torch.arange(size, dtype=torch.float32)
    wave = 0.5 + 0.4 * torch.sin(2 * math.pi * t / period)
    img = wave[None, :].expand(size, size) if vertical else wave[:, None].expand(size, size)
    return img.expand(b, 3, size, size).clone()


class TestContextualLoss:
    def test_smoke(self):
        f = torch.randn(2, 8, 5, 5)
        out = contextual_loss(f, torch.randn(2, 8, 5, 5))
        assert out.shape == () and torch.isfinite(out)

    @pytest.mark.parametrize(
        ("pshape", "tshape"), [((1, 4, 3, 3), (1, 4, 3, 3)), ((3, 8, 4, 6), (3, 8, 5, 2))]
    )
    @pytest.mark.parametrize("center", ["batch", "sample"])
    def test_cardinality(self, pshape, tshape, center):
        out = contextual_loss(
            torch.randn(pshape), torch.randn(tshape), center=center, reduction="none"
        )
        assert out.shape == (pshape[0],)

    def test_golden_reference_equations(self):
        x, y = torch.randn(3, 16, 6, 6), torch.randn(3, 16, 5, 7)
        torch.testing.assert_close(
            contextual_loss(x, y, reduction="none").double(),
            _reference_cx(x, y),
            rtol=1e-5,
            atol=1e-5,
        )

    def test_identity_is_minimum(self):
        f = torch.randn(2, 16, 8, 8)
        same = contextual_loss(f, f, reduction="none")
        torch.testing.assert_close(same, torch.full((2,), MIN_LOSS), atol=1e-6, rtol=0)
        assert (contextual_loss(f + torch.randn_like(f), f, reduction="none") > same + 0.3).all()

    def test_permutation_invariance(self):
        x, y = torch.randn(2, 16, 6, 6), torch.randn(2, 16, 6, 6)
        perm = torch.randperm(36)
        yp = y.flatten(2)[..., perm].reshape_as(y)
        xp = x.flatten(2)[..., perm].reshape_as(x)
        base = contextual_loss(x, y, reduction="none")
        torch.testing.assert_close(contextual_loss(x, yp, reduction="none"), base)
        torch.testing.assert_close(contextual_loss(xp, y, reduction="none"), base)
        torch.testing.assert_close(
            contextual_loss(xp, x, reduction="none"), torch.full((2,), MIN_LOSS), atol=1e-6, rtol=0
        )

    def test_texture_ranking(self):
        ext = GaussianDerivativeFeatures()
        a = ext(_stripes(1, 40, 8, vertical=True))
        shifted = ext(torch.roll(_stripes(1, 40, 8, vertical=True), 3, dims=-1))
        other = ext(_stripes(1, 40, 8, vertical=False))
        same_tex, diff_tex = float(contextual_loss(shifted, a)), float(contextual_loss(other, a))
        assert same_tex < diff_tex

    def test_center_modes(self):
        x, y = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 4, 4)
        b = contextual_loss(x, y, center="batch", reduction="none")
        s = contextual_loss(x, y, center="sample", reduction="none")
        assert not torch.allclose(b, s)
        torch.testing.assert_close(
            contextual_loss(x[:1], y[:1], center="batch", reduction="none"),
            contextual_loss(x[:1], y[:1], center="sample", reduction="none"),
        )

    def test_binary_weights_drop_positions(self):
        x, y = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 4, 4)
        keep = torch.zeros(2, 16, dtype=torch.bool)
        keep[:, :10] = True
        got = contextual_loss(x, y, target_weights=keep.float(), center="sample", reduction="none")
        want = contextual_loss(
            x, y.flatten(2)[..., :10].reshape(2, 8, 2, 5), center="sample", reduction="none"
        )
        torch.testing.assert_close(got, want)
        ones = contextual_loss(x, y, target_weights=torch.ones(2, 1, 4, 4), reduction="none")
        torch.testing.assert_close(ones, contextual_loss(x, y, reduction="none"))

    def test_fractional_weights_keep_the_bound(self):
        # Reading weights as multiplicities let a weight m < 1 push CX to 1 / m: identical maps
        # with a uniform weight of 0.5 gave -log(2) (negative) instead of the minimum -log(1+eps).
        f = torch.randn(2, 8, 5, 5)
        half = contextual_loss(f, f, target_weights=torch.full((2, 1, 5, 5), 0.5), reduction="none")
        torch.testing.assert_close(half, torch.full((2,), MIN_LOSS), atol=1e-6, rtol=0)
        # one target of weight 0.1 among zeros: the set is that one target, matched exactly
        one = torch.zeros(2, 1, 5, 5)
        one[..., 2, 2] = 0.1
        got = contextual_loss(f, f, target_weights=one, reduction="none")
        torch.testing.assert_close(got, torch.full((2,), MIN_LOSS), atol=1e-6, rtol=0)

    def test_uniform_weights_equal_unweighted(self):
        x, y = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 4, 4)
        base = contextual_loss(x, y, reduction="none")
        for c in (0.05, 0.3, 1.0):
            got = contextual_loss(x, y, target_weights=torch.full((2, 16), c), reduction="none")
            torch.testing.assert_close(got, base, rtol=1e-5, atol=1e-6)

    @settings(max_examples=80, deadline=None)
    @given(
        st.integers(0, 2**31 - 1),
        st.floats(0.0, 3.0),
        st.lists(st.floats(0.0, 1.0), min_size=18, max_size=18),
        st.sampled_from(["batch", "sample"]),
    )
    def test_bound_holds_for_any_weights(self, seed, noise, weights, center):
        g = torch.Generator().manual_seed(seed)
        y = torch.randn(2, 4, 3, 3, generator=g)
        x = y + noise * torch.randn(2, 4, 3, 3, generator=g)
        w = torch.tensor(weights).reshape(2, 9)
        out = contextual_loss(x, y, target_weights=w, center=center, reduction="none")
        # float32 rounding of CX near 1 is ~1e-7 on any CPU, far below eps = 1e-5
        assert (out >= MIN_LOSS - 1e-6).all(), out
        assert (out <= -math.log(EPS) + 1e-4).all(), out

    def test_empty_weights(self):
        x = torch.randn(2, 8, 4, 4, requires_grad=True)
        w = torch.ones(2, 1, 4, 4)
        w[1] = 0
        out = contextual_loss(x, torch.randn(2, 8, 4, 4), target_weights=w, reduction="none")
        assert out[1] == 0 and out[0] > 0
        out.sum().backward()
        assert torch.isfinite(x.grad).all() and (x.grad[1] == 0).all()
        w_all = torch.zeros(2, 1, 4, 4)
        out = contextual_loss(x, torch.randn(2, 8, 4, 4), target_weights=w_all, reduction="none")
        assert (out == 0).all()

    def test_gradients_flow_to_pred(self):
        x = torch.randn(2, 8, 4, 4, requires_grad=True)
        contextual_loss(x, torch.randn(2, 8, 4, 4)).backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0

    def test_gradcheck(self):
        x = torch.randn(1, 3, 2, 3, dtype=torch.float64, requires_grad=True)
        y = torch.randn(1, 3, 3, 2, dtype=torch.float64)
        assert torch.autograd.gradcheck(lambda a: contextual_loss(a, y), (x,))
        w = torch.rand(1, 1, 3, 2, dtype=torch.float64) + 0.1
        assert torch.autograd.gradcheck(
            lambda a: contextual_loss(a, y, target_weights=w, center="sample"), (x,)
        )

    def test_exception(self):
        x = torch.randn(2, 8, 4, 4)
        with pytest.raises(ShapeError, match="target_feats"):
            contextual_loss(x, torch.randn(2, 7, 4, 4))
        with pytest.raises(ShapeError, match="target_feats"):
            contextual_loss(x, torch.randn(3, 8, 4, 4))
        with pytest.raises(ShapeError, match="pred_feats"):
            contextual_loss(torch.randn(8, 4, 4), x)
        with pytest.raises(ShapeError, match="target_weights"):
            contextual_loss(x, x, target_weights=torch.ones(2, 1, 3, 3))
        with pytest.raises(ConfigError, match="bandwidth"):
            contextual_loss(x, x, bandwidth=0.0)
        with pytest.raises(ConfigError, match="center"):
            contextual_loss(x, x, center="global")

    def test_module(self):
        x, y = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 4, 4)
        mod = ContextualLoss(bandwidth=0.2, center="sample", reduction="none")
        torch.testing.assert_close(
            mod(x, y), contextual_loss(x, y, bandwidth=0.2, center="sample", reduction="none")
        )


def _old_crop_boxes(images, boxes, output_size, *, sampling_ratio=-1, aligned=False):
    """Oracle: sym3d's crop_boxes before it called roi_align (a Python loop over boxes)."""
    import torch.nn.functional as F

    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    b, c, h, w = images.shape
    r = boxes.shape[1]
    offset = 0.5 if aligned else 0.0
    crops = []
    box_list = boxes.detach().to("cpu", torch.float64).tolist()
    for bi in range(b):
        for ri in range(r):
            x0, y0, x1, y1 = (v - offset for v in box_list[bi][ri])
            roi_w, roi_h = x1 - x0, y1 - y0
            if not aligned:
                roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
            sw = sampling_ratio if sampling_ratio > 0 else max(1, math.ceil(roi_w / out_w))
            sh = sampling_ratio if sampling_ratio > 0 else max(1, math.ceil(roi_h / out_h))
            xs = x0 + (torch.arange(out_w * sw, dtype=torch.float64) + 0.5) * (roi_w / (out_w * sw))
            ys = y0 + (torch.arange(out_h * sh, dtype=torch.float64) + 0.5) * (roi_h / (out_h * sh))
            valid = ((ys >= -1.0) & (ys <= h))[:, None] & ((xs >= -1.0) & (xs <= w))[None, :]
            gx = 2.0 * xs.clamp(0, w - 1) / max(w - 1, 1) - 1.0
            gy = 2.0 * ys.clamp(0, h - 1) / max(h - 1, 1) - 1.0
            grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)
            grid = grid.to(device=images.device, dtype=images.dtype)[None]
            sample = F.grid_sample(
                images[bi : bi + 1], grid, "bilinear", padding_mode="border", align_corners=True
            )
            sample = sample * valid.to(device=images.device, dtype=images.dtype)
            if sh > 1 or sw > 1:
                sample = F.avg_pool2d(sample, (sh, sw))
            crops.append(sample[0])
    return torch.stack(crops).reshape(b, r, c, out_h, out_w)


class TestCropBoxes:
    boxes = torch.tensor(
        [
            [[3.2, 5.1, 30.7, 20.2], [10.0, 10.0, 11.0, 39.0], [4.0, 4.0, 4.5, 9.0]],
            [[-0.6, 0.2, 47.5, 39.9], [20.0, -3.2, 50.0, 12.0], [-5.0, -5.0, 60.0, 50.0]],
        ]
    )

    @pytest.mark.parametrize("sampling_ratio", [-1, 2])
    @pytest.mark.parametrize("aligned", [False, True])
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_matches_old_implementation(self, sampling_ratio, aligned, dtype):
        img = torch.rand(2, 3, 40, 48, generator=torch.Generator().manual_seed(0), dtype=dtype)
        kw = {"sampling_ratio": sampling_ratio, "aligned": aligned}
        got = crop_boxes(img, self.boxes, (7, 9), **kw)
        assert got.shape == (2, 3, 3, 7, 9) and got.dtype == dtype
        # values in [0, 1]; float32 differs only by the order of the bilinear sums
        tol = 1e-5 if dtype == torch.float32 else 1e-10
        want = _old_crop_boxes(img, self.boxes, (7, 9), **kw)
        torch.testing.assert_close(got, want, atol=tol, rtol=0)

    def test_no_host_sync(self, monkeypatch):
        img = torch.rand(2, 3, 40, 48)

        def refuse(self, *args, **kwargs):
            raise AssertionError("host synchronisation")

        for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
            monkeypatch.setattr(torch.Tensor, name, refuse)
        out = crop_boxes(img, self.boxes, 5)
        monkeypatch.undo()
        torch.testing.assert_close(out, _old_crop_boxes(img, self.boxes, 5), atol=1e-5, rtol=0)

    def test_gradient(self):
        img = torch.rand(1, 3, 16, 16, requires_grad=True)
        crop_boxes(img, torch.tensor([[[2.0, 2.0, 12.0, 9.0]]]), 5).sum().backward()
        assert img.grad.abs().sum() > 0
        old = _old_crop_boxes(img, torch.tensor([[[2.0, 2.0, 12.0, 9.0]]]), 5)
        want = torch.autograd.grad(old.sum(), img)[0]
        torch.testing.assert_close(img.grad, want, atol=1e-5, rtol=0)


class _SpyExtractor(torch.nn.Module):
    name = "spy"

    def __init__(self):
        super().__init__()
        self.inner = GaussianDerivativeFeatures()
        self.seen: list[tuple[float, float]] = []

    def forward(self, images):
        self.seen.append((float(images.min()), float(images.max())))
        return self.inner(images)


class TestRegionContextualLoss:
    boxes = torch.tensor([[0.2, 0.3, 0.45, 0.5], [0.55, 0.3, 0.8, 0.5], [0.3, 0.6, 0.7, 0.85]])

    def test_protocol(self):
        ext = GaussianDerivativeFeatures()
        assert isinstance(ext, FeatureExtractor)
        assert ext(torch.rand(2, 3, 80, 80)).shape == (2, ext.out_channels, 40, 40)

    def test_smoke_and_identity(self):
        x = torch.rand(2, 3, 64, 64)
        ext = GaussianDerivativeFeatures()
        same = region_contextual_loss(
            x, x, self.boxes, ext, crop_size=24, resize_to=None, reduction="none"
        )
        torch.testing.assert_close(same, torch.full((2,), 3 * MIN_LOSS), atol=1e-5, rtol=0)
        diff = region_contextual_loss(
            x, torch.rand_like(x), self.boxes, ext, crop_size=24, resize_to=None, reduction="none"
        )
        assert (diff > same + 0.1).all()

    @pytest.mark.parametrize("form", ["shared", "per_sample", "mapping", "list"])
    def test_box_formats(self, form):
        x, y = torch.rand(2, 3, 48, 48), torch.rand(2, 3, 48, 48)
        boxes = {
            "shared": self.boxes,
            "per_sample": self.boxes.expand(2, 3, 4),
            "mapping": dict(zip(SPI_REGION_NAMES, self.boxes.tolist(), strict=True)),
            "list": self.boxes.tolist(),
        }[form]
        ext = GaussianDerivativeFeatures()
        out = region_contextual_loss(x, y, boxes, ext, crop_size=16, resize_to=64, reduction="none")
        ref = region_contextual_loss(
            x, y, self.boxes, ext, crop_size=16, resize_to=64, reduction="none"
        )
        assert out.shape == (2,)
        torch.testing.assert_close(out, ref)

    @pytest.mark.parametrize("quirk", [False, True])
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_values_equal_old_crop_implementation(self, monkeypatch, quirk, dtype):
        """BoxCX through roi_align equals BoxCX through the old looped crop (1e-6 relative)."""
        import sym3d.losses.contextual as cx

        g = torch.Generator().manual_seed(3)
        x, y = (torch.rand(2, 3, 72, 72, generator=g, dtype=dtype) for _ in range(2))
        mask, wmask = (torch.rand(2, 1, 72, 72, generator=g, dtype=dtype) for _ in range(2))
        boxes = torch.rand(2, 3, 4, generator=g).sort(dim=-1).values  # x0 <= y0 <= x1 <= y1
        kw = {
            "crop_size": 20,
            "resize_to": 64,
            "mask": mask,
            "weight_mask": wmask,
            "normalization": "spi_quirk" if quirk else "imagenet",
            "reduction": "none",
        }
        ext = GaussianDerivativeFeatures().to(dtype)
        new = region_contextual_loss(x, y, boxes, ext, **kw)
        monkeypatch.setattr(cx, "crop_boxes", _old_crop_boxes)
        old = region_contextual_loss(x, y, boxes, ext, **kw)
        assert new.shape == (2,) and new.dtype == dtype and (old > 0.1).all()
        # float32 values are about 4.6 (three boxes), where 1e-6 absolute is two ulps
        tol = 1e-6 if dtype == torch.float32 else 1e-9
        torch.testing.assert_close(new, old, atol=tol, rtol=tol)

    def test_texture_ranking_and_gradient(self):
        target = _stripes(2, 64, 8, vertical=True)
        near = torch.roll(target, 2, dims=-1).requires_grad_(True)
        far = _stripes(2, 64, 8, vertical=False)
        ext = GaussianDerivativeFeatures()
        kw = {"crop_size": 32, "resize_to": None, "reduction": "none"}
        l_near = region_contextual_loss(near, target, self.boxes, ext, **kw)
        l_far = region_contextual_loss(far, target, self.boxes, ext, **kw)
        assert (l_near < l_far).all()
        l_near.sum().backward()
        assert torch.isfinite(near.grad).all() and near.grad.abs().sum() > 0

    def test_mask_and_weight_mask(self):
        x = torch.rand(1, 3, 48, 48)
        y = x.clone()
        y[..., :, 24:] = torch.rand(1, 3, 48, 24)  # differs only on the right half
        left = torch.zeros(1, 1, 48, 48)
        left[..., :24] = 1
        ext = GaussianDerivativeFeatures()
        kw = {"crop_size": 16, "resize_to": None, "reduction": "none"}
        box = torch.tensor([[0.05, 0.05, 0.45, 0.95]])  # a box inside the left half
        torch.testing.assert_close(
            region_contextual_loss(x, y, box, ext, mask=left, **kw),
            torch.full((1,), MIN_LOSS),
            atol=1e-5,
            rtol=0,
        )
        ones = torch.ones(1, 1, 48, 48)
        torch.testing.assert_close(
            region_contextual_loss(x, y, self.boxes, ext, weight_mask=ones, **kw),
            region_contextual_loss(x, y, self.boxes, ext, **kw),
        )
        zeros = torch.zeros(1, 1, 48, 48)
        assert region_contextual_loss(x, y, self.boxes, ext, weight_mask=zeros, **kw).item() == 0

    def test_soft_weight_mask_keeps_the_bound(self):
        # an area-averaged authentic mask is fractional at its edges; a uniform 0.3 gave < 0
        x = torch.rand(2, 3, 48, 48)
        ext = GaussianDerivativeFeatures()
        kw = {"crop_size": 16, "resize_to": None, "reduction": "none"}
        soft = torch.full((2, 1, 48, 48), 0.3)
        same = region_contextual_loss(x, x, self.boxes, ext, weight_mask=soft, **kw)
        torch.testing.assert_close(same, torch.full((2,), 3 * MIN_LOSS), atol=1e-5, rtol=0)

    def test_spi_quirk_feeds_minus_one_one(self):
        x = torch.rand(1, 3, 32, 32) * 0.5
        spy = _SpyExtractor()
        region_contextual_loss(x, x, self.boxes, spy, crop_size=8, resize_to=None)
        region_contextual_loss(
            x, x, self.boxes, spy, crop_size=8, resize_to=None, normalization="spi_quirk"
        )
        assert spy.seen[0][0] >= 0.0 and spy.seen[1][0] < -0.5

    def test_spi_boxes_from_landmarks(self):
        lm = torch.zeros(1, 68, 2)
        lm[0, 48:68] = torch.tensor([100.0, 180.0])
        lm[0, 48, 0], lm[0, 49, 1] = 140.0, 200.0
        lm[0, 36:42] = torch.tensor([80.0, 100.0])
        lm[0, 42:48] = torch.tensor([170.0, 100.0])
        boxes = spi_boxes_from_landmarks(lm, 256)
        assert boxes.shape == (1, 3, 4)
        torch.testing.assert_close(boxes[0, 0] * 256, torch.tensor([92.0, 172.0, 148.0, 208.0]))
        torch.testing.assert_close(boxes[0, 1] * 256, torch.tensor([65.0, 85.0, 95.0, 115.0]))
        torch.testing.assert_close(spi_boxes_from_landmarks(lm * 2, 512), boxes)

    def test_exception(self):
        x = torch.rand(2, 3, 32, 32)
        ext = GaussianDerivativeFeatures()
        with pytest.raises(ShapeError, match="boxes"):
            region_contextual_loss(x, x, torch.rand(3, 5), ext)
        with pytest.raises(ShapeError, match="boxes"):
            region_contextual_loss(x, x, torch.rand(3, 3, 4), ext)
        with pytest.raises(UserInputError, match="x1 >= x0"):
            region_contextual_loss(x, x, torch.tensor([[0.5, 0.1, 0.2, 0.4]]), ext)
        with pytest.raises(ShapeError, match="target"):
            region_contextual_loss(x, torch.rand(2, 3, 32, 31), self.boxes, ext)
        with pytest.raises(ShapeError, match="weight_mask"):
            region_contextual_loss(x, x, self.boxes, ext, weight_mask=torch.ones(2, 1, 16, 16))
        with pytest.raises(ConfigError, match="normalization"):
            region_contextual_loss(x, x, self.boxes, ext, normalization="caffe")

    def test_module(self):
        x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
        ext = GaussianDerivativeFeatures(sigmas=(1.0,))
        mod = RegionContextualLoss(ext, crop_size=12, resize_to=48, reduction="none")
        assert mod.extractor is ext
        torch.testing.assert_close(
            mod(x, y, self.boxes),
            region_contextual_loss(
                x, y, self.boxes, ext, crop_size=12, resize_to=48, reduction="none"
            ),
        )
