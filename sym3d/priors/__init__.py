"""Deprecated: the objective terms moved to :mod:`sym3d.terms` (``BasePrior`` is still here)."""

from sym3d.terms.base import BasePrior

__all__ = ["BasePrior"]
