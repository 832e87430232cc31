"""Structure of the full ffhq512-128 generator, and of the SR modules the value fixtures do not cover.

* ffhq512-128 built from the official init kwargs has exactly the official state_dict (keys in
  order, shapes, dtypes, parameter/buffer kinds), parameter counts and module tree.
* 4X and 8X (no value fixtures) build with the official key layout, run at their resolutions and
  follow their resize rules; the key-layout helper is first validated on 2X and 8XDC.
"""

from __future__ import annotations

import pytest
import torch

from sym3d.errors import ShapeError
from sym3d_eg3d.networks import SUPERRESOLUTION_MODULES, TriPlaneGenerator, build_generator

from ._tolerance import assert_close

# ---------------------------------------------------------------------------------------------
# ffhq512-128
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ffhq512(ffhq512_keys: dict) -> TriPlaneGenerator:
    post = ffhq512_keys["post_construction_state"]
    return build_generator(
        ffhq512_keys["init_kwargs"], neural_rendering_resolution=post["neural_rendering_resolution"]
    )


def test_state_dict_matches_official(ffhq512: TriPlaneGenerator, ffhq512_keys: dict) -> None:
    ours = ffhq512.state_dict()
    ref = ffhq512_keys["state_dict"]
    assert len(ours) == ffhq512_keys["num_state_dict_keys"] == 177
    assert list(ours) == list(ref)
    params = dict(ffhq512.named_parameters())
    for key, spec in ref.items():
        assert list(ours[key].shape) == spec["shape"], key
        assert str(ours[key].dtype).removeprefix("torch.") == spec["dtype"], key
        assert ("param" if key in params else "buffer") == spec["kind"], key


def test_parameter_counts(ffhq512: TriPlaneGenerator, ffhq512_keys: dict) -> None:
    assert (
        sum(p.numel() for p in ffhq512.parameters()) == ffhq512_keys["total_params"] == 30_662_136
    )
    for prefix, count in ffhq512_keys["params_by_submodule"].items():
        module = ffhq512.get_submodule(prefix)
        assert sum(p.numel() for p in module.parameters()) == count, prefix
    state = ffhq512.state_dict()
    params = dict(ffhq512.named_parameters())
    buffers = sum(v.numel() for k, v in state.items() if k not in params)
    assert buffers == ffhq512_keys["total_buffer_elements"]
    assert sum(v.numel() for v in state.values()) == ffhq512_keys["total_state_dict_elements"]


def test_module_tree_and_attributes(ffhq512: TriPlaneGenerator, ffhq512_keys: dict) -> None:
    ours = {name: type(m).__name__ for name, m in ffhq512.named_modules()}
    official = {
        name: spec["class"].rsplit(".", 1)[-1] for name, spec in ffhq512_keys["modules"].items()
    }
    assert ours == official
    assert ffhq512.num_ws == ffhq512_keys["num_ws"]
    synthesis = ffhq512.backbone.synthesis
    channels = {
        str(r): getattr(synthesis, f"b{r}").conv1.out_channels for r in synthesis.block_resolutions
    }
    assert channels == ffhq512_keys["backbone_channels_dict"]
    assert ffhq512.neural_rendering_resolution == 128
    assert (
        list(ffhq512.renderer.plane_axes.shape)
        == ffhq512_keys["non_state_dict_tensor_attributes"]["renderer.plane_axes"]["shape"]
    )
    assert ffhq512_keys["nonpersistent_buffers"] == []
    assert all(
        block.use_fp16 for block in (ffhq512.superresolution.block0, ffhq512.superresolution.block1)
    )
    assert ffhq512.superresolution.block1.torgb.conv_clamp == 256


def test_loads_an_official_layout_strictly(ffhq512: TriPlaneGenerator, ffhq512_keys: dict) -> None:
    fake = {
        k: torch.zeros(spec["shape"], dtype=getattr(torch, spec["dtype"]))
        for k, spec in ffhq512_keys["state_dict"].items()
    }
    result = ffhq512.load_state_dict(fake, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


# ---------------------------------------------------------------------------------------------
# Superresolution layouts
# ---------------------------------------------------------------------------------------------

SR_LAYOUT = {  # official constructor facts: (block0 no-up?, (cin, cout, res) per block, module filter?)
    "SuperresolutionHybrid2X": (True, ((32, 128, 64), (128, 64, 128)), True),
    "SuperresolutionHybrid4X": (True, ((32, 128, 128), (128, 64, 256)), True),
    "SuperresolutionHybrid8X": (False, ((32, 128, 256), (128, 64, 512)), True),
    "SuperresolutionHybrid8XDC": (False, ((32, 256, 256), (256, 128, 512)), False),
}
OUT_RES = {
    "SuperresolutionHybrid2X": 128,
    "SuperresolutionHybrid4X": 256,
    "SuperresolutionHybrid8X": 512,
    "SuperresolutionHybrid8XDC": 512,
}


def sr_state_layout(name: str) -> dict[str, list[int]]:
    """Expected ``superresolution.*`` state_dict keys (in order) and shapes of an SR module."""
    _, blocks, module_filter = SR_LAYOUT[name]
    out: dict[str, list[int]] = {}
    if module_filter:
        out["superresolution.resample_filter"] = [4, 4]
    for b, (cin, cout, res) in enumerate(blocks):
        p = f"superresolution.block{b}"
        out[f"{p}.resample_filter"] = [4, 4]
        for conv, c_in in (("conv0", cin), ("conv1", cout)):
            out.update(
                {
                    f"{p}.{conv}.weight": [cout, c_in, 3, 3],
                    f"{p}.{conv}.noise_strength": [],
                    f"{p}.{conv}.bias": [cout],
                    f"{p}.{conv}.resample_filter": [4, 4],
                    f"{p}.{conv}.noise_const": [res, res],
                    f"{p}.{conv}.affine.weight": [c_in, 512],
                    f"{p}.{conv}.affine.bias": [c_in],
                }
            )
        out.update(
            {
                f"{p}.torgb.weight": [3, cout, 1, 1],
                f"{p}.torgb.bias": [3],
                f"{p}.torgb.affine.weight": [cout, 512],
                f"{p}.torgb.affine.bias": [cout],
            }
        )
    return out


def small_kwargs(sr_name: str, sr_num_fp16_res: int = 0) -> dict:
    """A small generator (SMALL fixture sizes) with the given SR module and few depth samples."""
    return {
        "z_dim": 64,
        "w_dim": 512,
        "mapping_kwargs": {"num_layers": 2},
        "channel_base": 2048,
        "channel_max": 64,
        "fused_modconv_default": "inference_only",
        "rendering_kwargs": {
            "image_resolution": OUT_RES[sr_name],
            "disparity_space_sampling": False,
            "clamp_mode": "softplus",
            "superresolution_module": f"training.superresolution.{sr_name}",
            "c_gen_conditioning_zero": False,
            "gpc_reg_prob": 0.5,
            "c_scale": 1.0,
            "superresolution_noise_mode": "none",
            "density_reg": 0.25,
            "density_reg_p_dist": 0.004,
            "reg_type": "l1",
            "decoder_lr_mul": 1.0,
            "sr_antialias": True,
            "depth_resolution": 4,
            "depth_resolution_importance": 4,
            "ray_start": 2.25,
            "ray_end": 3.3,
            "box_warp": 1,
            "avg_camera_radius": 2.7,
            "avg_camera_pivot": [0, 0, 0.2],
        },
        "num_fp16_res": 0,
        "sr_num_fp16_res": sr_num_fp16_res,
        "sr_kwargs": {
            "channel_base": 2048,
            "channel_max": 64,
            "fused_modconv_default": "inference_only",
        },
        "conv_clamp": None,
        "c_dim": 25,
        "img_resolution": OUT_RES[sr_name],
        "img_channels": 3,
    }


def _sr_state(G: TriPlaneGenerator) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in G.state_dict().items() if k.startswith("superresolution.")}


def test_layout_helper_matches_the_value_fixtures(small_fixture: dict, ffhq512_keys: dict) -> None:
    two_x = {
        k: list(v.shape)
        for k, v in small_fixture["state_dict"].items()
        if k.startswith("superresolution.")
    }
    assert list(two_x.items()) == list(sr_state_layout("SuperresolutionHybrid2X").items())
    eight_dc = {
        k: s["shape"]
        for k, s in ffhq512_keys["state_dict"].items()
        if k.startswith("superresolution.")
    }
    assert list(eight_dc.items()) == list(sr_state_layout("SuperresolutionHybrid8XDC").items())


@pytest.mark.parametrize("name", list(SR_LAYOUT))
def test_sr_modules_build_with_the_official_layout(name: str) -> None:
    G = build_generator(small_kwargs(name, sr_num_fp16_res=4))
    assert type(G.superresolution).__name__ == name and SUPERRESOLUTION_MODULES[name] is type(
        G.superresolution
    )
    assert list(_sr_state(G).items()) == list(sr_state_layout(name).items())
    no_up = SR_LAYOUT[name][0]
    assert type(G.superresolution.block0).__name__ == (
        "SynthesisBlockNoUp" if no_up else "SynthesisBlock"
    )
    assert G.superresolution.block0.conv0.up == (1 if no_up else 2)
    assert G.superresolution.block1.torgb.conv_clamp == 256  # sr_num_fp16_res > 0


def _camera(batch: int = 1) -> torch.Tensor:
    """Frontal camera at radius 2.7 (OpenCV axes, looking at the origin along -z world)."""
    cam2world = torch.tensor([[1.0, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 2.7], [0, 0, 0, 1]])
    intrinsics = torch.tensor([[4.2647, 0, 0.5], [0, 4.2647, 0.5], [0, 0, 1]])
    return torch.cat([cam2world.reshape(-1), intrinsics.reshape(-1)]).expand(batch, 25).clone()


@pytest.fixture(scope="module")
def four_x() -> tuple[TriPlaneGenerator, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    G = build_generator(small_kwargs("SuperresolutionHybrid4X")).eval().requires_grad_(False)
    ws = G.mapping(torch.randn(1, 64), _camera())
    return G, ws, G.backbone_planes(ws, noise_mode="const")


def test_4x_resizes_smaller_inputs_only(four_x) -> None:
    G, ws, planes = four_x
    sr = G.superresolution
    assert sr.needs_resize(64) and not sr.needs_resize(128) and not sr.needs_resize(256)  # '<' rule
    out = G.render_planes(
        planes,
        ws,
        _camera(),
        neural_rendering_resolution=64,
        random="midpoint",
        return_intermediates=True,
    )
    assert out["image"].shape == (1, 3, 256, 256) and out["image_raw"].shape == (1, 3, 64, 64)
    assert torch.equal(out["image_raw"], out["feature_image"][:, :3])  # resized: no aliasing
    assert torch.isfinite(out["image"]).all()
    with pytest.raises(
        ShapeError
    ):  # 256 is not resized and does not fit block0 (official asserts too)
        sr(torch.zeros(1, 3, 256, 256), torch.zeros(1, 32, 256, 256), ws, noise_mode="none")


def test_4x_aliasing_at_its_input_resolution(four_x) -> None:
    G, ws, planes = four_x
    out = G.render_planes(
        planes,
        ws,
        _camera(),
        neural_rendering_resolution=128,
        random="midpoint",
        return_intermediates=True,
    )
    assert out["image"].shape == (1, 3, 256, 256)
    feat = out["feature_image"]
    ws_sr = ws[:, -1:].repeat(1, 3, 1)
    _, block0_rgb = G.superresolution.block0(
        feat, None, ws_sr, noise_mode="none"
    )  # its ToRGB output alone
    assert_close(out["image_raw"], feat[:, :3] + block0_rgb)
    assert (out["image_raw"] - feat[:, :3]).abs().max() > 0


def test_8x_runs_at_512() -> None:
    torch.manual_seed(0)
    G = build_generator(small_kwargs("SuperresolutionHybrid8X")).eval().requires_grad_(False)
    sr = G.superresolution
    assert sr.needs_resize(64) and not sr.needs_resize(128) and sr.needs_resize(256)  # '!=' rule
    out = G(
        torch.randn(1, 64),
        _camera(),
        neural_rendering_resolution=32,
        random="midpoint",
        noise_mode="const",
    )
    assert out["image"].shape == (1, 3, 512, 512)
    assert out["image_raw"].shape == (1, 3, 32, 32) and out["image_depth"].shape == (1, 1, 32, 32)
    assert torch.isfinite(out["image"]).all()


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
def test_backbone_block_architectures(architecture: str) -> None:
    """EG3D uses 'skip'; the other StyleGAN2 layouts build with their official keys and run."""
    from sym3d_eg3d.networks.synthesis import SynthesisNetwork

    net = SynthesisNetwork(
        w_dim=32,
        img_resolution=16,
        img_channels=3,
        channel_base=256,
        channel_max=16,
        num_fp16_res=0,
        conv_clamp=None,
        architecture=architecture,
    )
    keys = list(net.state_dict())
    assert ("b8.skip.weight" in keys) == (architecture == "resnet")
    assert ("b8.torgb.weight" in keys) == (architecture == "skip")
    assert "b16.torgb.weight" in keys  # the last block always has a ToRGB
    assert net.num_ws == 1 + 2 + 2 + 1
    img = net(torch.randn(2, net.num_ws, 32), noise_mode="random")
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
