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
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import attrs
import cattrs
import tomli_w
import tomllib
from attrs import validators as v

from sym3d.atomic import atomic_write_text
from sym3d.errors import ConfigError, InputFileError
from sym3d.files import read_text
from sym3d.terms.base import TermConfig, term_config_class

__all__ = [
    "PriorSpec",
    "LatentStageConfig",
    "TuneStageConfig",
    "Terms",
    "InversionConfig",
    "structure",
    "unstructure",
    "load_toml",
    "dump_toml",
    "apply_overrides",
    "set_dotted",
    "parse_option",
    "priors_override",
]

T = TypeVar("T")

_pos_int = [v.instance_of(int), v.ge(0)]


def _float_field(default: float, *validators: Any) -> Any:
    return attrs.field(
        default=default, converter=float, validator=[v.instance_of(float), *validators]
    )


Terms = dict[str, TermConfig]
"""A stage's objective terms by name (``latent.terms``, ``tune.terms``); see :mod:`sym3d.terms`."""


def _terms(*names: str, **settings: dict[str, Any]) -> Any:
    """A factory of the default terms table (term classes are imported on first use)."""

    def make() -> Terms:
        return {n: term_config_class(n)(**settings.get(n, {})) for n in names}

    return attrs.Factory(make)


def _terms_validator(stage: str) -> Any:
    def check(_inst: Any, _attr: Any, terms: Terms) -> None:
        if not isinstance(terms, dict):
            raise TypeError(f"terms: expected a table of term settings, got {terms!r}")
        for name, cfg in terms.items():
            if not isinstance(cfg, TermConfig) or cfg.name != name:
                raise ValueError(
                    f"terms.{name}: expected the settings of term {name!r}, got {cfg!r}"
                )
            if stage not in cfg.stages:
                raise ValueError(
                    f"term {name!r} does not run in the {stage} stage (it runs in: "
                    f"{', '.join(cfg.stages)})"
                )

    return check


OptionValue = str | int | float | bool
"""A component option: a TOML scalar."""

_COMPONENT_NAME = re.compile(r"^[a-z0-9][a-z0-9+_:.-]*$")


def _check_option_values(_inst: Any, _attr: Any, options: Mapping[str, Any]) -> None:
    for key, val in options.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"option name {key!r}: expected a Python identifier such as 'weight'")
        if not isinstance(val, (str, int, float, bool)):
            raise TypeError(f"option {key!r}: expected a string, number or boolean, got {val!r}")
        if isinstance(val, float) and not math.isfinite(val):
            raise ValueError(f"option {key!r}: expected a finite number, got {val!r}")


@attrs.frozen(kw_only=True)
class PriorSpec:
    """A registered prior by name with its factory options (``sym3d plugins`` lists priors).

    In TOML, one inline table per prior: ``priors = [{ name = "depth-tv", weight = 0.1 }]``;
    every key but ``name`` is an option passed to the prior's factory.
    """

    name: str = attrs.field(validator=v.instance_of(str))
    options: Mapping[str, OptionValue] = attrs.field(
        factory=dict, converter=dict, validator=_check_option_values
    )

    @name.validator
    def _check_name(self, _attr: Any, name: str) -> None:
        if not _COMPONENT_NAME.match(name):
            raise ValueError(
                f"prior name {name!r}: expected a registered name (lower-case letters, digits "
                "and + _ : . -, as `sym3d plugins` lists them)"
            )

    @classmethod
    def parse(cls, text: str) -> PriorSpec:
        """``"NAME[:key=value,...]"`` (the CLI's ``--prior``), values as by :func:`parse_option`.

        Raises:
            ConfigError: empty name, an option without ``=``, a repeated option.
        """
        name, sep, rest = text.strip().partition(":")
        form = "expected NAME or NAME:key=value,key=value (e.g. depth-tv:weight=0.1)"
        if not _COMPONENT_NAME.match(name.strip()):
            raise ConfigError(f"--prior {text!r}: no valid prior name before ':'; {form}.")
        options: dict[str, OptionValue] = {}
        for item in rest.split(",") if sep else []:
            key, val = parse_option(item, f"--prior {text!r}")
            if key in options:
                raise ConfigError(f"--prior {text!r}: option {key!r} is given twice; {form}.")
            options[key] = val
        try:
            return cls(name=name.strip(), options=options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"--prior {text!r}: {exc}; {form}.") from None


_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def parse_option(item: str, where: str) -> tuple[str, OptionValue]:
    """``"key=value"`` -> ``(key, value)``; value: ``true``/``false``, an int, a float, else text.

    Raises:
        ConfigError: no ``=``, or the key is not an identifier (``where`` names the flag).
    """
    key, sep, raw = item.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key.isidentifier():
        raise ConfigError(
            f"{where}: {item.strip()!r} is not key=value; expected e.g. weight=0.1 "
            "(key: letters, digits and _; values: numbers, true/false or text)."
        )
    if raw in ("true", "false"):
        return key, raw == "true"
    if _INT.match(raw):
        return key, int(raw)
    if _FLOAT.match(raw):
        return key, float(raw)
    return key, raw


def _toml_scalar(val: OptionValue) -> str:
    if isinstance(val, bool):
        return "true" if val else "false"
    if isinstance(val, (int, float)):
        return repr(val)
    # a JSON string is a TOML basic string, once DEL (which TOML wants escaped) is escaped
    return json.dumps(val, ensure_ascii=False).replace("\x7f", "\\u007f")


def priors_override(priors: Iterable[PriorSpec]) -> str:
    """The ``--set`` style override ``priors=[{ name = ..., ... }, ...]`` that sets ``priors``."""
    tables = []
    for spec in priors:
        pairs = [f"name = {_toml_scalar(spec.name)}"]
        pairs += [f"{k} = {_toml_scalar(val)}" for k, val in spec.options.items()]
        tables.append("{ " + ", ".join(pairs) + " }")
    return f"priors=[{', '.join(tables)}]"


_Priors = tuple[PriorSpec, ...]


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
    refine_camera: bool = attrs.field(default=False, validator=v.instance_of(bool))
    """Also optimise yaw and pitch offsets of the input camera (rotations about the look-at
    pivot), as in "3D GAN Inversion with Pose Optimization"; stage 2 uses the refined camera."""
    camera_lr: float = _float_field(0.003, v.gt(0.0))
    """Learning rate of the yaw/pitch offsets (radians), same schedule as the latent."""
    camera_max_offset: float = _float_field(0.35, v.gt(0.0))
    """Bound of each offset (radians), applied with tanh."""
    select_by: str = attrs.field(default="", validator=v.instance_of(str))
    """A value the stage's terms log (its name as in the history, e.g.
    ``"mirror_view/_validation"``): the stage ends on the latent of the step where it was lowest
    (steps that do not log it do not count; none did: the last step's). Empty: the last step's
    latent, as an optimiser gives."""
    terms: Terms = attrs.field(
        default=_terms("mirror_view", "reconstruction"), validator=_terms_validator("latent")
    )
    """The stage's objective terms, in the order they are summed."""


@attrs.frozen(kw_only=True)
class TuneStageConfig:
    """Stage 2: fine-tune the generator around the frozen pivot latent."""

    steps: int = attrs.field(default=1000, validator=_pos_int)
    """Fine-tuning steps (0 skips the stage)."""
    lr: float = _float_field(3e-4, v.gt(0.0))
    scope: str = attrs.field(default="all", validator=v.instance_of(str))
    """Named tunable-parameter scope of the generator."""
    early_stop: float = _float_field(0.05, v.ge(0.0))
    """Stop once the reconstruction's unweighted perceptual loss is at most this (0 disables)."""
    aux_every: int = attrs.field(default=4, validator=[v.instance_of(int), v.gt(0)])
    """Auxiliary (pseudo-view, mirror, depth) terms run on every k-th step."""
    num_views: int = attrs.field(default=4, validator=[v.instance_of(int), v.gt(0)])
    """Cameras sampled per auxiliary term."""
    terms: Terms = attrs.field(
        default=_terms(
            "warp_views",
            "mirror_regions",
            "depth_reg",
            "reconstruction",
            reconstruction={"mse_weight": 1.0, "mse_range": "model"},
        ),
        validator=_terms_validator("generator"),
    )
    """The stage's objective terms, in the order they are summed."""


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
    mirror_min_yaw: float = _float_field(0.2, v.ge(0.0))
    """Below this input |yaw| (radians) no mirror term runs in either stage: a frontal face's
    mirror adds nothing."""
    latent: LatentStageConfig = attrs.field(factory=LatentStageConfig)
    tune: TuneStageConfig = attrs.field(factory=TuneStageConfig)
    checkpoint_every: int = attrs.field(default=100, validator=_pos_int)
    """Save a resumable checkpoint every N steps of either stage, and at stage ends (0: only at
    stage ends). Used only when a checkpoint folder is given."""
    priors: _Priors = attrs.field(
        default=(), converter=tuple, validator=v.deep_iterable(v.instance_of(PriorSpec))
    )
    """Registered priors (built-in or from plugins) added to the stages they declare, built by
    name with their options: ``priors = [{ name = "depth-tv", weight = 0.1 }]``."""


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

    def structure_terms(data: Any, _t: Any) -> Terms:
        if not isinstance(data, Mapping):
            raise TypeError(f"expected a table of terms, got {data!r}")
        out: Terms = {}
        for name, settings in data.items():
            cls = term_config_class(name)
            try:
                out[name] = conv.structure(dict(settings), cls)
            except (cattrs.BaseValidationError, cattrs.errors.ForbiddenExtraKeysError) as exc:
                raise ValueError("; ".join(_format_errors(exc, f"terms.{name}"))) from None
            except (TypeError, ValueError) as exc:
                raise ValueError(f"terms.{name}: {exc}") from None
        return out

    def unstructure_terms(terms: Terms) -> dict[str, Any]:
        return {name: conv.unstructure(cfg, type(cfg)) for name, cfg in terms.items()}

    def structure_prior(data: Any, _t: Any) -> PriorSpec:
        if isinstance(data, str):
            data = {"name": data}
        if not isinstance(data, Mapping):
            raise TypeError(f'expected a table such as {{ name = "depth-tv" }}, got {data!r}')
        options = dict(data)
        if not isinstance(options.get("name"), str):
            raise TypeError(f"expected a prior name in key 'name', got {data!r}")
        return PriorSpec(name=options.pop("name"), options=options)

    def structure_priors(data: Any, _t: Any) -> tuple[PriorSpec, ...]:
        if not isinstance(data, (list, tuple)):
            example = '[{ name = "depth-tv" }]'
            raise TypeError(f"expected an array of tables such as {example}, got {data!r}")
        out = []
        for i, item in enumerate(data):
            try:
                out.append(structure_prior(item, PriorSpec))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"entry {i}: {exc}") from None
        return tuple(out)

    conv.register_structure_hook(PriorSpec, structure_prior)
    conv.register_structure_hook_func(lambda t: t == _Priors, structure_priors)
    conv.register_unstructure_hook(PriorSpec, lambda p: {"name": p.name, **p.options})
    conv.register_structure_hook_func(lambda t: t == Terms, structure_terms)
    conv.register_unstructure_hook_func(lambda t: t == Terms, unstructure_terms)
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


def load_toml(
    path: str | os.PathLike, cls: type[T] = InversionConfig, *, base: T | None = None
) -> T:  # type: ignore[assignment]
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
    if cls is InversionConfig:
        data = rename_deprecated(data)
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
    """Set ``data[a][b]... = value`` for ``dotted = "a.b..."``; unknown keys raise with suggestions.

    A term not yet in a ``terms`` table is added with its defaults (``tune.terms.<name>...``);
    a deprecated key (see :data:`DEPRECATED_KEYS`) sets its new keys with a warning.
    """
    if dotted in DEPRECATED_KEYS:
        _warn_deprecated(dotted)
        for new_key in DEPRECATED_KEYS[dotted]:
            set_dotted(data, new_key, value, root=root)
        return
    keys = dotted.split(".")
    node: Any = data
    path = root
    for i, key in enumerate(keys):
        if not isinstance(node, dict):
            raise ConfigError(f"{path} is a value, not a section; cannot set {dotted!r}.")
        if key not in node and path.endswith(".terms") and i < len(keys) - 1:
            cls = term_config_class(key)  # raises ConfigError naming the known terms
            node[key] = _CONVERTER.unstructure(cls(), cls)
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
                raise ConfigError(
                    f"override {item!r}: expected the form key.path=value, e.g. tune.steps=100."
                )
            key, _, raw = item.partition("=")
            items.append((key.strip(), _parse_value(raw.strip())))
    for key, val in items:
        set_dotted(data, key, val)
    return structure(data, type(cfg))


# ---------------------------------------------------------------------------------------------
# keys of configs written before the terms were modules (results store config.resolved.toml)
# ---------------------------------------------------------------------------------------------

_SHARED_WARP = ("yaw_range", "pitch_range", "occlusion_threshold", "depth_mode", "use_face_mask")
_REGIONS = (
    "enabled",
    "weight",
    "regions",
    "region_padding",
    "crop_size",
    "bandwidth",
    "authentic_mask",
    "conflict_threshold",
)

DEPRECATED_KEYS: dict[str, tuple[str, ...]] = {
    "latent.mirror.enabled": ("latent.terms.mirror_view.enabled",),
    "latent.mirror.threshold": ("mirror_min_yaw",),
    "latent.mirror.sigma": ("latent.terms.mirror_view.sigma",),
    "latent.mirror.scale": ("latent.terms.mirror_view.scale",),
    "latent.perceptual_weight": (
        "latent.terms.reconstruction.perceptual_weight",
        "latent.terms.mirror_view.perceptual_weight",
    ),
    "latent.mse_weight": (
        "latent.terms.reconstruction.mse_weight",
        "latent.terms.mirror_view.mse_weight",
    ),
    "tune.perceptual_weight": ("tune.terms.reconstruction.perceptual_weight",),
    "tune.mse_weight": ("tune.terms.reconstruction.mse_weight",),
    "tune.warp.enabled": ("tune.terms.warp_views.enabled",),
    "tune.warp.weight": ("tune.terms.warp_views.weight",),
    **{
        f"tune.warp.{k}": (f"tune.terms.warp_views.{k}", f"tune.terms.mirror_regions.{k}")
        for k in _SHARED_WARP
    },
    **{f"tune.mirror.{k}": (f"tune.terms.mirror_regions.{k}",) for k in _REGIONS},
    "tune.mirror.gate_threshold": ("mirror_min_yaw",),
    **{
        f"tune.depth_reg.{k}": (f"tune.terms.depth_reg.{k}",)
        for k in ("enabled", "weight", "yaw_range", "pitch_range", "symmetric")
    },
}
"""Old dotted keys (before sym3d 0.2's terms) -> the keys they set now. Accepted with a
:class:`DeprecationWarning` in ``--set`` overrides and in TOML files."""


def _warn_deprecated(old: str) -> None:
    import warnings

    new = " and ".join(DEPRECATED_KEYS[old])
    warnings.warn(
        f"config key {old!r} is deprecated; use {new!r}.", DeprecationWarning, stacklevel=4
    )


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, val in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(val, Mapping) and dotted not in DEPRECATED_KEYS:
            out.update(_flatten(val, f"{dotted}."))
        else:
            out[dotted] = val
    return out


def rename_deprecated(data: Mapping[str, Any]) -> dict[str, Any]:
    """Nested config data with every deprecated key moved to its new keys (with a warning)."""
    flat = _flatten(data)
    if not any(k in DEPRECATED_KEYS for k in flat):
        return dict(data)
    out: dict[str, Any] = {}
    for key, val in flat.items():
        for new_key in DEPRECATED_KEYS.get(key, (key,)):
            node = out
            *parents, leaf = new_key.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = val
        if key in DEPRECATED_KEYS:
            _warn_deprecated(key)
    return out
