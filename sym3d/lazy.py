"""Lazy package attributes: a module ``__getattr__`` that imports on first access.

A package whose public names live in modules that import heavy dependencies (torch, the
networks) lists them in a table, so that importing the package stays light::

    _load = lazy_getattr(__name__, {"Thing": ".things"})

    def __getattr__(name: str) -> Any:  # a def, so that type checkers see a module __getattr__
        return _load(name)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_getattr"]


def lazy_getattr(package: str, table: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package`` that loads the names in ``table``.

    Args:
        package: the package's ``__name__``.
        table: public name -> the module that defines it (a module starting with ``.`` is
            relative to ``package``).

    Returns:
        The function for the package's ``__getattr__`` to call. On first access it imports the
        module, stores the attribute in the package (later accesses do not come back here) and
        returns it; a name not in ``table`` raises :class:`AttributeError`.
    """

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
