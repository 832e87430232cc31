"""Computations shared by the two parity modules (small and SR512 fixtures)."""

from __future__ import annotations

import torch

from sym3d_eg3d.networks import TriPlaneGenerator

SYNTH = dict(noise_mode="const", force_fp32=True)  # what the fixtures used


def mapping_variants(G: TriPlaneGenerator, fx: dict) -> dict:
    """Every mapping variant stored in the fixtures (truncations, frontal conditioning, zeroed c)."""
    z, c = fx["z"], fx["c"]
    out = {
        "ws": G.mapping(z, c),
        "ws_trunc": G.mapping(z, c, truncation_psi=0.7, truncation_cutoff=14),
        "ws_trunc_cutoff7": G.mapping(z, c, truncation_psi=0.7, truncation_cutoff=7),
        "ws_cond_trunc": G.mapping(z, fx["c_cond"], truncation_psi=0.7, truncation_cutoff=14),
    }
    saved = dict(G.rendering_kwargs)
    try:
        G.rendering_kwargs["c_gen_conditioning_zero"] = True
        out["ws_c_zero"] = G.mapping(z, c)
    finally:
        G.rendering_kwargs.clear()
        G.rendering_kwargs.update(saved)
    return out


def plane_views(planes: torch.Tensor, *, crop: bool) -> dict:
    """The stored subsets and float64 checksums of the tri-planes ``[N, 3, 32, 256, 256]``."""
    p64 = planes.double()
    out = {
        "planes_strided8": planes[..., ::8, ::8],
        "planes_row128": planes[..., 128, :],
        "planes_col37": planes[..., :, 37],
        "planes_sum_f64": p64.sum(dim=(-2, -1)),
        "planes_abssum_f64": p64.abs().sum(dim=(-2, -1)),
        "planes_sqsum_f64": p64.square().sum(dim=(-2, -1)),
    }
    if crop:
        out["planes_crop_r112_144_c112_144"] = planes[..., 112:144, 112:144]
    return out
