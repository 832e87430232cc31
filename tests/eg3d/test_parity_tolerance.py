"""The parity tolerances are wide enough for float32 rounding and narrow enough for port errors.

* Rounding: a deep float32 network against the same network in float64 (the spread that any
  summation order on any CPU can produce is of this size) stays well inside the bounds, for
  element-wise values and for float64 checksums.
* Port errors: the SMALL generator with one deliberate bug at a time, patched in with
  ``monkeypatch`` (a flipped sign in the renderer's plane projection, the decoder's output bias
  dropped, two planes swapped, the mapping's first bias dropped), fails the same comparison that
  ``test_parity_small.py`` runs by a factor of at least 100; unpatched it passes.
* The CPU description printed in the parity report parses the instruction-set flags.
"""

from __future__ import annotations

import pytest
import torch

from sym3d_eg3d.networks import TriPlaneGenerator, build_generator, rendering

from ._parity import SYNTH, plane_views
from ._tolerance import RTOL, checksum, elementwise
from .conftest import cpu_description

MARGIN = 100  # a port error must exceed its tolerance this many times


def _deep_chain(x: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
    for w in weights:
        x = torch.nn.functional.leaky_relu(x @ w, 0.2) * 2**0.5  # keeps the magnitude ~1
    return x * 100.0  # large values, as on the SR's clamp path


def test_float32_rounding_of_a_deep_network_is_within_tolerance() -> None:
    """32 layers of 512-term dot products: float32 vs float64 stays below a tenth of the bound."""
    gen = torch.Generator().manual_seed(0)
    weights = [
        torch.randn(512, 512, generator=gen, dtype=torch.float64) / 512**0.5 for _ in range(32)
    ]
    x = torch.randn(64, 512, generator=gen, dtype=torch.float64)
    exact = _deep_chain(x, weights)
    f32 = _deep_chain(x.float(), [w.float() for w in weights])
    err_ulps = (
        (f32.double() - exact).abs().max() / exact.abs().max() / torch.finfo(torch.float32).eps
    ).item()
    assert err_ulps > 1  # the chain does round: the comparison below is not between equal tensors
    result = elementwise(f32, exact.float())
    assert result.ok and result.ratio < 0.1, result
    for kind, ref in (
        ("sum", exact.sum(-1)),
        ("abssum", exact.abs().sum(-1)),
        ("sqsum", exact.square().sum(-1)),
    ):
        ours = {
            "sum": f32.double().sum(-1),
            "abssum": f32.double().abs().sum(-1),
            "sqsum": f32.double().square().sum(-1),
        }[kind]
        res = checksum(ours, ref, kind, abssum=exact.abs().sum(-1), numel=512)
        assert res.ok and res.ratio < 0.1, (kind, res)


def test_bounds_follow_the_magnitude() -> None:
    """The same relative error passes at any scale; an error of many rtol fails at any scale."""
    gen = torch.Generator().manual_seed(1)
    base = torch.randn(1000, generator=gen)
    for scale in (1e-3, 1.0, 260.0, 1e5):
        ref = base * scale
        assert elementwise(ref * (1 + RTOL / 2), ref).ok
        broken = elementwise(ref * (1 + MARGIN * 3 * RTOL), ref)  # bound <= 2 rtol |r|
        assert broken.ratio > MARGIN, (scale, broken)
    # Checksums of one channel of positive values: a uniform relative change of rtol/2 passes,
    # one of 3 rtol (more than the own + typical magnitude allows) fails.
    ref = (base.abs() + 1).double()
    for kind, fn in (("sum", torch.sum), ("sqsum", lambda t: t.square().sum())):
        abssum = ref.sum()
        assert checksum(fn(ref * (1 + RTOL / 2)), fn(ref), kind, abssum=abssum, numel=1000).ok
        assert not checksum(fn(ref * (1 + 3 * RTOL)), fn(ref), kind, abssum=abssum, numel=1000).ok


def test_nan_and_shape_mismatch_fail() -> None:
    ref = torch.ones(4)
    assert elementwise(torch.tensor([1.0, float("nan"), 1.0, 1.0]), ref).ratio == float("inf")
    assert elementwise(torch.tensor([float("inf"), 1.0]), torch.tensor([float("inf"), 1.0])).ok
    with pytest.raises(AssertionError, match="shape"):
        elementwise(torch.ones(3), ref)
    with pytest.raises(ValueError, match="abssum"):
        checksum(ref, ref, "sum", abssum=ref[:2], numel=10)


# ---------------------------------------------------------------------------------------------
# Deliberately broken ports fail
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def G(small_fixture: dict) -> TriPlaneGenerator:
    fx = small_fixture
    G = build_generator(
        fx["init_kwargs"],
        rendering_kwargs=fx["rendering_kwargs_attr"],
        neural_rendering_resolution=fx["neural_rendering_resolution"],
    )
    G.load_state_dict(fx["state_dict"], strict=True)
    return G.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def ref_planes(G: TriPlaneGenerator, small_fixture: dict) -> torch.Tensor:
    return G.backbone_planes(small_fixture["ws"], **SYNTH)


def _flip_v(monkeypatch: pytest.MonkeyPatch, G: TriPlaneGenerator) -> None:
    project = rendering.project_onto_planes
    sign = torch.tensor([1.0, -1.0])
    monkeypatch.setattr(
        rendering, "project_onto_planes", lambda axes, pts: project(axes, pts) * sign
    )


def _drop_decoder_bias(monkeypatch: pytest.MonkeyPatch, G: TriPlaneGenerator) -> None:
    monkeypatch.setattr(G.decoder.net[2], "bias_gain", 0.0)  # the bias is multiplied by it


def _swap_planes(monkeypatch: pytest.MonkeyPatch, G: TriPlaneGenerator) -> None:
    rows = rendering.plane_rows
    monkeypatch.setattr(rendering, "plane_rows", lambda planes: rows(planes[:, [0, 2, 1]]))


BREAKS = {
    "flip_sign_in_projection": _flip_v,
    "drop_decoder_bias": _drop_decoder_bias,
    "swap_planes": _swap_planes,
}


def _render_ratios(G: TriPlaneGenerator, fx: dict, planes: torch.Tensor) -> dict[str, float]:
    out = G.render_planes(planes, fx["ws"], fx["c"], random="midpoint")
    return {
        key: elementwise(out[key], fx[key]).ratio for key in ("image", "image_raw", "image_depth")
    }


def test_unbroken_render_passes(
    G: TriPlaneGenerator, small_fixture: dict, ref_planes: torch.Tensor
) -> None:
    ratios = _render_ratios(G, small_fixture, ref_planes)
    assert max(ratios.values()) <= 1, ratios


@pytest.mark.parametrize("name", list(BREAKS))
def test_broken_render_fails_by_a_wide_margin(
    name: str, G: TriPlaneGenerator, small_fixture: dict, ref_planes: torch.Tensor, monkeypatch
) -> None:
    BREAKS[name](monkeypatch, G)
    ratios = _render_ratios(G, small_fixture, ref_planes)
    # The final image and the raw render both fail (each alone would fail the parity run).
    assert ratios["image"] > MARGIN and ratios["image_raw"] > MARGIN, ratios


def test_broken_mapping_fails_ws(G: TriPlaneGenerator, small_fixture: dict, monkeypatch) -> None:
    fx = small_fixture
    assert elementwise(G.mapping(fx["z"], fx["c"]), fx["ws"]).ok
    monkeypatch.setattr(G.backbone.mapping.fc0, "bias_gain", 0.0)
    # The mapping's biases are scaled by lr_multiplier 0.01, so this moves ws by only ~4e-3
    # (1e-3 relative): still 30 times the tolerance.
    assert elementwise(G.mapping(fx["z"], fx["c"]), fx["ws"]).ratio > 10


def test_swapped_planes_fail_the_checksums(small_fixture: dict, ref_planes: torch.Tensor) -> None:
    fx = small_fixture
    for planes, expect_ok in ((ref_planes, True), (ref_planes[:, [0, 2, 1]], False)):
        views = plane_views(planes, crop=False)
        for kind in ("sum", "abssum", "sqsum"):
            key = f"planes_{kind}_f64"
            res = checksum(
                views[key], fx[key], kind, abssum=fx["planes_abssum_f64"], numel=256 * 256
            )
            assert res.ok if expect_ok else res.ratio > MARGIN, (key, res)


# ---------------------------------------------------------------------------------------------
# The CPU line of the report
# ---------------------------------------------------------------------------------------------

CPUINFO = """processor\t: 0
model name\t: Example CPU with AMX
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_bf16 amx_tile amx_bf16 amx_int8

processor\t: 1
model name\t: Example CPU with AMX
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_bf16 amx_tile amx_bf16 amx_int8
"""


def test_cpu_description_lists_the_instruction_sets() -> None:
    cpu = cpu_description(CPUINFO)
    assert cpu["model"] == "Example CPU with AMX"
    assert cpu["flags"] == [
        "sse4_2",
        "avx",
        "fma",
        "avx2",
        "avx512f",
        "avx512_bf16",
        "amx_tile",
        "amx_bf16",
        "amx_int8",
    ]
    assert "avx512_fp16" in cpu["flags_absent"] and "amx_tile" not in cpu["flags_absent"]
    assert cpu["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert cpu_description("")["model"] == "unknown" and cpu_description("")["flags"] == []
