"""Build a :class:`TriPlaneGenerator` from the init kwargs stored in official checkpoints."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from sym3d.errors import ConfigError
from sym3d_eg3d.networks.rendering import PlaneOrder
from sym3d_eg3d.networks.triplane import TriPlaneGenerator

__all__ = ["build_generator", "REQUIRED_INIT_KEYS", "OPTIONAL_INIT_KEYS"]

REQUIRED_INIT_KEYS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "rendering_kwargs")
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
        ConfigError: missing or unknown kwargs, an unknown superresolution module, or a
            resolution the SR module does not support.

    """
    if not isinstance(init_kwargs, Mapping):
        raise ConfigError(f"init_kwargs: expected a mapping, got {type(init_kwargs).__name__}.")
    kwargs = _plain(init_kwargs)
    if rendering_kwargs is not None:
        kwargs["rendering_kwargs"] = _plain(rendering_kwargs)

    problems = [f"init_kwargs.{k}: missing" for k in REQUIRED_INIT_KEYS if k not in kwargs]
    known = set(REQUIRED_INIT_KEYS) | set(OPTIONAL_INIT_KEYS)
    problems += [
        f"init_kwargs.{k}: unknown key (known: {', '.join(sorted(known))})" for k in kwargs if k not in known
    ]
    if problems:
        raise ConfigError(problems)
    if not isinstance(kwargs["rendering_kwargs"], Mapping):
        raise ConfigError("init_kwargs.rendering_kwargs: expected a mapping.")
    generator = TriPlaneGenerator(**kwargs, plane_order=plane_order, reproduce_sr_aliasing=reproduce_sr_aliasing)
    if neural_rendering_resolution is not None:
        if int(neural_rendering_resolution) < 1:
            raise ConfigError(f"neural_rendering_resolution must be >= 1; got {neural_rendering_resolution}.")
        generator.neural_rendering_resolution = int(neural_rendering_resolution)
    return generator
