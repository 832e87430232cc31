"""Build a :class:`TriPlaneGenerator` from the init kwargs stored in official checkpoints."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from sym3d.errors import ConfigError
from sym3d_eg3d.networks.rendering import PlaneOrder
from sym3d_eg3d.networks.triplane import TriPlaneGenerator

__all__ = [
    "build_generator",
    "check_sizes",
    "REQUIRED_INIT_KEYS",
    "OPTIONAL_INIT_KEYS",
    "SIZE_LIMITS",
]

REQUIRED_INIT_KEYS = (
    "z_dim",
    "c_dim",
    "w_dim",
    "img_resolution",
    "img_channels",
    "rendering_kwargs",
)
OPTIONAL_INIT_KEYS = (
    "sr_num_fp16_res",
    "mapping_kwargs",
    "sr_kwargs",
    # backbone (SynthesisNetwork / SynthesisBlock / SynthesisLayer) options
    "channel_base",
    "channel_max",
    "num_fp16_res",
    "conv_clamp",
    "fused_modconv_default",
    "architecture",
    "resample_filter",
    "fp16_channels_last",
    "kernel_size",
    "use_noise",
    "activation",
)


SIZE_LIMITS: Mapping[str, tuple[int, int]] = MappingProxyType(
    {
        "z_dim": (1, 2048),
        "w_dim": (1, 2048),
        "c_dim": (0, 1024),
        "img_resolution": (8, 4096),
        "img_channels": (1, 16),
        "sr_num_fp16_res": (0, 16),
        "num_fp16_res": (0, 16),
        "channel_base": (1, 1 << 18),
        "channel_max": (1, 2048),
        "kernel_size": (1, 9),
        "mapping_kwargs.num_layers": (0, 32),
        "mapping_kwargs.embed_features": (1, 2048),
        "mapping_kwargs.layer_features": (1, 2048),
        "mapping_kwargs.num_ws": (1, 64),
        "sr_kwargs.channel_base": (1, 1 << 18),
        "sr_kwargs.channel_max": (1, 2048),
        "rendering_kwargs.depth_resolution": (1, 1024),
        "rendering_kwargs.depth_resolution_importance": (0, 1024),
        "rendering_kwargs.image_resolution": (8, 4096),
        "neural_rendering_resolution": (1, 1024),
    }
)
"""Inclusive ``(low, high)`` bounds of every size field, far outside any released EG3D model
(ffhq512-128: z/w 512, 2 mapping layers, channels <= 512, 48+48 depth samples, 128 rays a side)
and small enough that building the model cannot exhaust memory. ``None`` is allowed where the
constructor has a ``None`` default (``embed_features``, ``layer_features``, ``num_ws``)."""

_NONE_ALLOWED = frozenset(
    {"mapping_kwargs.embed_features", "mapping_kwargs.layer_features", "mapping_kwargs.num_ws"}
)
_FINITE_FIELDS = (
    "rendering_kwargs.box_warp",
    "rendering_kwargs.avg_camera_radius",
    "rendering_kwargs.c_scale",
    "rendering_kwargs.decoder_lr_mul",
    "mapping_kwargs.lr_multiplier",
    "mapping_kwargs.w_avg_beta",
    "conv_clamp",
)


def _field(kwargs: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    node: Any = kwargs
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_sizes(init_kwargs: Mapping[str, Any], neural_rendering_resolution: Any = None) -> None:
    """Refuse size fields outside :data:`SIZE_LIMITS` and non-finite ray limits, before building.

    A tampered config (``mapping_kwargs.num_layers = 100000``) would otherwise allocate until
    memory runs out while the model is constructed, before any weight is compared.

    Args:
        init_kwargs: the constructor kwargs (``rendering_kwargs`` inside them is checked too).
        neural_rendering_resolution: the checkpoint's attribute, or ``None``.

    Raises:
        ConfigError: one line per offending field: its value and the accepted range.
    """
    values = dict(init_kwargs)
    values["neural_rendering_resolution"] = neural_rendering_resolution
    problems: list[str] = []
    for dotted, (low, high) in SIZE_LIMITS.items():
        present, value = _field(values, dotted)
        if not present or (
            value is None and (dotted in _NONE_ALLOWED or dotted == "neural_rendering_resolution")
        ):
            continue
        if type(value) is not int or not low <= value <= high:
            problems.append(f"{dotted}: expected an integer in [{low}, {high}], got {value!r}")
    for dotted in _FINITE_FIELDS:
        present, value = _field(values, dotted)
        if present and value is not None and (not _is_number(value) or not math.isfinite(value)):
            problems.append(f"{dotted}: expected a finite number, got {value!r}")
    present, filt = _field(values, "resample_filter")
    if present and (
        not isinstance(filt, (list, tuple))
        or not 1 <= len(filt) <= 16
        or not all(_is_number(v) and math.isfinite(v) for v in filt)
    ):
        problems.append(f"resample_filter: expected 1 to 16 finite numbers, got {filt!r}")
    problems += _ray_problems(values.get("rendering_kwargs"))
    if problems:
        raise ConfigError(
            problems,
            hint="the generator config was edited or damaged; convert the original .pkl again.",
        )


def _ray_problems(rendering: Any) -> list[str]:
    if (
        not isinstance(rendering, Mapping)
        or "ray_start" not in rendering
        or "ray_end" not in rendering
    ):
        return []
    start, end = rendering["ray_start"], rendering["ray_end"]
    if start == end == "auto":
        return []
    if not (_is_number(start) and _is_number(end) and math.isfinite(start) and math.isfinite(end)):
        return [
            "rendering_kwargs.ray_start/ray_end: expected finite numbers (or both 'auto'), "
            f"got {start!r}, {end!r}"
        ]
    if not 0 <= start < end:
        return [
            "rendering_kwargs.ray_start/ray_end: expected 0 <= ray_start < ray_end, "
            f"got {start!r}, {end!r}"
        ]
    return []


def _plain(value: Any) -> Any:
    """Deep-copy nested mappings (e.g. EasyDict) into plain dicts."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return copy.deepcopy(value)


def build_generator(
    init_kwargs: Mapping[str, Any],
    *,
    rendering_kwargs: Mapping[str, Any] | None = None,
    neural_rendering_resolution: int | None = None,
    plane_order: PlaneOrder = "released",
    reproduce_sr_aliasing: bool = True,
) -> TriPlaneGenerator:
    """Construct a generator from official ``init_kwargs`` (as found in checkpoints).

    The weights are random; load a state_dict afterwards (official keys, ``strict=True``).

    Args:
        init_kwargs: the official ``TriPlaneGenerator`` kwargs. ``rendering_kwargs.
            superresolution_module`` may be the official dotted name
            (``"training.superresolution.SuperresolutionHybrid8XDC"``) or the class name.
        rendering_kwargs: the live ``G.rendering_kwargs`` of a checkpoint; when given it
            replaces ``init_kwargs['rendering_kwargs']`` (checkpoints may have edited it after
            construction).
        neural_rendering_resolution: the checkpoint's ``neural_rendering_resolution``
            attribute (128 for ffhq512-128); ``None`` keeps the default 64.
        plane_order: ``"released"`` (default) or ``"corrected"`` tri-plane axes.
        reproduce_sr_aliasing: see :class:`TriPlaneGenerator`.

    Raises:
        ConfigError: missing or unknown kwargs, a size field outside :data:`SIZE_LIMITS`, a
            non-finite ray limit, an unknown superresolution module, or a resolution the SR
            module does not support.

    """
    if not isinstance(init_kwargs, Mapping):
        raise ConfigError(f"init_kwargs: expected a mapping, got {type(init_kwargs).__name__}.")
    kwargs = _plain(init_kwargs)
    if rendering_kwargs is not None:
        kwargs["rendering_kwargs"] = _plain(rendering_kwargs)

    problems = [f"init_kwargs.{k}: missing" for k in REQUIRED_INIT_KEYS if k not in kwargs]
    known = set(REQUIRED_INIT_KEYS) | set(OPTIONAL_INIT_KEYS)
    problems += [
        f"init_kwargs.{k}: unknown key (known: {', '.join(sorted(known))})"
        for k in kwargs
        if k not in known
    ]
    if problems:
        raise ConfigError(problems)
    if not isinstance(kwargs["rendering_kwargs"], Mapping):
        raise ConfigError("init_kwargs.rendering_kwargs: expected a mapping.")
    check_sizes(kwargs, neural_rendering_resolution)
    generator = TriPlaneGenerator(
        **kwargs, plane_order=plane_order, reproduce_sr_aliasing=reproduce_sr_aliasing
    )
    if neural_rendering_resolution is not None:
        if int(neural_rendering_resolution) < 1:
            raise ConfigError(
                f"neural_rendering_resolution must be >= 1; got {neural_rendering_resolution}."
            )
        generator.neural_rendering_resolution = int(neural_rendering_resolution)
    return generator
