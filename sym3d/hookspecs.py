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

import pluggy

if TYPE_CHECKING:
    from sym3d.registry import RegisterFn

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


@hookspec
def register_commands(app: Any) -> None:
    """Add sub-commands to the ``sym3d`` CLI: ``app`` is the root ``typer.Typer``.

    Keep the command modules import-light: import torch inside the command functions.
    """


@hookspec
def doctor_checks() -> list[Any]:
    """Return :class:`sym3d.cli.doctor.DoctorCheck` results for ``sym3d doctor`` (plugin health)."""
