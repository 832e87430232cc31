"""Configuration: frozen attrs values with validators, TOML loading and dotted overrides.

Every inversion is fully described by an :class:`InversionConfig`. Presets (``w``, ``w+``,
``pti``, ``spi``, ...) are configs (see :mod:`sym3d.engine.presets`); precedence from lowest to
highest is: preset < ``--config file.toml`` < dedicated CLI flags < ``--set a.b=c``.

Example:
    >>> from sym3d.config import InversionConfig, apply_overrides
    >>> cfg = apply_overrides(InversionConfig(), ["tune.steps=10", "latent.space='w'"])
    >>> cfg.tune.steps, cfg.latent.space
    (10, 'w')
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import attrs
import cattrs
import tomli_w
from attrs import validators as v

from sym3d.atomic import atomic_write_text
from sym3d.errors import ConfigError, InputFileError
from sym3d.files import read_text

__all__ = [
    "MirrorWeightConfig",
    "LatentStageConfig",
    "WarpConfig",
    "MirrorPseudoConfig",
    "DepthRegConfig",
    "TuneStageConfig",
    "InversionConfig",
    "structure",
    "unstructure",
    "load_toml",
    "dump_toml",
    "apply_overrides",
    "set_dotted",
]

T = TypeVar("T")

_pos_int = [v.instance_of(int), v.ge(0)]
_unit = [v.instance_of(float), v.ge(0.0), v.le(1.0)]
_nonneg = [v.instance_of(float), v.ge(0.0)]


def _float_field(default: float, *validators: Any) -> Any:
    return attrs.field(default=default, converter=float, validator=[v.instance_of(float), *validators])


@attrs.frozen(kw_only=True)
class MirrorWeightConfig:
    """SPI's yaw-dependent weight of the mirrored view in stage 1 (see :func:`sym3d.camera.mirror_weight`)."""

    enabled: bool = attrs.field(default=True, validator=v.instance_of(bool))
    """Render the mirrored image at the mirrored camera as a second target."""
    threshold: float = _float_field(0.2, v.ge(0.0))
    """Below this |yaw| (radians) the weight is 0: a frontal face's mirror adds nothing."""
    sigma: float = _float_field(0.29, v.gt(0.0))
    """Std of the Gaussian in the weight formula (radians)."""
    scale: float = _float_field(2.7, v.gt(0.0))
    """Divisor of the Gaussian pdf in the weight formula."""


@attrs.frozen(kw_only=True)
class LatentStageConfig:
    """Stage 1: optimise the latent (W or W+) from the camera-conditioned mean latent."""

    steps: int = attrs.field(default=500, validator=_pos_int)
    """Optimisation steps (0 skips the stage and keeps the mean latent)."""
    space: Literal["w", "w+"] = attrs.field(default="w+", validator=v.in_(("w", "w+")))
    """``w``: one vector broadcast to all rows; ``w+``: one vector per row."""
    lr: float = _float_field(0.01, v.gt(0.0))
    """Peak learning rate of the StyleGAN2 projector schedule (SPI's effective value)."""
    lr_rampup: float = _float_field(0.05, v.ge(0.0), v.le(1.0))
    """Fraction of steps of linear warm-up."""
    lr_rampdown: float = _float_field(0.25, v.gt(0.0), v.le(1.0))
    """Fraction of steps of cosine ramp-down at the end."""
    noise_strength: float = _float_field(0.05, v.ge(0.0))
    """Initial std of the latent noise, in units of the latent spread (w_std)."""
    noise_ramp: float = _float_field(0.75, v.gt(0.0), v.le(1.0))
    """Fraction of steps over which the latent noise decays (quadratically) to 0."""
    optimize_noise: bool = attrs.field(default=False, validator=v.instance_of(bool))
    """Also optimise the generator's noise buffers (SPI does, then discards them)."""
    noise_reg_weight: float = _float_field(1e5, v.ge(0.0))
    """Weight of the StyleGAN2 noise autocorrelation regulariser (only with ``optimize_noise``)."""
    mean_samples: int = attrs.field(default=600, validator=[v.instance_of(int), v.gt(0)])
    """z samples averaged for the camera-conditioned mean latent."""
    mean_seed: int = attrs.field(default=123, validator=v.instance_of(int))
    """Seed of those samples."""
    perceptual_weight: float = _float_field(1.0, v.ge(0.0))
    """Weight of the perceptual loss on each target view."""
    mse_weight: float = _float_field(0.0, v.ge(0.0))
    """Weight of the MSE on each target view (SPI: 0)."""
    mirror: MirrorWeightConfig = attrs.field(factory=MirrorWeightConfig)
    """The mirrored pseudo view."""
    refine_camera: bool = attrs.field(default=False, validator=v.instance_of(bool))
    """Also optimise yaw and pitch offsets of the input camera (rotations about the look-at
    pivot), as in "3D GAN Inversion with Pose Optimization"; stage 2 uses the refined camera."""
    camera_lr: float = _float_field(0.003, v.gt(0.0))
    """Learning rate of the yaw/pitch offsets (radians), same schedule as the latent."""
    camera_max_offset: float = _float_field(0.35, v.gt(0.0))
    """Bound of each offset (radians), applied with tanh."""


@attrs.frozen(kw_only=True)
class WarpConfig:
    """Stage 2 (a): the input image warped by depth into cameras around the input camera."""

    enabled: bool = attrs.field(default=True, validator=v.instance_of(bool))
    weight: float = _float_field(0.4, v.ge(0.0))
    """Weight of the masked perceptual loss (SPI: lambda_rot 0.1 x 4 views)."""
    yaw_range: float = _float_field(0.2, v.ge(0.0))
    """Half-width of the yaw offsets (radians)."""
    pitch_range: float = _float_field(0.1, v.ge(0.0))
    """Half-width of the pitch offsets (radians)."""
    occlusion_threshold: float = _float_field(0.05, v.gt(0.0))
    """Max |z_point - z_surface| in the source view for a pixel to count as visible (world units)."""
    depth_mode: Literal["camera_z", "spi"] = attrs.field(default="camera_z", validator=v.in_(("camera_z", "spi")))
    """``camera_z``: convert ray distance to camera z (correct); ``spi``: use ray distance as z (official quirk)."""
    use_face_mask: bool = attrs.field(default=True, validator=v.instance_of(bool))
    """Restrict pseudo labels to the source face mask (when known)."""


@attrs.frozen(kw_only=True)
class MirrorPseudoConfig:
    """Stage 2 (b): the mirrored image warped into cameras around the mirrored camera, compared
    with a contextual loss inside facial-feature regions, gated by yaw."""

    enabled: bool = attrs.field(default=True, validator=v.instance_of(bool))
    weight: float = _float_field(0.02, v.ge(0.0))
    """Weight of the summed region contextual losses (SPI: 0.1 x 0.05 x 4)."""
    gate_threshold: float = _float_field(0.2, v.ge(0.0))
    """The term is used only when the input |yaw| (radians) is at least this."""
    regions: tuple[str, ...] = attrs.field(
        default=("left_eye", "right_eye", "mouth"),
        converter=tuple,
        validator=v.deep_iterable(v.instance_of(str), v.instance_of(tuple)),
    )
    """Facial-feature regions the mirror pseudo label acts in; a one-sided cheek mark is not copied."""
    region_padding: float = _float_field(0.0, v.ge(0.0))
    """Extra padding around each region box (fraction of the image side). Regions from the pose
    estimator already carry SPI's padding (15/256 around the eyes, 8/256 around the mouth)."""
    crop_size: int = attrs.field(default=80, validator=[v.instance_of(int), v.gt(0)])
    """Side of the region crops fed to the feature extractor."""
    bandwidth: float = _float_field(0.5, v.gt(0.0))
    """Contextual-loss bandwidth h."""
    authentic_mask: bool = attrs.field(default=True, validator=v.instance_of(bool))
    """Drop pixels where the warped mirror disagrees with the warped input (conflict filtering)."""
    conflict_threshold: float = _float_field(0.12, v.gt(0.0))
    """Mean absolute RGB difference (in [0,1]) above which a pixel is a conflict."""


@attrs.frozen(kw_only=True)
class DepthRegConfig:
    """Stage 2 (c): depth of the tuned generator kept close to the frozen one at random views."""

    enabled: bool = attrs.field(default=True, validator=v.instance_of(bool))
    weight: float = _float_field(1.0, v.ge(0.0))
    yaw_range: float = _float_field(0.7, v.ge(0.0))
    pitch_range: float = _float_field(0.2, v.ge(0.0))
    symmetric: bool = attrs.field(default=True, validator=v.instance_of(bool))
    """Yaw in [-range, range]; the official code samples only [0, range] (a bug we fix)."""


@attrs.frozen(kw_only=True)
class TuneStageConfig:
    """Stage 2: fine-tune the generator around the frozen pivot latent."""

    steps: int = attrs.field(default=1000, validator=_pos_int)
    """Fine-tuning steps (0 skips the stage)."""
    lr: float = _float_field(3e-4, v.gt(0.0))
    scope: str = attrs.field(default="all", validator=v.instance_of(str))
    """Named tunable-parameter scope of the generator."""
    mse_weight: float = _float_field(1.0, v.ge(0.0))
    perceptual_weight: float = _float_field(1.0, v.ge(0.0))
    early_stop: float = _float_field(0.05, v.ge(0.0))
    """Stop once the reconstruction perceptual loss is at most this (0 disables)."""
    aux_every: int = attrs.field(default=4, validator=[v.instance_of(int), v.gt(0)])
    """Auxiliary (pseudo-view, mirror, depth) terms run on every k-th step."""
    num_views: int = attrs.field(default=4, validator=[v.instance_of(int), v.gt(0)])
    """Cameras sampled per auxiliary term."""
    warp: WarpConfig = attrs.field(factory=WarpConfig)
    mirror: MirrorPseudoConfig = attrs.field(factory=MirrorPseudoConfig)
    depth_reg: DepthRegConfig = attrs.field(factory=DepthRegConfig)


@attrs.frozen(kw_only=True)
class InversionConfig:
    """Everything that determines one inversion."""

    preset: str = attrs.field(default="spi", validator=v.instance_of(str))
    """Name of the preset this config started from (informational)."""
    seed: int = attrs.field(default=0, validator=v.instance_of(int))
    perceptual: str = attrs.field(default="lpips-vgg", validator=v.instance_of(str))
    """Registry name of the perceptual loss."""
    perceptual_resize: int = attrs.field(default=256, validator=_pos_int)
    """Resize images to this side before the perceptual loss (SPI: 256); 0 keeps the size."""
    contextual_features: str = attrs.field(default="vgg16", validator=v.instance_of(str))
    """Registry name of the feature extractor for the contextual loss."""
    latent: LatentStageConfig = attrs.field(factory=LatentStageConfig)
    tune: TuneStageConfig = attrs.field(factory=TuneStageConfig)
    checkpoint_every: int = attrs.field(default=0, validator=_pos_int)
    """Save a resumable checkpoint every N steps (0: only at stage ends)."""


# ---------------------------------------------------------------------------------------------
# structure / unstructure with strict primitive types and path-qualified errors
# ---------------------------------------------------------------------------------------------


def _strict_int(value: Any, _t: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _strict_float(value: Any, _t: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"expected a finite number, got {value!r}")
    return float(value)


def _strict_bool(value: Any, _t: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def _strict_str(value: Any, _t: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook(int, _strict_int)
    conv.register_structure_hook(float, _strict_float)
    conv.register_structure_hook(bool, _strict_bool)
    conv.register_structure_hook(str, _strict_str)
    return conv


_CONVERTER = _make_converter()


def _describe(exc: BaseException, _type: Any) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, cattrs.errors.ForbiddenExtraKeysError):
        return f"unknown keys {sorted(exc.extra_fields)}"
    text = str(exc)
    if "not in literal" in text:
        return text.replace("typing.Literal", "one of ")
    return text or type(exc).__name__


def _format_errors(exc: BaseException, root: str) -> list[str]:
    return list(cattrs.transform_error(exc, path=root, format_exception=_describe))


def structure(data: Mapping[str, Any], cls: type[T], *, root: str = "config") -> T:
    """Build config ``cls`` from plain data; every problem is reported with its dotted path.

    Raises:
        ConfigError: listing each invalid or unknown field as ``<problem> @ config.a.b``.
    """
    try:
        return _CONVERTER.structure(dict(data), cls)
    except (cattrs.BaseValidationError, cattrs.errors.ForbiddenExtraKeysError) as exc:
        raise ConfigError(_format_errors(exc, root)) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{root}: {exc}") from None


def unstructure(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config (tuples become lists, ``None`` values are kept)."""
    return _CONVERTER.unstructure(cfg)


def _drop_none(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _drop_none(x) for k, x in d.items() if x is not None}
    if isinstance(d, list):
        return [_drop_none(x) for x in d]
    return d


def dump_toml(cfg: Any, path: str | os.PathLike | None = None) -> str:
    """Serialise a config as TOML; write it atomically if ``path`` is given."""
    text = tomli_w.dumps(_drop_none(unstructure(cfg)))
    if path is not None:
        atomic_write_text(path, text)
    return text


def load_toml(path: str | os.PathLike, cls: type[T] = InversionConfig, *, base: T | None = None) -> T:  # type: ignore[assignment]
    """Load a config from a TOML file, on top of ``base`` (default: ``cls()``).

    Keys present in the file override ``base``; absent keys keep ``base``'s values.

    Raises:
        ConfigError: missing or unreadable file, not a regular file (a FIFO or a device such as
            /dev/zero is refused at once), TOML syntax error, unknown keys or invalid values.
    """
    p = Path(path)
    try:
        data = tomllib.loads(read_text(p, "the config file"))
    except InputFileError as exc:  # missing, a FIFO or device, over 64 MiB, not UTF-8
        reason = "config file not found." if exc.reason == "file not found." else exc.reason
        raise ConfigError(f"{p}: {reason}", hint=exc.hint) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML ({exc}).") from None
    merged = _deep_merge(unstructure(base if base is not None else cls()), data)
    return structure(merged, cls, root=p.name)


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, val in over.items():
        if isinstance(val, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], val)
        else:
            out[k] = val
    return out


def _parse_value(text: str) -> Any:
    """Parse the right-hand side of ``a.b=value`` as a TOML value; bare words become strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def set_dotted(data: dict[str, Any], dotted: str, value: Any, *, root: str = "config") -> None:
    """Set ``data[a][b]... = value`` for ``dotted = "a.b..."``; unknown keys raise with suggestions."""
    keys = dotted.split(".")
    node: Any = data
    path = root
    for i, key in enumerate(keys):
        if not isinstance(node, dict):
            raise ConfigError(f"{path} is a value, not a section; cannot set {dotted!r}.")
        if key not in node:
            close = difflib.get_close_matches(key, list(node), n=1)
            hint = f"did you mean {'.'.join([*keys[:i], close[0]])!r}?" if close else None
            raise ConfigError(
                f"unknown setting {dotted!r}: no key {key!r} in {path} (keys: {', '.join(sorted(node))}).",
                hint=hint,
            )
        path = f"{path}.{key}"
        if i == len(keys) - 1:
            node[key] = value
        else:
            node = node[key]


def apply_overrides(cfg: T, overrides: Iterable[str] | Mapping[str, Any]) -> T:
    """Return ``cfg`` with dotted overrides applied.

    Args:
        cfg: a config value.
        overrides: ``["tune.steps=100", "latent.space='w'"]`` (values parsed as TOML, bare words
            as strings) or a mapping ``{"tune.steps": 100}``.

    Raises:
        ConfigError: malformed override, unknown key (with the closest match) or invalid value.
    """
    data = unstructure(cfg)
    items: list[tuple[str, Any]] = []
    if isinstance(overrides, Mapping):
        items = list(overrides.items())
    else:
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r}: expected the form key.path=value, e.g. tune.steps=100.")
            key, _, raw = item.partition("=")
            items.append((key.strip(), _parse_value(raw.strip())))
    for key, val in items:
        set_dotted(data, key, val)
    return structure(data, type(cfg))
