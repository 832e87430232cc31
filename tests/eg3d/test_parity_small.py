"""Parity with the official EG3D on the SMALL config (``eg3d_small.pt``: 2X SR, 128 px, nr 32).

Every output is computed once per module (module-scoped fixtures) and compared entry by entry
with the official values within the float32 tolerances of ``_tolerance.py`` (relative to each
quantity's magnitude, so they hold on any x86-64 CPU). The second half tests the API built
around the port (plane/render split, multi-view, random sources, errors) on the same model.
"""

from __future__ import annotations

import pytest
import torch

from sym3d.errors import ConfigError, ShapeError, UserInputError
from sym3d_eg3d.networks import ReplayRandom, TriPlaneGenerator, build_generator
from sym3d_eg3d.networks.rendering import (
    plane_axes_matrices,
    project_onto_planes,
    sample_from_planes,
)

from ._parity import SYNTH, mapping_variants, plane_views
from ._tolerance import assert_close, elementwise

FX = "small"


def _build(fx: dict) -> TriPlaneGenerator:
    G = build_generator(
        fx["init_kwargs"],
        rendering_kwargs=fx["rendering_kwargs_attr"],
        neural_rendering_resolution=fx["neural_rendering_resolution"],
    )
    G.load_state_dict(fx["state_dict"], strict=True)
    return G.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def G(small_fixture: dict) -> TriPlaneGenerator:
    return _build(small_fixture)


# ---------------------------------------------------------------------------------------------
# Outputs, computed once per module
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mapping_run(G: TriPlaneGenerator, small_fixture: dict) -> dict:
    return mapping_variants(G, small_fixture)


@pytest.fixture(scope="module")
def planes(G: TriPlaneGenerator, mapping_run: dict) -> torch.Tensor:
    return G.backbone_planes(mapping_run["ws"], **SYNTH)


@pytest.fixture(scope="module")
def planes_run(planes: torch.Tensor) -> dict:
    return plane_views(planes, crop=True)


@pytest.fixture(scope="module")
def main_run(
    G: TriPlaneGenerator, small_fixture: dict, planes: torch.Tensor, mapping_run: dict
) -> dict:
    out = G.render_planes(
        planes, mapping_run["ws"], small_fixture["c"], random="midpoint", return_intermediates=True
    )
    feat = out["feature_image"]
    sr_img, sr_x, resized = G.superresolution.resize_inputs(feat[:, :3], feat)
    assert resized
    out["sr_block0_in_x_ch0_8"] = sr_x[:, :8]
    out["sr_block0_in_img"] = sr_img
    return out


def _suffixed(out: dict, suffix: str) -> dict:
    return {f"{k}{suffix}": v for k, v in out.items()}


@pytest.fixture(scope="module")
def trunc_run(G: TriPlaneGenerator, small_fixture: dict, mapping_run: dict) -> dict:
    out = G.synthesis(mapping_run["ws_trunc"], small_fixture["c"], random="midpoint", **SYNTH)
    return _suffixed(out, "_trunc")


@pytest.fixture(scope="module")
def cond_trunc_run(G: TriPlaneGenerator, small_fixture: dict, mapping_run: dict) -> dict:
    out = G.synthesis(mapping_run["ws_cond_trunc"], small_fixture["c"], random="midpoint", **SYNTH)
    return _suffixed(out, "_cond_trunc")


@pytest.fixture(scope="module")
def injected_run(
    G: TriPlaneGenerator, small_fixture: dict, planes: torch.Tensor, mapping_run: dict
) -> dict:
    fx = small_fixture
    draws = ReplayRandom([fx["rand_stratified"], fx["rand_importance"]])
    out = G.render_planes(
        planes, mapping_run["ws"], fx["c"], random=draws, return_intermediates=True
    )
    assert draws.remaining == 0
    keep = ("image", "image_raw", "image_depth", "depths_coarse", "depths_fine")
    return _suffixed({k: out[k] for k in keep}, "_injected")


@pytest.fixture(scope="module")
def nr64_run(
    G: TriPlaneGenerator, small_fixture: dict, planes: torch.Tensor, mapping_run: dict
) -> dict:
    out = G.render_planes(
        planes,
        mapping_run["ws"],
        small_fixture["c"],
        neural_rendering_resolution=64,
        random="midpoint",
        return_intermediates=True,
    )
    result = _suffixed({k: out[k] for k in ("image", "image_raw", "image_depth")}, "_nr64")
    result["rendered_rgb_nr64_before_sr"] = out["feature_image"][:, :3]
    return result


@pytest.fixture(scope="module")
def nonfused_run(G: TriPlaneGenerator, small_fixture: dict, mapping_run: dict) -> dict:
    G.train()  # 'inference_only' -> non-fused modulated conv
    try:
        out = G.synthesis(mapping_run["ws"], small_fixture["c"], random="midpoint", **SYNTH)
    finally:
        G.eval()
    return _suffixed(out, "_nonfused")


@pytest.fixture(scope="module")
def points_run(G: TriPlaneGenerator, small_fixture: dict, planes: torch.Tensor) -> dict:
    fx = small_fixture
    coords, dirs = fx["sample_coordinates"], fx["sample_directions"]
    box_warp = G.rendering_kwargs["box_warp"]
    mixed = G.sample_mixed(coords, dirs, fx["ws"], **SYNTH)
    trunc = G.sample(
        coords, dirs, fx["z"], fx["c"], truncation_psi=0.7, truncation_cutoff=14, **SYNTH
    )
    point = fx["plane_projection_example_point"].reshape(1, 1, 3)
    return {
        "sample_sigma": mixed["sigma"],
        "sample_rgb": mixed["rgb"],
        "sample_sigma_trunc": trunc["sigma"],
        "sample_rgb_trunc": trunc["rgb"],
        "sample_plane_features": sample_from_planes(
            G.renderer.plane_axes, planes, coords, box_warp
        ),
        "sample_plane_uv": project_onto_planes(G.renderer.plane_axes, (2 / box_warp) * coords),
        "plane_axes": G.renderer.plane_axes,
        "plane_projection_example_uv": project_onto_planes(G.renderer.plane_axes, point).reshape(
            3, 2
        ),
    }


# ---------------------------------------------------------------------------------------------
# Parity tables: fixture key -> the module fixture that computes it
# ---------------------------------------------------------------------------------------------

PARITY = {
    "mapping_run": ["ws", "ws_trunc", "ws_trunc_cutoff7", "ws_cond_trunc", "ws_c_zero"],
    "planes_run": [
        "planes_strided8",
        "planes_crop_r112_144_c112_144",
        "planes_row128",
        "planes_col37",
    ],
    "main_run": [
        "ray_origins",
        "ray_directions",
        "depths_coarse",
        "depths_fine",
        "weights_samples",
        "feature_image",
        "image_raw",
        "image_depth",
        "sr_block0_in_x_ch0_8",
        "sr_block0_in_img",
        "image",
    ],
    "trunc_run": ["image_trunc", "image_raw_trunc", "image_depth_trunc"],
    "cond_trunc_run": ["image_cond_trunc", "image_raw_cond_trunc", "image_depth_cond_trunc"],
    "injected_run": [
        "depths_coarse_injected",
        "depths_fine_injected",
        "image_raw_injected",
        "image_depth_injected",
        "image_injected",
    ],
    "nr64_run": ["rendered_rgb_nr64_before_sr", "image_raw_nr64", "image_depth_nr64", "image_nr64"],
    "nonfused_run": ["image_nonfused", "image_raw_nonfused", "image_depth_nonfused"],
    "points_run": [
        "sample_sigma",
        "sample_rgb",
        "sample_sigma_trunc",
        "sample_rgb_trunc",
        "sample_plane_features",
        "sample_plane_uv",
        "plane_axes",
        "plane_projection_example_uv",
    ],
}
CASES = [(run, key) for run, keys in PARITY.items() for key in keys]


@pytest.mark.parametrize("run,key", CASES, ids=[k for _, k in CASES])
def test_parity(
    run: str, key: str, request: pytest.FixtureRequest, small_fixture: dict, parity
) -> None:
    outputs = request.getfixturevalue(run)
    parity.check(f"{FX}/{key}", outputs[key], small_fixture[key])


@pytest.mark.parametrize("kind", ["sum", "abssum", "sqsum"])
def test_plane_checksums(kind: str, planes_run: dict, small_fixture: dict, parity) -> None:
    assert small_fixture["planes_shape"] == [2, 3, 32, 256, 256]
    key = f"planes_{kind}_f64"
    abssum = small_fixture["planes_abssum_f64"]
    parity.check_sum(
        f"{FX}/{key}", planes_run[key], small_fixture[key], kind, abssum=abssum, numel=256 * 256
    )


def test_fixture_settings_are_what_the_tests_assume(small_fixture: dict) -> None:
    meta = small_fixture["meta"]
    assert meta["synthesis_kwargs"] == {"noise_mode": "const", "force_fp32": True}
    assert small_fixture["neural_rendering_resolution"] == 32
    assert len(meta["rand_calls_main_forward"]) == 2


# ---------------------------------------------------------------------------------------------
# Construction: state_dict layout and the seeded official initialisation
# ---------------------------------------------------------------------------------------------


def test_state_dict_keys_order_shapes(G: TriPlaneGenerator, small_fixture: dict) -> None:
    ours = G.state_dict()
    ref = small_fixture["state_dict"]
    assert list(ours) == list(ref)
    assert list(ours)[0] == "dataset_label_std"
    for k, v in ref.items():
        assert ours[k].shape == v.shape and ours[k].dtype == v.dtype, k
    assert sum(p.numel() for p in G.parameters()) == 1_953_224
    assert small_fixture["meta"]["param_names"] == [n for n, _ in G.named_parameters()]


def test_seeded_construction_reproduces_the_official_init(small_fixture: dict) -> None:
    """With the same torch seed, construction draws the official initial weights.

    Bit-equal where torch's vectorised ``randn`` runs (AVX2/AVX-512); its scalar fallback (a CPU
    without AVX2, or ``ATEN_CPU_CAPABILITY=default``) rounds the Box-Muller transform differently,
    about an ulp (0.015 of the parity tolerance, measured). Hence the float32 tolerance: a draw in
    another order, shape or distribution differs by O(1), like the two entries set afterwards.
    """
    fx = small_fixture
    torch.manual_seed(0)
    fresh = build_generator(fx["init_kwargs"])
    perturb = torch.Generator().manual_seed(1)  # the fixture's post-construction perturbation
    with torch.no_grad():
        for name, p in fresh.named_parameters():
            if name.endswith("noise_strength"):
                p.copy_(0.1 * torch.randn(p.shape, generator=perturb))
            elif name.endswith(".bias"):
                p.add_(0.1 * torch.randn(p.shape, generator=perturb))
    state = fresh.state_dict()
    differing = [k for k, v in fx["state_dict"].items() if not elementwise(state[k], v).ok]
    assert differing == ["dataset_label_std", "backbone.mapping.w_avg"]  # set after construction


# ---------------------------------------------------------------------------------------------
# Behaviour around the port
# ---------------------------------------------------------------------------------------------


def test_mapping_variants(G: TriPlaneGenerator, small_fixture: dict, mapping_run: dict) -> None:
    fx = small_fixture
    full = G.mapping(fx["z"], fx["c"], truncation_psi=0.7, truncation_cutoff=None)
    assert torch.equal(full, mapping_run["ws_trunc"])  # cutoff 14 == num_ws == None
    # Quirk: a missing c_scale means 0, which equals zeroed conditioning.
    saved = dict(G.rendering_kwargs)
    try:
        del G.rendering_kwargs["c_scale"]
        assert torch.equal(G.mapping(fx["z"], fx["c"]), mapping_run["ws_c_zero"])
    finally:
        G.rendering_kwargs.clear()
        G.rendering_kwargs.update(saved)
    assert G.num_ws == 14


def test_synthesis_and_forward_compose_the_split_api(
    G: TriPlaneGenerator, small_fixture: dict, main_run: dict, mapping_run: dict
) -> None:
    fx = small_fixture
    z_before, c_before = fx["z"].clone(), fx["c"].clone()
    out = G(fx["z"], fx["c"], random="midpoint", **SYNTH)  # mapping + synthesis(backbone + render)
    assert set(out) == {"image", "image_raw", "image_depth"}
    for key in out:
        assert torch.equal(out[key], main_run[key]), key
    assert torch.equal(fx["z"], z_before) and torch.equal(fx["c"], c_before)


def test_resolution_is_not_stored_by_synthesis(G: TriPlaneGenerator, nr64_run: dict) -> None:
    assert nr64_run["image_raw_nr64"].shape[-1] == 64
    assert G.neural_rendering_resolution == 32


def test_sr_aliasing_can_be_turned_off(
    G: TriPlaneGenerator,
    small_fixture: dict,
    planes: torch.Tensor,
    mapping_run: dict,
    nr64_run: dict,
) -> None:
    rendered = nr64_run["rendered_rgb_nr64_before_sr"]
    assert (nr64_run["image_raw_nr64"] - rendered).abs().max() > 1.0  # the quirk is large
    G.reproduce_sr_aliasing = False
    try:
        out = G.render_planes(
            planes,
            mapping_run["ws"],
            small_fixture["c"],
            neural_rendering_resolution=64,
            random="midpoint",
        )
    finally:
        G.reproduce_sr_aliasing = True
    assert torch.equal(out["image_raw"], rendered)
    assert torch.equal(out["image"], nr64_run["image_nr64"])


def test_multiview_render_equals_separate_renders(
    G: TriPlaneGenerator,
    small_fixture: dict,
    planes: torch.Tensor,
    mapping_run: dict,
    main_run: dict,
) -> None:
    fx, ws = small_fixture, mapping_run["ws"]
    second = G.render_planes(planes, ws, fx["c_cond"], random="midpoint")
    both = G.render_planes(
        planes, ws, torch.stack([fx["c"], fx["c_cond"]], dim=1), random="midpoint"
    )
    for key in ("image", "image_raw", "image_depth"):
        views = both[key].unflatten(0, (2, 2))
        assert_close(views[:, 0], main_run[key], what=key)
        assert_close(views[:, 1], second[key], what=key)


class TestRandomSources:
    """The renderer alone (no SR) at a few rays per side, so each render is cheap."""

    RES = 8

    def _render(self, G, fx, planes, random):
        c = fx["c"]
        origins, dirs = G.ray_sampler(
            c[:, :16].view(-1, 4, 4), c[:, 16:25].view(-1, 3, 3), self.RES
        )
        return G.renderer(planes, G.decoder, origins, dirs, G.rendering_kwargs, random=random)

    def test_generator_and_global_rng(self, G, small_fixture, planes) -> None:
        a = self._render(G, small_fixture, planes, torch.Generator().manual_seed(5))
        b = self._render(G, small_fixture, planes, torch.Generator().manual_seed(5))
        c = self._render(G, small_fixture, planes, torch.Generator().manual_seed(6))
        assert torch.equal(a.features, b.features) and torch.equal(a.depths_fine, b.depths_fine)
        assert not torch.equal(a.depths_coarse, c.depths_coarse)
        torch.manual_seed(7)
        d = self._render(G, small_fixture, planes, None)
        torch.manual_seed(7)
        assert torch.equal(d.features, self._render(G, small_fixture, planes, None).features)

    def test_midpoint_mode(self, G, small_fixture, planes) -> None:
        out = self._render(G, small_fixture, planes, "midpoint")
        d = 12
        edges = torch.linspace(2.25, 3.3, d)
        torch.testing.assert_close(
            out.depths_coarse[0, 0, :, 0], edges + 0.5 * (3.3 - 2.25) / (d - 1)
        )
        # All importance samples of a ray coincide (where the CDF reaches 0.5).
        assert torch.equal(out.depths_fine, out.depths_fine[:, :, :1].expand_as(out.depths_fine))

    def test_callable_sees_both_draws_in_order(self, G, small_fixture, planes) -> None:
        calls = []

        def fn(shape, role):
            calls.append((role, shape))
            return torch.full(shape, 0.5)

        out = self._render(G, small_fixture, planes, fn)
        d, d_imp, m = 12, 12, self.RES**2
        assert calls == [("stratified", (2, m, d, 1)), ("importance", (2 * m, d_imp))]
        assert torch.equal(
            out.features, self._render(G, small_fixture, planes, "midpoint").features
        )

    def test_auto_ray_limits_and_disparity_sampling(self, G, small_fixture, planes) -> None:
        """The branches the FFHQ config never takes (no fixture values): sane depths, both draws used."""
        saved = dict(G.rendering_kwargs)
        try:
            G.rendering_kwargs.update(ray_start="auto", ray_end="auto")
            auto = self._render(G, small_fixture, planes, "midpoint")
            G.rendering_kwargs.update(saved, disparity_space_sampling=True)
            disparity = self._render(G, small_fixture, planes, "midpoint")
        finally:
            G.rendering_kwargs.clear()
            G.rendering_kwargs.update(saved)
        # A camera at radius 2.7 sees the unit box between about 2.2 and 3.2.
        near, far = auto.depths_coarse[..., 0, 0], auto.depths_coarse[..., -1, 0]
        assert (near > 1.8).all() and (far < 3.6).all() and (far > near).all()
        d = disparity.depths_coarse[..., 0]
        # Uniform in disparity; the jitter of the last bin reaches past ray_end (official).
        assert (d.diff(dim=-1) > 0).all() and (d > 2.25).all() and (d < 3.5).all()
        assert (d.diff(dim=-1).diff(dim=-1) > 0).all()  # steps grow with depth
        for out in (auto, disparity):
            assert torch.isfinite(out.features).all() and torch.isfinite(out.depth).all()

    def test_bad_sources(self, G, small_fixture, planes) -> None:
        with pytest.raises(UserInputError, match="only 1 were prepared"):
            self._render(
                G, small_fixture, planes, ReplayRandom([torch.rand(2, self.RES**2, 12, 1)])
            )
        with pytest.raises(ShapeError, match="stratified"):
            self._render(G, small_fixture, planes, lambda shape, role: torch.rand(3, 3))
        with pytest.raises(ConfigError, match="midpoint"):
            self._render(G, small_fixture, planes, "middle")
        with pytest.raises(ConfigError):
            self._render(G, small_fixture, planes, 0.5)


def test_input_errors(
    G: TriPlaneGenerator, small_fixture: dict, planes: torch.Tensor, mapping_run: dict
) -> None:
    fx, ws = small_fixture, mapping_run["ws"]
    with pytest.raises(ShapeError, match="c"):
        G.render_planes(planes, ws, fx["c"][:, :16], random="midpoint")
    with pytest.raises(ShapeError, match="ws"):
        G.render_planes(planes, ws[:, :5], fx["c"], random="midpoint")
    with pytest.raises(ShapeError, match="c"):
        G.render_planes(planes, ws, fx["c"][:1], random="midpoint")
    with pytest.raises(ShapeError, match="z"):
        G.mapping(fx["z"][:, :10], fx["c"])
    with pytest.raises(ConfigError, match="noise_mode"):
        G.backbone_planes(ws, noise_mode="fixed")
    with pytest.raises(ConfigError, match="impl"):
        G.set_ops_impl("fast")


def test_build_errors(small_fixture: dict) -> None:
    fx = small_fixture
    bad_sr = dict(
        fx["init_kwargs"],
        rendering_kwargs=dict(
            fx["rendering_kwargs_attr"],
            superresolution_module="training.superresolution.SuperresolutionHybrid3X",
        ),
    )
    with pytest.raises(ConfigError, match="SuperresolutionHybrid8XDC"):
        build_generator(bad_sr)
    with pytest.raises(ConfigError, match="img_resolution"):
        build_generator(dict(fx["init_kwargs"], img_resolution=256))  # 2X makes 128 only
    with pytest.raises(ConfigError, match="channel_bass"):
        build_generator(dict(fx["init_kwargs"], channel_bass=1))
    missing = {k: v for k, v in fx["rendering_kwargs_attr"].items() if k != "ray_start"}
    with pytest.raises(ConfigError, match="ray_start"):
        build_generator(fx["init_kwargs"], rendering_kwargs=missing)
    G = build_generator(
        dict(
            fx["init_kwargs"],
            rendering_kwargs=dict(
                fx["rendering_kwargs_attr"], superresolution_module="SuperresolutionHybrid2X"
            ),
        ),
        plane_order="corrected",
    )
    assert torch.equal(G.renderer.plane_axes, plane_axes_matrices("corrected"))
    assert G.neural_rendering_resolution == 64


def test_gradients_flow_in_training_mode(small_fixture: dict) -> None:
    """Train mode (non-fused) at nr 64, where the official in-place SR add would break backward."""
    fx = small_fixture
    G = _build(fx).train()
    G.rendering_kwargs.update(depth_resolution=4, depth_resolution_importance=4)  # cheaper
    G.decoder.requires_grad_(True)
    ws = fx["ws"][:1].clone().requires_grad_(True)
    out = G.synthesis(ws, fx["c"][:1], neural_rendering_resolution=64, random="midpoint", **SYNTH)
    (out["image"].square().mean() + out["image_raw"].mean() + out["image_depth"].mean()).backward()
    assert ws.grad is not None and torch.isfinite(ws.grad).all() and ws.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in G.decoder.parameters())
