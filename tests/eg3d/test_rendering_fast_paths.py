"""The renderer's CPU fast paths equal the straightforward formulas they replace.

* :func:`sample_plane_mean` (one weighted row sum over channels-last planes) against
  :func:`sample_from_planes` (``grid_sample``, the official route) followed by the plane mean,
  for values and for gradients to the planes and to the points, with points off the planes.
* The ray marcher's regrouped colour sum against the mid-point colours of the official code.
* Ray chunking: a render does not depend on the chunk size (same draws, same depth clamp).

The end-to-end parity with the official outputs is in ``test_parity_*.py``.
"""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from sym3d_eg3d.networks.rendering import (
    ImportanceRenderer,
    MipRayMarcher2,
    plane_axes_matrices,
    plane_rows,
    sample_from_planes,
    sample_plane_mean,
)
from sym3d_eg3d.networks.triplane import OSGDecoder

from ._tolerance import assert_close


@pytest.fixture()
def scene() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    planes = torch.randn(2, 3, 8, 16, 20, generator=gen)
    # Up to 0.8 from the centre with box_warp 1: many points lie off the planes' [-0.5, 0.5] square.
    points = torch.rand(2, 3000, 3, generator=gen) * 1.6 - 0.8
    return planes, points


@pytest.mark.parametrize("order", ["released", "corrected"])
def test_plane_mean_equals_grid_sample_then_mean(scene, order: str) -> None:
    planes, points = scene
    planes = planes.clone().requires_grad_(True)
    points = points.clone().requires_grad_(True)
    axes = plane_axes_matrices(order)
    reference = sample_from_planes(axes, planes, points, 1.0).mean(1)
    fast = sample_plane_mean(axes, plane_rows(planes), tuple(planes.shape), points, 1.0)
    assert fast.shape == (2, 3000, 8)
    assert_close(fast, reference)
    # Beyond half a pixel past the edge (1/16 of the cube here) bilinear reads see only the zero border.
    outside = (points.detach().abs() > 0.5 + 1 / 16).all(-1)
    assert outside.any() and torch.all(fast[outside] == 0)

    upstream = torch.randn_like(reference)
    ref_planes, ref_points = torch.autograd.grad(reference, (planes, points), upstream)
    fast_planes, fast_points = torch.autograd.grad(fast, (planes, points), upstream)
    assert_close(fast_planes, ref_planes)
    # Point gradients scale with the plane resolution (d/dx of a bilinear patch); compare relatively.
    torch.testing.assert_close(
        fast_points, ref_points, atol=1e-4 * ref_points.abs().max().item(), rtol=0
    )


def test_plane_mean_box_warp_scales_the_cube(scene) -> None:
    planes, points = scene
    axes = plane_axes_matrices()
    fast = sample_plane_mean(axes, plane_rows(planes), tuple(planes.shape), 2 * points, 2.0)
    assert_close(fast, sample_from_planes(axes, planes, points, 1.0).mean(1))


def test_marcher_colour_sum_equals_midpoint_colours() -> None:
    gen = torch.Generator().manual_seed(1)
    colors = torch.rand(2, 50, 24, 5, generator=gen)
    densities = torch.randn(2, 50, 24, 1, generator=gen) * 3
    depths = torch.sort(torch.rand(2, 50, 24, 1, generator=gen) + 2, dim=2).values
    colors.requires_grad_(True)
    densities.requires_grad_(True)
    rgb, _, weights = MipRayMarcher2()(colors, densities, depths, {"clamp_mode": "softplus"})
    colors_mid = (colors[:, :, :-1] + colors[:, :, 1:]) / 2
    reference = (weights * colors_mid).sum(-2) * 2 - 1
    assert_close(rgb, reference)
    upstream = torch.randn(rgb.shape, generator=gen)
    grads = torch.autograd.grad(rgb, (colors, densities), upstream, retain_graph=True)
    ref_grads = torch.autograd.grad(reference, (colors, densities), upstream)
    for got, want, what in zip(grads, ref_grads, ("colors", "densities"), strict=True):
        assert_close(got, want, what=f"gradient to {what}")


def _marcher_backward_op_count(rays: int) -> int:
    """aten ops of one marcher forward + backward, the gradient arriving channels-first (as an image)."""
    gen = torch.Generator().manual_seed(3)
    colors = torch.rand(1, rays, 24, 32, generator=gen).requires_grad_(True)
    densities = torch.randn(1, rays, 24, 1, generator=gen).requires_grad_(True)
    depths = torch.sort(torch.rand(1, rays, 24, 1, generator=gen) + 2, dim=2).values
    upstream = torch.randn(1, 32, rays, generator=gen)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        rgb, _, _ = MipRayMarcher2()(colors, densities, depths, {"clamp_mode": "softplus"})
        (rgb.permute(0, 2, 1) * upstream).sum().backward()
    return sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))


def test_marcher_backward_does_not_loop_over_rays() -> None:
    # A bmm over [rays, 1, S] x [rays, S, C] had a CPU backward issuing ops per ray for such a
    # strided gradient (about 22 per ray): 494 ops for 10 rays, 22,274 for 1000.
    few, many = _marcher_backward_op_count(10), _marcher_backward_op_count(1000)
    assert many <= few + 10, f"{few} aten ops for 10 rays but {many} for 1000"


def test_render_does_not_depend_on_the_ray_chunk(scene) -> None:
    planes, _ = scene
    planes = planes[:, :, :, :16, :16].repeat(1, 1, 4, 1, 1)  # 32 channels, as the decoder expects
    torch.manual_seed(0)
    decoder = OSGDecoder(32, {"decoder_lr_mul": 1.0, "decoder_output_dim": 32})
    gen = torch.Generator().manual_seed(2)
    origins = torch.tensor([0.0, 0.0, 2.7]).expand(2, 300, 3)
    directions = torch.nn.functional.normalize(
        torch.randn(2, 300, 3, generator=gen) * 0.1 + torch.tensor([0.0, 0.0, -1.0]), dim=-1
    )
    options = {
        "depth_resolution": 6,
        "depth_resolution_importance": 5,
        "ray_start": 2.25,
        "ray_end": 3.3,
        "box_warp": 1,
        "disparity_space_sampling": False,
        "clamp_mode": "softplus",
    }
    renderer = ImportanceRenderer()
    outputs = []
    for chunk in (7, 4096):
        renderer.ray_chunk = chunk
        outputs.append(
            renderer(
                planes,
                decoder,
                origins,
                directions,
                options,
                random=torch.Generator().manual_seed(3),
            )
        )
    whole, chunked = outputs[1], outputs[0]
    for a, b in zip(chunked, whole, strict=True):
        assert_close(a, b)
    # The clamp is batch-wide: every depth stays within the range of all sample depths.
    lo = torch.minimum(whole.depths_coarse.min(), whole.depths_fine.min())
    hi = torch.maximum(whole.depths_coarse.max(), whole.depths_fine.max())
    assert whole.depth.min() >= lo and whole.depth.max() <= hi


def test_nan_points_give_nan_like_grid_sample() -> None:
    planes = torch.randn(1, 3, 4, 8, 8)
    points = torch.tensor([[[0.1, 0.2, float("nan")], [0.1, 0.1, 0.1]]])
    axes = plane_axes_matrices()
    fast = sample_plane_mean(axes, plane_rows(planes), tuple(planes.shape), points, 1.0)
    assert torch.isnan(fast[0, 0]).all() and torch.isfinite(fast[0, 1]).all()
    assert_close(fast[0, 1], sample_from_planes(axes, planes, points, 1.0).mean(1)[0, 1])
