"""Constructor settings of known EG3D configurations (facts of the released models, no weights).

* :data:`FFHQ512_128` — the released ``ffhq512-128`` / ``ffhqrebalanced512-128`` generators
  (train.py ``--cfg=ffhq --gen_pose_cond=True`` at 512 px, neural rendering resolution 128).
* :data:`SMALL` — a tiny configuration of the same architecture (64-channel backbone, 2X
  super-resolution to 128 px) used by tests and benchmarks; the reference fixtures were made with it.

Use with :func:`sym3d_eg3d.adapter.build_eg3d` (``init_kwargs=...``) for randomly initialised
networks; checkpoints carry their own settings.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FFHQ512_128", "SMALL", "SR512_SMALL", "CONFIGS"]

FFHQ512_128: dict[str, Any] = {
    "z_dim": 512,
    "w_dim": 512,
    "mapping_kwargs": {"num_layers": 2},
    "channel_base": 32768,
    "channel_max": 512,
    "fused_modconv_default": "inference_only",
    "rendering_kwargs": {
        "image_resolution": 512,
        "disparity_space_sampling": False,
        "clamp_mode": "softplus",
        "superresolution_module": "training.superresolution.SuperresolutionHybrid8XDC",
        "c_gen_conditioning_zero": False,
        "gpc_reg_prob": 0.5,
        "c_scale": 1.0,
        "superresolution_noise_mode": "none",
        "density_reg": 0.25,
        "density_reg_p_dist": 0.004,
        "reg_type": "l1",
        "decoder_lr_mul": 1.0,
        "sr_antialias": True,
        "depth_resolution": 48,
        "depth_resolution_importance": 48,
        "ray_start": 2.25,
        "ray_end": 3.3,
        "box_warp": 1,
        "avg_camera_radius": 2.7,
        "avg_camera_pivot": [0, 0, 0.2],
    },
    "num_fp16_res": 0,
    "sr_num_fp16_res": 4,
    "sr_kwargs": {
        "channel_base": 32768,
        "channel_max": 512,
        "fused_modconv_default": "inference_only",
    },
    "conv_clamp": None,
    "c_dim": 25,
    "img_resolution": 512,
    "img_channels": 3,
}
"""Released FFHQ 512 generator (``neural_rendering_resolution`` 128 is stored in checkpoints)."""

SMALL: dict[str, Any] = {
    **FFHQ512_128,
    "z_dim": 64,
    "channel_base": 2048,
    "channel_max": 64,
    "rendering_kwargs": {
        **FFHQ512_128["rendering_kwargs"],
        "image_resolution": 128,
        "superresolution_module": "training.superresolution.SuperresolutionHybrid2X",
        "depth_resolution": 12,
        "depth_resolution_importance": 12,
    },
    "sr_num_fp16_res": 0,
    "sr_kwargs": {**FFHQ512_128["sr_kwargs"], "channel_base": 2048, "channel_max": 64},
    "img_resolution": 128,
}
"""Small test configuration (128 px output; neural rendering resolution 32 in the fixtures)."""

SR512_SMALL: dict[str, Any] = {
    **FFHQ512_128,
    "z_dim": 64,
    "channel_base": 2048,
    "channel_max": 64,
    "rendering_kwargs": {
        **FFHQ512_128["rendering_kwargs"],
        "depth_resolution": 12,
        "depth_resolution_importance": 12,
    },
}
"""The small backbone behind the released 8XDC super-resolution to 512 px."""

CONFIGS: dict[str, dict[str, Any]] = {"small": SMALL, "sr512": SR512_SMALL, "ffhq512": FFHQ512_128}
