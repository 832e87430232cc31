"""Input checks for tensors at public boundaries: shape, range, finiteness, device.

Each check raises a typed error from :mod:`sym3d.errors` whose message names the argument, the
expectation and what was received. Checks cost a host-device sync for range/finite tests, so they
run at API boundaries only (never inside an optimisation step) and can be disabled with the
environment variable ``SYM3D_CHECKS=0``.

Shape patterns are lists of dimension names or sizes, with an optional leading ``"*"`` for any
number of leading dimensions, e.g. ``["B", 3, "H", "W"]`` or ``["*", 25]``. Named dimensions
bind on first use, so ``check_shape(a, ["B", 3]); check_shape(b, ["B", 1], dims=...)`` can share
bindings through the ``dims`` dictionary.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence

import torch

from sym3d.env import env_flag
from sym3d.errors import NonFiniteError, RangeError, ShapeError, UserInputError

__all__ = [
    "checks_enabled",
    "check_tensor",
    "check_shape",
    "check_range",
    "check_finite",
    "check_same_device",
    "check_device",
]


def checks_enabled() -> bool:
    """Return False when ``SYM3D_CHECKS=0`` disables the value checks (shape checks always run)."""
    return env_flag("SYM3D_CHECKS", default=True)


def check_tensor(x: object, name: str) -> torch.Tensor:
    """Raise :class:`UserInputError` unless ``x`` is a floating-point tensor; return it."""
    if not isinstance(x, torch.Tensor):
        raise UserInputError(f"{name}: expected a torch.Tensor, got {type(x).__name__}.")
    if not x.is_floating_point():
        raise UserInputError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}.")
    return x


def _pattern_text(pattern: Sequence[int | str]) -> str:
    return "[" + ",".join(str(p) for p in pattern) + "]"


def check_shape(
    x: torch.Tensor,
    pattern: Sequence[int | str],
    name: str,
    *,
    dims: MutableMapping[str, int] | None = None,
) -> MutableMapping[str, int]:
    """Check ``x.shape`` against ``pattern`` and return the bound named dimensions.

    Args:
        x: the tensor.
        pattern: sizes (int) or names (str); a leading ``"*"`` matches any leading dims.
        name: the argument name used in the error message.
        dims: bindings from earlier checks; updated in place.

    Raises:
        ShapeError: with the expected pattern and the actual shape.
    """
    check_tensor(x, name)
    dims = {} if dims is None else dims
    pat = list(pattern)
    shape = tuple(x.shape)
    if pat and pat[0] == "*":
        pat = pat[1:]
        if len(shape) < len(pat):
            raise ShapeError(name, _pattern_text(pattern), shape)
        shape_tail = shape[len(shape) - len(pat) :]
    else:
        if len(shape) != len(pat):
            raise ShapeError(name, _pattern_text(pattern), shape)
        shape_tail = shape
    for want, got in zip(pat, shape_tail, strict=True):
        if isinstance(want, int):
            if want != got:
                raise ShapeError(name, _pattern_text(pattern), shape)
        else:
            bound = dims.get(want)
            if bound is None:
                dims[want] = got
            elif bound != got:
                raise ShapeError(
                    name,
                    _pattern_text(pattern),
                    shape,
                    hint=f"dimension {want} is {bound} elsewhere.",
                )
    return dims


def check_finite(x: torch.Tensor, name: str) -> None:
    """Raise :class:`NonFiniteError` if ``x`` holds NaN or inf (skipped when checks are disabled)."""
    if checks_enabled() and not bool(torch.isfinite(x.detach()).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise NonFiniteError(f"{name}: expected finite values, got {bad} NaN/inf entries.")


def check_range(
    x: torch.Tensor,
    lo: float,
    hi: float,
    name: str,
    *,
    tol: float = 1e-3,
    hint: str | None = None,
) -> None:
    """Raise :class:`RangeError` if any value lies outside ``[lo - tol, hi + tol]``.

    Also rejects NaN/inf. Skipped when checks are disabled.
    """
    if not checks_enabled():
        return
    check_finite(x, name)
    if x.numel() == 0:
        return
    mn, mx = float(x.detach().min()), float(x.detach().max())
    if mn < lo - tol or mx > hi + tol:
        raise RangeError(name, (lo, hi), (mn, mx), hint=hint)


def check_same_device(*named: tuple[str, torch.Tensor]) -> None:
    """Raise :class:`UserInputError` if the given ``(name, tensor)`` pairs live on different devices."""
    if not named:
        return
    first_name, first = named[0]
    for nm, t in named[1:]:
        if t.device != first.device:
            raise UserInputError(
                f"{nm} is on {t.device} but {first_name} is on {first.device}; expected one device.",
                hint="move both with .to(device).",
            )


CPU_HINT = "use --device cpu."


def check_device(device: str | torch.device, name: str = "--device") -> torch.device:
    """Parse ``device`` and check it exists on this machine; return it as a ``torch.device``.

    Accepts ``cpu``, ``cuda``, ``cuda:N`` (N below the visible device count) and ``mps`` where
    available. ``name`` is how messages name the setting (the CLI option by default).

    Raises:
        UserInputError: not a device name, or a device this machine does not have (e.g.
            ``cuda`` on a machine without a visible CUDA device).
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise UserInputError(
            f"{name} {device!r}: not a device name; expected cpu, cuda or cuda:N.",
            hint="use --device cpu.",
        ) from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserInputError(f"{name} {device}: no CUDA device is visible.", hint=CPU_HINT)
        if dev.index is not None and dev.index >= count:
            raise UserInputError(
                f"{name} {device}: only {count} CUDA device(s) are visible "
                f"(cuda:0..cuda:{count - 1}).",
                hint="pick one of those, or use --device cpu.",
            )
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UserInputError(f"{name} mps: Apple's MPS device is not available.", hint=CPU_HINT)
    elif dev.type != "cpu":
        raise UserInputError(f"{name} {device!r}: sym3d runs on cpu, cuda or mps.", hint=CPU_HINT)
    return dev
