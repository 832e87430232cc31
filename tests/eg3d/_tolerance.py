"""Parity tolerances derived from float32 rounding, shared by the EG3D parity modules.

Two float32 runs of the same network differ only by rounding, and how much depends on the CPU:
the order in which a kernel adds the terms of a dot product follows its vector width and
blocking (AVX2, AVX-512, AMX tiles, the thread count), so each accumulation may end a few units
in the last place (ulp) of its *magnitude* away, and every layer passes the difference on. An
error therefore scales with the size of the values a quantity is computed from, not with a fixed
number: a tolerance of 1e-4 is loose for a ray direction and tighter than float32 allows for an
SR output near 260.

The rule, for an output ``a`` and its reference ``r`` (element-wise)::

    |a - r| <= atol + rtol * |r|,   rtol = DEPTH_FACTOR * eps32,   atol = rtol * max|r|

``eps32 = 2**-23`` is float32's relative spacing. ``atol`` covers elements near zero, whose error
comes from the tensor's typical magnitude, not from their own. ``DEPTH_FACTOR`` is the number of
ulps that the deepest chain may lose; see its comment for why 256.

For a float64 checksum over the ``n`` values of one channel (per-channel sums of a float32
tensor) each element moves by at most ``rtol * (|r_i| + m)``, where ``m`` is the tensor's
typical magnitude: a channel's errors come from the whole computation (all channels feed it),
and they do not cancel in a sum (a kernel's rounding can be biased: on an AMX CPU the sums of
the clamped SR image moved 18 times more than here while single values moved as much). With
``m`` the mean ``|r|`` over all channels, ``n * m`` is the mean of the per-channel ``sum |r|``:

* ``sum r``  and ``sum |r|``: ``rtol * (sum_c |r| + mean over channels of sum |r|)``,
* ``sum r**2`` (``d(x**2) = 2 x dx``): ``2 * rtol * (sum_c r**2 + m * sum_c |r|)``.

A real port error (a flipped sign, a dropped bias, swapped planes) changes values by a good
fraction of their magnitude, i.e. by 1e-2 or more relative, hundreds of times these bounds;
``test_parity_tolerance.py`` shows both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

EPS32 = torch.finfo(torch.float32).eps  # 2**-23 = 1.19e-7

# Measured spread between float32 runs, in ulps of the tensor's magnitude (max|r|): up to 32
# on the SR512 image (mapping 2 + backbone 14 convolutions + decoder 2 + compositing + SR 8
# convolutions: about 30 rounding stages, accumulations of up to 3*3*128 terms) on this AVX-512
# CPU; on an AVX-512 + AMX CPU (issue 11) 1.2e-3 on the clamped SR image, 22 ulps of its max 452
# (38 of the values near 260 where it occurred). Independent rounding errors of L stages add up
# like a random walk, sqrt(30) * a few ulps, which is that size. 256 ulps (2**8: the top 15 of
# float32's 24 bits must agree) keeps a factor of 8 above the worst measured spread, while a
# port error of 1e-2 relative (80,000 ulps) is hundreds of times above it; even the mapping's
# bias dropped (1e-3 relative: the bias is scaled by lr_multiplier 0.01) is 30 times above.
DEPTH_FACTOR = 256
RTOL = DEPTH_FACTOR * EPS32  # 3.05e-5

ChecksumKind = Literal["sum", "abssum", "sqsum"]


@dataclass(frozen=True)
class Comparison:
    """The outcome of one parity comparison.

    ``max_abs_err``: largest ``|a - r|``; ``tolerance``: the bound at that element (for
    checksums the per-channel bound); ``ratio``: the largest error/bound over all elements (the
    comparison passes when it is at most 1).
    """

    max_abs_err: float
    tolerance: float
    ratio: float

    @property
    def ok(self) -> bool:
        return self.ratio <= 1.0


def _errors(actual: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """``|a - r|`` in float64; a NaN or inf where the reference has none is an infinite error."""
    a = actual.detach().to("cpu", torch.float64)
    r = expected.detach().to("cpu", torch.float64)
    diff = (a - r).abs()
    same = (a == r) | (torch.isnan(a) & torch.isnan(r))  # equal infs give NaN differences
    return torch.where(same, torch.zeros_like(diff), diff.nan_to_num(nan=float("inf")))


def _ratio(err: torch.Tensor, bound: torch.Tensor) -> tuple[float, float, float]:
    """``(max err, bound where err/bound peaks, max err/bound)``."""
    if err.numel() == 0:
        return 0.0, 0.0, 0.0
    bound = bound.clamp_min(torch.finfo(torch.float32).tiny)
    ratio = err / bound
    worst = int(torch.argmax(ratio.nan_to_num(nan=float("inf"))))
    return err.max().item(), bound.flatten()[worst].item(), ratio.flatten()[worst].item()


def elementwise(actual: torch.Tensor, expected: torch.Tensor, *, rtol: float = RTOL) -> Comparison:
    """Compare a float32 output with its reference element by element (shapes must match).

    Bound per element: ``rtol * max|r| + rtol * |r|`` (see the module docstring).
    """
    if tuple(actual.shape) != tuple(expected.shape):
        raise AssertionError(f"shape {list(actual.shape)} != reference {list(expected.shape)}")
    ref = expected.detach().to("cpu", torch.float64).abs()
    scale = (
        ref[torch.isfinite(ref)].max().item() if ref.numel() and torch.isfinite(ref).any() else 0.0
    )
    bound = rtol * scale + rtol * ref.nan_to_num(nan=0.0, posinf=0.0)
    return Comparison(*_ratio(_errors(actual, expected), bound))


def checksum(
    actual: torch.Tensor,
    expected: torch.Tensor,
    kind: ChecksumKind,
    *,
    abssum: torch.Tensor,
    numel: int,
    rtol: float = RTOL,
) -> Comparison:
    """Compare float64 per-channel checksums of a float32 tensor with their references.

    Args:
        actual, expected: the checksums (any shape, one value per channel).
        kind: ``"sum"``, ``"abssum"`` or ``"sqsum"`` (see the module docstring for the bounds).
        abssum: the reference's ``sum |r|`` of the same channels (same shape as ``expected``).
        numel: how many values each channel sums.
        rtol: the element-wise relative tolerance the checksum is made of.
    """
    if tuple(actual.shape) != tuple(expected.shape):
        raise AssertionError(f"shape {list(actual.shape)} != reference {list(expected.shape)}")
    ref = expected.detach().to("cpu", torch.float64)
    own = abssum.detach().to("cpu", torch.float64)
    if own.shape != ref.shape:
        raise ValueError(
            f"abssum has shape {list(own.shape)}; expected {list(ref.shape)} (one per channel)"
        )
    typical = own.mean() / numel  # mean |r| over the whole tensor
    if kind in ("sum", "abssum"):
        bound = rtol * (own + numel * typical)
    elif kind == "sqsum":
        bound = 2 * rtol * (ref.abs() + typical * own)
    else:
        raise ValueError(f"checksum kind must be 'sum', 'abssum' or 'sqsum'; got {kind!r}")
    return Comparison(*_ratio(_errors(actual, expected), bound))


def assert_close(
    actual: torch.Tensor, expected: torch.Tensor, *, rtol: float = RTOL, what: str = ""
) -> None:
    """Assert :func:`elementwise` passes (for float32 results of two routes of one computation)."""
    result = elementwise(actual, expected, rtol=rtol)
    assert result.ok, (
        f"{what or 'values'}: error {result.ratio:.3g} x the float32 tolerance (max abs error "
        f"{result.max_abs_err:.3g}; bound {result.tolerance:.3g} where the ratio peaks)"
    )
