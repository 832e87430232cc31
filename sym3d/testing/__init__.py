"""Helpers for testing sym3d and its plugins: a tiny analytic generator and a conformance suite."""

from sym3d.testing.conformance import (
    CHECKS,
    ConformanceError,
    ConformanceOptions,
    check_generator,
    run_check,
)
from sym3d.testing.tiny import TinyGenerator3D

__all__ = [
    "CHECKS",
    "ConformanceError",
    "ConformanceOptions",
    "TinyGenerator3D",
    "check_generator",
    "run_check",
]
