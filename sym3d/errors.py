"""Typed errors that teach: what was wrong, what was expected, what was received, how to fix it.

Every error raised for a user mistake derives from :class:`Sym3DError`. The CLI maps
:class:`UserInputError` subclasses to exit code 2 and other :class:`Sym3DError` to exit code 1,
printing one line (no traceback unless ``--debug``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class Sym3DError(Exception):
    """Root of every error sym3d raises on purpose.

    Args:
        message: one or two sentences: ``<what>: expected <x>, got <y>.``
        hint: how to fix it (a flag, a command, an extra to install). Appended to ``str()``.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} Hint: {hint}")


class UserInputError(Sym3DError):
    """A mistake in what the user passed (file, option, tensor). The CLI exits with code 2."""


class ConfigError(UserInputError, ValueError):
    """An invalid configuration value or file; ``messages`` holds one path-qualified line per problem."""

    def __init__(self, messages: Sequence[str] | str, *, hint: str | None = None) -> None:
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        text = (
            self.messages[0]
            if len(self.messages) == 1
            else "invalid configuration:\n  - " + "\n  - ".join(self.messages)
        )
        super().__init__(text, hint=hint)


class ShapeError(UserInputError, ValueError):
    """A tensor has the wrong shape. Carries ``name``, ``expected`` and ``actual``."""

    def __init__(
        self, name: str, expected: str, actual: Sequence[int], *, hint: str | None = None
    ) -> None:
        self.name, self.expected, self.actual = name, expected, tuple(actual)
        super().__init__(f"{name}: expected shape {expected}, got {list(self.actual)}.", hint=hint)


class RangeError(UserInputError, ValueError):
    """Tensor values lie outside the documented range. Carries ``name``, ``expected`` and ``actual``."""

    def __init__(
        self,
        name: str,
        expected: tuple[float, float],
        actual: tuple[float, float],
        *,
        hint: str | None = None,
    ) -> None:
        self.name, self.expected, self.actual = name, expected, actual
        super().__init__(
            f"{name}: expected values in [{expected[0]:g}, {expected[1]:g}], got [{actual[0]:.4g}, {actual[1]:.4g}].",
            hint=hint,
        )


class NonFiniteError(UserInputError, ValueError):
    """A tensor holds NaN or infinite values."""


class CameraLabelError(UserInputError, ValueError):
    """A camera label is not a usable EG3D camera (non-finite, no rotation, bad intrinsics, ...)."""


class InputFileError(UserInputError, OSError):
    """An input file is missing, unreadable, too large or not a regular file (FIFO, device, ...).

    Carries ``path`` and ``reason``; the message is ``<path>: <reason>``.
    """

    def __init__(self, path: Any, reason: str, *, hint: str | None = None) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"{self.path}: {reason}", hint=hint)


class ImageLoadError(InputFileError):
    """An image file could not be read or is unusable."""


class FaceNotFoundError(UserInputError):
    """No usable face was found in an image."""


class PluginError(Sym3DError):
    """Base class for plugin discovery and registry errors."""


class PluginNotFoundError(PluginError, UserInputError, LookupError):
    """An unknown component name. Carries ``kind``, ``name``, ``available`` and ``suggestions``.

    Deliberately not a ``KeyError``: ``str(KeyError)`` wraps its message in quotes.
    """

    def __init__(
        self, kind: str, name: str, available: Sequence[str], suggestions: Sequence[str] = ()
    ) -> None:
        self.kind, self.name = kind, name
        self.available, self.suggestions = list(available), list(suggestions)
        text = f"unknown {kind} {name!r}; available: {', '.join(self.available) or '(none)'}."
        hint = (
            f"did you mean {self.suggestions[0]!r}?"
            if self.suggestions
            else "run `sym3d plugins` to list components."
        )
        super().__init__(text, hint=hint)


class PluginConflictError(PluginError):
    """Two plugins registered the same component name; the message names both sources."""


class PluginLoadError(PluginError):
    """A plugin failed to import or register (raised only in strict mode)."""


class CheckpointError(UserInputError):
    """A checkpoint file is missing, malformed, or refused by the safe loader."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle referenced a global outside the allow-list; nothing from it was executed."""


class MissingDependencyError(Sym3DError, ImportError):
    """An optional dependency is not installed; the hint names what to install.

    Args:
        what: the feature that needs it (``"generator 'eg3d'"``).
        extra: the pip extra of ``dist`` that provides it (``None``: no extra declared).
        package: the missing package or import name(s).
        dist: the distribution that needs it; ``None`` or ``"sym3d"`` means sym3d itself, so the
            hint is ``pip install 'sym3d[extra]'``; a plugin's own distribution is named instead.
    """

    def __init__(
        self, what: str, extra: str | None, *, package: str | None = None, dist: str | None = None
    ) -> None:
        self.what, self.extra, self.package = what, extra, package
        self.dist = dist or "sym3d"
        pkg = f" ({package})" if package else ""
        if self.dist == "sym3d":
            hint = f"pip install 'sym3d[{extra or 'all'}]'"
        elif extra:
            hint = f"pip install '{self.dist}[{extra}]'"
        else:
            needed = f"the package providing {package}" if package else "its dependencies"
            hint = f"{self.dist} needs {needed}; pip install --force-reinstall '{self.dist}'"
        msg = f"{what} needs the optional dependency{pkg} that is not installed."
        super().__init__(msg, hint=hint)


class MissingWeightsError(Sym3DError, FileNotFoundError):
    """Pretrained weights are not available offline; nothing is ever downloaded."""


class KernelBuildError(Sym3DError, RuntimeError):
    """Building a CUDA extension failed. Carries ``log_path`` with the compiler output."""

    def __init__(
        self, message: str, *, log_path: str | None = None, hint: str | None = None
    ) -> None:
        self.log_path = log_path
        if log_path:
            message = f"{message} Build log: {log_path}"
        super().__init__(message, hint=hint)


class ResultExistsError(UserInputError, FileExistsError):
    """An output folder already holds a result and overwriting was not asked for."""


class ResultNameError(UserInputError):
    """An image's name cannot name a result folder (``.``, ``..``, hidden, reserved, too long, not UTF-8)."""


class ResultBusyError(UserInputError):
    """Another sym3d run (``invert`` or ``batch``) is writing the same result folder right now."""


class OutputWriteError(Sym3DError, OSError):
    """Writing an output failed (disk full, read-only, ...) or an output folder is unsafe to write."""


class Sym3DWarning(UserWarning):
    """Base class for warnings sym3d emits."""


class KernelFallbackWarning(Sym3DWarning):
    """A CUDA kernel could not be built under ``impl='auto'``; the reference implementation is used."""


class QualityWarning(Sym3DWarning):
    """The input is valid but likely to give a poor result (extreme pose, tiny face, ...)."""
