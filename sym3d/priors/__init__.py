"""Registered priors built by name (``priors = [...]`` in a config); ``BasePrior`` is still here.

The objective terms of the two stages moved to :mod:`sym3d.terms`; this package builds the extra
priors a config names from the component registry (built-in or from plugins).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sym3d.errors import ConfigError, PluginNotFoundError
from sym3d.terms.base import BasePrior

if TYPE_CHECKING:
    from sym3d.config import PriorSpec
    from sym3d.registry import Registry

__all__ = ["BasePrior", "build_priors", "check_priors"]


def _for_each(specs: Iterable[PriorSpec], action: Any) -> list[Any]:
    out = []
    for i, spec in enumerate(specs):
        try:
            out.append(action(spec))
        except PluginNotFoundError as exc:
            raise ConfigError(f"priors[{i}]: {exc.message}", hint=exc.hint) from None
        except ConfigError as exc:
            raise ConfigError(f"priors[{i}]: {exc.message}", hint=exc.hint) from None
    return out


def check_priors(specs: Iterable[PriorSpec], registry: Registry) -> None:
    """Check names and options of ``specs`` without building anything (fails before a long load).

    Raises:
        ConfigError: ``priors[i]``: an unknown prior (with the closest name) or an option its
            factory does not accept (with the accepted ones); a prior given twice.
    """
    specs = list(specs)
    _for_each(specs, lambda spec: registry.check_options("prior", spec.name, spec.options))
    names = [spec.name for spec in specs]
    twice = next((name for name in names if names.count(name) > 1), None)
    if twice is not None:
        raise ConfigError(
            f"priors: {twice!r} is given twice; its losses would overwrite each other.",
            hint="give each prior once, with the options you want.",
        )


def build_priors(specs: Iterable[PriorSpec], registry: Registry) -> list[Any]:
    """Build each prior of ``specs`` from ``registry`` with its options.

    Raises:
        ConfigError: as :func:`check_priors`, also for an option the factory refuses when it runs.
        MissingDependencyError: a prior whose requirements are not installed.
    """
    return _for_each(specs, lambda spec: registry.build("prior", spec.name, **spec.options))
