"""Generator options stored in a result folder are data to check, never instructions to follow.

``sym3d render`` and ``sym3d edit`` rebuild the generator a result was made with from the name
and options in its ``latent.pt``. A copied or edited folder could otherwise choose any file on the
machine as the network, or sizes that exhaust memory. So:

* the options must be plain JSON data of bounded size; for the built-in generators (``eg3d``,
  ``symheads``, ``tiny``) only their known keys are accepted, each with its type and range;
* a stored ``network`` path is only a hint: it is never loaded. The user names the weights with
  ``--network``; when the result recorded the checkpoint's sha256, the weights passed must have
  the same one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sym3d.errors import CheckpointError, UserInputError

__all__ = ["check_stored_options", "check_network_matches", "NETWORK_KEYS"]

NETWORK_KEYS = ("network", "network_sha256")
"""Options that name weights: recorded for the user's information, never used to open a file."""

_MAX_DEPTH = 4
_MAX_KEYS = 64
_MAX_STR = 1024

# key -> ("int", low, high) | ("float",) | ("str", choices) | ("dict", schema) | ("mapping",)
_SIZE = ("int", 1, 1024)
_SEED = ("int", -(1 << 63), (1 << 64) - 1)
_FLOAT = ("float",)
_SCHEMAS: Mapping[str, Mapping[str, tuple[Any, ...]]] = {
    "eg3d": {
        "init_kwargs": ("mapping",),  # bounded field by field when the generator is built
        "seed": _SEED,
        "neural_resolution": _SIZE,
        "impl": ("str", ("auto", "ref", "cuda")),
    },
    "tiny": {
        "resolution": ("int", 1, 512),
        "num_samples": ("int", 1, 512),
        "plane_resolution": ("int", 1, 512),
        "seed": _SEED,
        "near": _FLOAT,
        "far": _FLOAT,
    },
    "symheads": {
        "w_dim": _SIZE,
        "z_dim": _SIZE,
        "img_resolution": ("int", 1, 2048),
        "neural_resolution": ("int", 1, 2048),
        "layout_seed": _SEED,
        "mapping_seed": _SEED,
        "render_settings": (
            "dict",
            {
                **{
                    k: _FLOAT
                    for k in (
                        "ray_start",
                        "ray_end",
                        "coarse_grid_spacing",
                        "density_scale",
                        "sdf_eps",
                        "fine_before",
                        "fine_after",
                        "normal_step",
                    )
                },
                "num_coarse": _SIZE,
                "num_fine": _SIZE,
                "bbox_min": ("list",),
                "bbox_max": ("list",),
                "background": ("list",),
            },
        ),
        "residual": (
            "dict",
            {
                **{
                    k: _SIZE
                    for k in (
                        "resolution",
                        "density_channels",
                        "colour_channels",
                        "hidden",
                        "backbone_hidden",
                        "backbone_code_channels",
                    )
                },
                "sdf_scale": _FLOAT,
                "colour_scale": _FLOAT,
                "seed": _SEED,
                "plane_axes": ("str", ("eg3d", "xyz")),
                "mode": ("str", ("backbone", "planes")),
            },
        ),
    },
}


def _plain_problems(value: Any, where: str, depth: int = 0) -> list[str]:
    """Problems of a value that must be small plain JSON data (finite numbers, short strings)."""
    if depth > _MAX_DEPTH:
        return [f"{where}: nested more than {_MAX_DEPTH} levels"]
    if isinstance(value, Mapping):
        if len(value) > _MAX_KEYS:
            return [f"{where}: more than {_MAX_KEYS} entries"]
        out = []
        for k, v in value.items():
            if not isinstance(k, str) or not k.isidentifier() or len(k) > 64:
                out.append(f"{where}: key {str(k)[:40]!r} is not a short identifier")
            else:
                out += _plain_problems(v, f"{where}.{k}", depth + 1)
        return out
    if isinstance(value, list):
        if len(value) > _MAX_KEYS:
            return [f"{where}: a list of more than {_MAX_KEYS} items"]
        return [
            p for i, v in enumerate(value) for p in _plain_problems(v, f"{where}[{i}]", depth + 1)
        ]
    if isinstance(value, str):
        return (
            [f"{where}: a string of more than {_MAX_STR} characters"]
            if len(value) > _MAX_STR
            else []
        )
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{where}: not a finite number ({value})"]
    if value is None or isinstance(value, (bool, int, float)):
        return []
    return [f"{where}: a {type(value).__name__}; expected plain JSON data"]


def _schema_problems(
    options: Mapping[str, Any], schema: Mapping[str, tuple[Any, ...]], where: str
) -> list[str]:
    out = []
    for key, value in options.items():
        rule = schema.get(key)
        name = f"{where}.{key}"
        if rule is None:
            out.append(
                f"{name}: not an option of this generator "
                f"(known: {', '.join(sorted(schema)) or 'none'})"
            )
        elif rule[0] == "int" and (type(value) is not int or not rule[1] <= value <= rule[2]):
            out.append(
                f"{name}: expected an integer in [{rule[1]}, {rule[2]}], got {str(value)[:40]}"
            )
        elif rule[0] == "float" and (
            isinstance(value, bool) or not isinstance(value, (int, float))
        ):
            out.append(f"{name}: expected a number, got {str(value)[:40]}")
        elif rule[0] == "str" and (
            not isinstance(value, str) or (rule[1] and value not in rule[1])
        ):
            out.append(f"{name}: expected one of {', '.join(rule[1])}, got {str(value)[:40]!r}")
        elif rule[0] in ("dict", "mapping") and not isinstance(value, Mapping):
            out.append(f"{name}: expected an object, got {type(value).__name__}")
        elif rule[0] == "list" and not isinstance(value, list):
            out.append(f"{name}: expected a list, got {type(value).__name__}")
        elif rule[0] == "dict":
            out += _schema_problems(value, rule[1], name)
    return out


def check_stored_options(
    generator: str, options: Mapping[str, Any], *, result_dir: Any, network_given: bool
) -> dict[str, Any]:
    """Validate a result's stored generator options; return those to build the generator with.

    Args:
        generator: the registry name stored in the result.
        options: the stored options (already a JSON object).
        result_dir: the result folder, for messages.
        network_given: whether the user passed ``--network`` (then the stored path is dropped).

    Returns:
        The options without :data:`NETWORK_KEYS`.

    Raises:
        CheckpointError: options that are not small plain data, unknown keys or out-of-range
            values for a built-in generator (the folder was edited or damaged).
        UserInputError: the result names a network and ``--network`` was not given.
    """
    from sym3d.engine.result import ResultFiles

    problems = _plain_problems(dict(options), "generator_options")
    rest = {k: v for k, v in options.items() if k not in NETWORK_KEYS}
    schema = _SCHEMAS.get(generator)
    if not problems and schema is not None:
        problems = _schema_problems(rest, schema, "generator_options")
    if problems:
        raise CheckpointError(
            f"{result_dir}/{ResultFiles.LATENT}: the stored options of generator {generator!r} are damaged "
            "or edited: "
            + "; ".join(problems[:4])
            + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
            + ".",
            hint="re-run `sym3d invert` for this image; sym3d does not build a generator from "
            "options it cannot check.",
        )
    if "network" in options and not network_given:
        raise UserInputError(
            f"{result_dir}: this result was made with generator {generator!r} and the checkpoint "
            f"{_which(options)}; "
            "sym3d does not open a file only because a result folder names it.",
            hint="pass --network PATH to that checkpoint (an official .pkl or a folder from "
            "`sym3d eg3d convert`).",
        )
    return rest


def _which(options: Mapping[str, Any]) -> str:
    name = str(options.get("network", "?"))
    sha = options.get("network_sha256")
    return f"{name!r}" + (f" (sha256 {sha})" if isinstance(sha, str) else " (no sha256 recorded)")


def check_network_matches(options: Mapping[str, Any], generator: Any, *, result_dir: Any) -> None:
    """Refuse a ``--network`` whose checkpoint differs from the one the result recorded.

    A result's tuned parameters replace part of its base checkpoint; put into another one they
    give a silently wrong reconstruction. Only a recorded ``network_sha256`` is compared.

    Raises:
        UserInputError: both hashes are known and differ.
    """
    recorded = options.get("network_sha256")
    actual = (getattr(generator, "build_options", None) or {}).get("network_sha256")
    if isinstance(recorded, str) and isinstance(actual, str) and recorded != actual:
        raise UserInputError(
            f"{result_dir}: this result was made with the checkpoint {_which(options)}, but "
            "--network has sha256 "
            f"{actual}; its tuned weights apply only to the checkpoint they were tuned from.",
            hint="pass --network with the checkpoint the result was made with.",
        )
