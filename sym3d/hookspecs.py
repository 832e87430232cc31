"""Plugin hook specifications (pluggy project ``"sym3d"``); the guide is ``docs/plugins.md``.

Hooks are for **discovery only**: each one hands the plugin a host-owned ``register`` callable
to add components to a catalogue. Per-step work never goes through hooks; it goes through plain
objects that satisfy :mod:`sym3d.protocols`. Call hooks with keyword arguments only.

A plugin is a module with ``@sym3d.hookimpl`` functions, exposed by one entry-point line::

    [project.entry-points.sym3d]
    my_gan = "my_gan_plugin.plugin"

The ``register`` callable has the signature
``register(name, factory, *, description="", requires=(), extra=None)``: ``name`` matches
``^[a-z0-9][a-z0-9+_:.-]*$``; ``factory(**options)`` builds the component and should import its
heavy dependencies only when called; ``requires`` lists import names checked before building
(a missing one raises :class:`sym3d.errors.MissingDependencyError` whose hint names ``extra`` of
the plugin's own distribution).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import pluggy

if TYPE_CHECKING:
    from sym3d.registry import RegisterFn

__all__ = ["DoctorCheck", "hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("sym3d")
hookimpl = pluggy.HookimplMarker("sym3d")


@hookspec
def register_generators(register: RegisterFn) -> None:
    """Register :class:`~sym3d.protocols.Generator3D` factories (e.g. ``"eg3d"``, ``"symheads"``)."""


@hookspec
def register_pose_estimators(register: RegisterFn) -> None:
    """Register :class:`~sym3d.protocols.PoseEstimator` factories (photo -> crop + camera)."""


@hookspec
def register_priors(register: RegisterFn) -> None:
    """Register :class:`~sym3d.protocols.Prior` factories (extra objective terms)."""


@hookspec
def register_losses(register: RegisterFn) -> None:
    """Register image losses (:class:`~sym3d.protocols.Loss`) and feature extractors for the contextual loss.

    Feature extractors are registered under names prefixed ``features:`` (e.g. ``"features:vgg16"``).
    """


@attrs.frozen
class DoctorCheck:
    """One line of the ``sym3d doctor`` report; what the ``doctor_checks`` hook returns.

    Attributes:
        name: what was checked.
        ok: passed.
        detail: what was found.
        fix: how to fix it when not ok ("" when ok or nothing to do).
        required: a failure makes ``sym3d doctor`` exit 1 (optional features only warn).
        broken: a plugin (or one of its components) failed and was skipped.
    """

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = False
    broken: bool = False


@hookspec
def register_commands(app: Any, bench: Any) -> None:
    """Add sub-commands to the ``sym3d`` CLI.

    Args:
        app: the root ``typer.Typer`` (``app.command("name")(fn)``, ``app.add_typer(...)``).
        bench: the ``sym3d bench`` group, a ``typer.Typer`` of this same app.

    An implementation may take only the arguments it uses (``register_commands(app)`` works).
    Keep the command modules import-light: import torch inside the command functions.
    """


@hookspec
def doctor_checks() -> list[DoctorCheck]:
    """Return :class:`DoctorCheck` results for ``sym3d doctor`` (plugin health)."""
