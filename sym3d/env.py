"""The one reader of sym3d's on/off environment variables (``SYM3D_DEBUG``, ``SYM3D_CHECKS``, ...).

One truthiness for every flag: ``""`` (set but empty), ``0``, ``false``, ``no`` and ``off`` (any
case, surrounding spaces ignored) mean off; any other value means on. An unset variable takes
the flag's default.
"""

from __future__ import annotations

import os

__all__ = ["FALSE_VALUES", "env_flag", "flag_value"]

FALSE_VALUES = frozenset({"", "0", "false", "no", "off"})
"""Values (lower-cased, stripped) that turn a flag off."""


def flag_value(raw: str) -> bool:
    """Whether the text ``raw`` of a flag variable means on."""
    return raw.strip().lower() not in FALSE_VALUES


def env_flag(name: str, *, default: bool = False) -> bool:
    """Whether the environment variable ``name`` is on; ``default`` when it is not set."""
    raw = os.environ.get(name)
    return default if raw is None else flag_value(raw)
