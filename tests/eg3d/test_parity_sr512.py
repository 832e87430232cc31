"""Parity with the official EG3D on the SR512 config (``eg3d_sr512_8xdc.pt``).

``SuperresolutionHybrid8XDC`` at 512 px (the SR module of the released FFHQ 512 models) behind a
small backbone, with ``sr_num_fp16_res=4`` so every SR layer clamps at 256 even in float32.
One 8XDC pass over the batch of 2 costs about 8 s on 2 CPU threads; each variant runs it once.
The variants that only feed other inputs through the same code (truncated, frontal-conditioned,
non-fused) are marked ``slow`` so ``-m "not slow"`` keeps the core parity (main run with every
intermediate, injected draws, nr 128, the clamp check) at about half the cost.
"""

from __future__ import annotations

import pytest
import torch

from sym3d_eg3d.networks import ReplayRandom, TriPlaneGenerator, build_generator
from sym3d_eg3d.networks.rendering import project_onto_planes, sample_from_planes

from ._parity import SYNTH, mapping_variants, plane_views

FX = "sr512"
CHECKSUMS = ("sum", "abssum", "sqsum")


@pytest.fixture(scope="module")
def G(sr512_fixture: dict) -> TriPlaneGenerator:
    fx = sr512_fixture
    G = build_generator(
        fx["init_kwargs"],
        rendering_kwargs=fx["rendering_kwargs_attr"],
        neural_rendering_resolution=fx["neural_rendering_resolution"],
    )
    G.load_state_dict(fx["state_dict"], strict=True)
    return G.eval().requires_grad_(False)


def _image_entries(name: str, image: torch.Tensor) -> dict:
    """The stored form of a 512x512 image: subsets and float64 per-channel sums."""
    img64 = image.double()
    return {
        f"{name}_strided8": image[..., ::8, ::8],
        f"{name}_crop_r240_272_c240_272": image[..., 240:272, 240:272],
        f"{name}_sum_f64": img64.sum(dim=(-2, -1)),
        f"{name}_abssum_f64": img64.abs().sum(dim=(-2, -1)),
        f"{name}_sqsum_f64": img64.square().sum(dim=(-2, -1)),
    }


def _variant(out: dict, suffix: str, extra: tuple[str, ...] = ()) -> dict:
    result = _image_entries(f"image{suffix}", out["image"])
    for key in ("image_raw", "image_depth", *extra):
        result[f"{key}{suffix}"] = out[key]
    return result


# ---------------------------------------------------------------------------------------------
# Outputs, computed once per module
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mapping_run(G: TriPlaneGenerator, sr512_fixture: dict) -> dict:
    return mapping_variants(G, sr512_fixture)


@pytest.fixture(scope="module")
def planes(G: TriPlaneGenerator, mapping_run: dict) -> torch.Tensor:
    return G.backbone_planes(mapping_run["ws"], **SYNTH)


@pytest.fixture(scope="module")
def planes_run(planes: torch.Tensor) -> dict:
    return plane_views(planes, crop=False)


@pytest.fixture(scope="module")
def main_run(
    G: TriPlaneGenerator, sr512_fixture: dict, planes: torch.Tensor, mapping_run: dict
) -> dict:
    out = G.render_planes(
        planes, mapping_run["ws"], sr512_fixture["c"], random="midpoint", return_intermediates=True
    )
    feat = out["feature_image"]
    sr_img, sr_x, resized = G.superresolution.resize_inputs(feat[:, :3], feat)
    assert resized
    out["sr_block0_in_x_ch0_4"] = sr_x[:, :4]
    out["sr_block0_in_img"] = sr_img
    return out


@pytest.fixture(scope="module")
def injected_run(
    G: TriPlaneGenerator, sr512_fixture: dict, planes: torch.Tensor, mapping_run: dict
) -> dict:
    fx = sr512_fixture
    draws = ReplayRandom([fx["rand_stratified"], fx["rand_importance"]])
    out = G.render_planes(
        planes, mapping_run["ws"], fx["c"], random=draws, return_intermediates=True
    )
    assert draws.remaining == 0
    return _variant(out, "_injected", ("depths_coarse", "depths_fine", "weights_samples"))


@pytest.fixture(scope="module")
def nr128_run(
    G: TriPlaneGenerator, sr512_fixture: dict, planes: torch.Tensor, mapping_run: dict
) -> dict:
    out = G.render_planes(
        planes,
        mapping_run["ws"],
        sr512_fixture["c"],
        neural_rendering_resolution=128,
        random="midpoint",
        return_intermediates=True,
    )
    assert torch.equal(out["image_raw"], out["feature_image"][:, :3])  # 8XDC has no aliasing
    return _variant(out, "_nr128")


@pytest.fixture(scope="module")
def sr_clamp_run(G: TriPlaneGenerator, sr512_fixture: dict) -> dict:
    """The SR module alone on the stored features with ws * 300: ToRGB outputs hit the clamp."""
    fx = sr512_fixture
    feat = fx["feature_image"]
    sr = G.superresolution(
        feat[:, :3], feat, fx["ws"] * fx["sr_clamp_ws_scale"], noise_mode="none", force_fp32=True
    )
    return _image_entries("image_sr_clamp", sr.image)


@pytest.fixture(scope="module")
def trunc_run(G: TriPlaneGenerator, sr512_fixture: dict, mapping_run: dict) -> dict:
    return _variant(
        G.synthesis(mapping_run["ws_trunc"], sr512_fixture["c"], random="midpoint", **SYNTH),
        "_trunc",
    )


@pytest.fixture(scope="module")
def cond_trunc_run(G: TriPlaneGenerator, sr512_fixture: dict, mapping_run: dict) -> dict:
    out = G.synthesis(mapping_run["ws_cond_trunc"], sr512_fixture["c"], random="midpoint", **SYNTH)
    return _variant(out, "_cond_trunc")


@pytest.fixture(scope="module")
def nonfused_run(G: TriPlaneGenerator, sr512_fixture: dict, mapping_run: dict) -> dict:
    G.train()
    try:
        out = G.synthesis(mapping_run["ws"], sr512_fixture["c"], random="midpoint", **SYNTH)
    finally:
        G.eval()
    return _variant(out, "_nonfused")


@pytest.fixture(scope="module")
def points_run(G: TriPlaneGenerator, sr512_fixture: dict, planes: torch.Tensor) -> dict:
    fx = sr512_fixture
    coords, dirs = fx["sample_coordinates"], fx["sample_directions"]
    box_warp = G.rendering_kwargs["box_warp"]
    mixed = G.sample_planes(planes, coords, dirs)  # planes of fx ws, as sample_mixed computes them
    trunc = G.sample_mixed(coords, dirs, fx["ws_trunc"], **SYNTH)
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
# Parity tables
# ---------------------------------------------------------------------------------------------


def _image_keys(name: str) -> list[str]:
    return [f"{name}_strided8", f"{name}_crop_r240_272_c240_272"]


FAST = {
    "mapping_run": ["ws", "ws_trunc", "ws_trunc_cutoff7", "ws_cond_trunc", "ws_c_zero"],
    "planes_run": ["planes_strided8", "planes_row128", "planes_col37"],
    "main_run": [
        "ray_origins",
        "ray_directions",
        "depths_coarse",
        "depths_fine",
        "weights_samples",
        "feature_image",
        "image_raw",
        "image_depth",
        "sr_block0_in_x_ch0_4",
        "sr_block0_in_img",
        "image",
    ],
    "injected_run": [
        "depths_coarse_injected",
        "depths_fine_injected",
        "weights_samples_injected",
        "image_raw_injected",
        "image_depth_injected",
        *_image_keys("image_injected"),
    ],
    "nr128_run": ["image_raw_nr128", "image_depth_nr128", *_image_keys("image_nr128")],
    "sr_clamp_run": _image_keys("image_sr_clamp"),
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
SLOW = {
    "trunc_run": ["image_raw_trunc", "image_depth_trunc", *_image_keys("image_trunc")],
    "cond_trunc_run": [
        "image_raw_cond_trunc",
        "image_depth_cond_trunc",
        *_image_keys("image_cond_trunc"),
    ],
    "nonfused_run": ["image_raw_nonfused", "image_depth_nonfused", *_image_keys("image_nonfused")],
}
SUMMED = {  # run -> image name whose float64 sums are stored
    "injected_run": "image_injected",
    "nr128_run": "image_nr128",
    "sr_clamp_run": "image_sr_clamp",
    "trunc_run": "image_trunc",
    "cond_trunc_run": "image_cond_trunc",
    "nonfused_run": "image_nonfused",
}


def _params(table: dict, marks=()) -> list:
    return [
        pytest.param(run, key, id=key, marks=marks) for run, keys in table.items() for key in keys
    ]


@pytest.mark.parametrize("run,key", _params(FAST) + _params(SLOW, pytest.mark.slow))
def test_parity(
    run: str, key: str, request: pytest.FixtureRequest, sr512_fixture: dict, parity
) -> None:
    outputs = request.getfixturevalue(run)
    parity.check(f"{FX}/{key}", outputs[key], sr512_fixture[key])


def _sum_params() -> list:
    params = [
        pytest.param("planes_run", "planes", s, 256 * 256, id=f"planes_{s}_f64") for s in CHECKSUMS
    ]
    for run, name in SUMMED.items():
        marks = pytest.mark.slow if run in SLOW else ()
        params += [
            pytest.param(run, name, s, 512 * 512, id=f"{name}_{s}_f64", marks=marks)
            for s in CHECKSUMS
        ]
    return params


@pytest.mark.parametrize("run,name,kind,numel", _sum_params())
def test_checksums(
    run: str,
    name: str,
    kind: str,
    numel: int,
    request: pytest.FixtureRequest,
    sr512_fixture: dict,
    parity,
) -> None:
    outputs = request.getfixturevalue(run)
    key = f"{name}_{kind}_f64"
    abssum = sr512_fixture[f"{name}_abssum_f64"]
    parity.check_sum(
        f"{FX}/{key}", outputs[key], sr512_fixture[key], kind, abssum=abssum, numel=numel
    )


def test_stored_image_list_is_covered(sr512_fixture: dict) -> None:
    assert sorted(sr512_fixture["meta"]["checksum_stored_images"]) == sorted(SUMMED.values())


def test_sr512_structure(G: TriPlaneGenerator, sr512_fixture: dict) -> None:
    state = G.state_dict()
    assert list(state) == list(sr512_fixture["state_dict"])
    sr_keys = [k for k in state if k.startswith("superresolution.")]
    assert sr_keys and all(
        k.split(".")[1] in ("block0", "block1") for k in sr_keys
    )  # no module-level filter
    assert sum(p.numel() for p in G.superresolution.parameters()) == 1_649_578
    assert sum(p.numel() for p in G.parameters()) == sr512_fixture["meta"]["total_params"]
    for block in (G.superresolution.block0, G.superresolution.block1):
        assert block.use_fp16
        assert block.conv0.conv_clamp == block.conv1.conv_clamp == block.torgb.conv_clamp == 256
    assert all(
        getattr(G.backbone.synthesis, f"b{r}").conv1.conv_clamp is None
        for r in G.backbone.synthesis.block_resolutions
    )
