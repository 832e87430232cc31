"""Plugin discovery: entry points in the group ``"sym3d"``, each loaded on its own.

* A plugin that fails to import, or whose hook implementations do not match a spec (a misspelled
  hook name or argument), is reported as broken and skipped; the rest keep working.
  ``SYM3D_STRICT_PLUGINS=1`` raises :class:`~sym3d.errors.PluginLoadError` instead.
* ``SYM3D_DISABLE_PLUGIN_AUTOLOAD=1`` loads no entry points (built-ins only);
  ``SYM3D_LOAD_PLUGINS=eg3d,extras`` loads only the named entry points.
* The built-in components of the core are registered by :mod:`sym3d.default_plugin` like any
  other plugin.

:func:`get_plugin_manager` returns a fresh manager (tests use their own); :func:`default_registry`
caches the registry for the CLI and :func:`sym3d.invert`.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import pluggy

from sym3d import hookspecs
from sym3d.errors import PluginLoadError
from sym3d.registry import KINDS, ComponentSpec, Registry

__all__ = [
    "ENTRY_POINT_GROUP",
    "BrokenPlugin",
    "PluginInfo",
    "Sym3DPluginManager",
    "get_plugin_manager",
    "build_registry",
    "default_plugin_manager",
    "default_registry",
    "reset_default_caches",
]

ENTRY_POINT_GROUP = "sym3d"
_HOOK_BY_KIND = {
    "generator": "register_generators",
    "pose": "register_pose_estimators",
    "prior": "register_priors",
    "loss": "register_losses",
}


@attrs.frozen
class BrokenPlugin:
    """A plugin that could not be loaded: its entry-point name, distribution and error text."""

    name: str
    dist: str
    error: str


@attrs.frozen
class PluginInfo:
    """A loaded plugin: entry-point name, distribution name and version."""

    name: str
    dist: str
    version: str


def _strict() -> bool:
    return os.environ.get("SYM3D_STRICT_PLUGINS", "") not in ("", "0", "false", "False")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false", "False")


class Sym3DPluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers which plugins loaded and which broke."""

    def __init__(self) -> None:
        super().__init__("sym3d")
        self.add_hookspecs(hookspecs)
        self.loaded: list[PluginInfo] = []
        self.broken: list[BrokenPlugin] = []

    def register_isolated(self, plugin: object, name: str, *, dist: str = "", version: str = "") -> bool:
        """Register one plugin; a validation error marks it broken (or raises in strict mode).

        Returns:
            True if the plugin was registered.
        """
        try:
            self.register(plugin, name=name)
            self.check_pending()
        except Exception as exc:  # pluggy raises PluginValidationError and others
            if self.is_registered(plugin):
                self.unregister(plugin)
            self._mark_broken(name, dist, exc)
            return False
        self.loaded.append(PluginInfo(name, dist, version))
        return True

    def _mark_broken(self, name: str, dist: str, exc: BaseException) -> None:
        text = f"{type(exc).__name__}: {exc}".strip()
        if _strict():
            raise PluginLoadError(f"plugin {name!r} ({dist or 'unknown distribution'}) failed to load: {text}") from exc
        self.broken.append(BrokenPlugin(name, dist, text))

    def load_entry_points(self, entry_points: Iterable[importlib.metadata.EntryPoint]) -> None:
        """Import and register each entry point on its own (see module docstring for the env controls)."""
        only = os.environ.get("SYM3D_LOAD_PLUGINS")
        allowed = {s.strip() for s in only.split(",") if s.strip()} if only else None
        for ep in entry_points:
            if allowed is not None and ep.name not in allowed:
                continue
            dist = getattr(ep, "dist", None)
            dist_name = dist.name if dist is not None else ""
            version = dist.version if dist is not None else ""
            if self.has_plugin(ep.name):
                continue
            try:
                module = ep.load()
            except Exception as exc:
                self._mark_broken(ep.name, dist_name, exc)
                continue
            self.register_isolated(module, ep.name, dist=dist_name, version=version)


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def get_plugin_manager(
    *,
    autoload: bool = True,
    entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
    plugins: Iterable[tuple[str, object]] = (),
) -> Sym3DPluginManager:
    """A fresh plugin manager with the built-ins, the installed entry points and extra ``plugins``.

    Args:
        autoload: load installed entry points (ignored when ``SYM3D_DISABLE_PLUGIN_AUTOLOAD=1``).
        entry_points: use these entry points instead of the installed ones (tests).
        plugins: extra ``(name, module_or_object)`` pairs registered after the entry points.
    """
    from sym3d import default_plugin

    pm = Sym3DPluginManager()
    pm.register_isolated(default_plugin, "sym3d", dist="sym3d", version=_own_version())
    if autoload and not _env_flag("SYM3D_DISABLE_PLUGIN_AUTOLOAD"):
        pm.load_entry_points(_entry_points() if entry_points is None else entry_points)
    elif entry_points is not None and not _env_flag("SYM3D_DISABLE_PLUGIN_AUTOLOAD"):
        pm.load_entry_points(entry_points)
    for name, plugin in plugins:
        pm.register_isolated(plugin, name)
    return pm


def _own_version() -> str:
    from sym3d._version import __version__

    return __version__


def _plugin_meta(pm: Sym3DPluginManager) -> dict[str, PluginInfo]:
    return {info.name: info for info in pm.loaded}


def build_registry(pm: Sym3DPluginManager) -> Registry:
    """Call every ``register_*`` hook, one plugin at a time, and collect the components.

    Raises:
        PluginConflictError: two plugins registered one name (the message names both).
    """
    registry = Registry()
    meta = _plugin_meta(pm)
    for kind in KINDS:
        hook = getattr(pm.hook, _HOOK_BY_KIND[kind])
        for impl in reversed(hook.get_hookimpls()):  # registration order
            info = meta.get(impl.plugin_name, PluginInfo(impl.plugin_name, "", ""))
            register = _make_register(registry, kind, info)
            impl.function(register=register)
    return registry


def _make_register(registry: Registry, kind: str, info: PluginInfo) -> Callable[..., None]:
    def register(
        name: str,
        factory: Callable[..., Any],
        *,
        description: str = "",
        requires: Iterable[str] = (),
        extra: str | None = None,
    ) -> None:
        registry.add(
            ComponentSpec(
                kind=kind,
                name=name,
                factory=factory,
                description=description,
                requires=tuple(requires),
                extra=extra,
                plugin=info.name,
                version=info.version,
            )
        )

    return register


@functools.lru_cache(maxsize=1)
def default_plugin_manager() -> Sym3DPluginManager:
    """The process-wide manager used by the CLI and :func:`sym3d.invert` (cached)."""
    return get_plugin_manager()


@functools.lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The registry of :func:`default_plugin_manager` (cached)."""
    return build_registry(default_plugin_manager())


def reset_default_caches() -> None:
    """Forget the cached default manager and registry (after installing plugins, or in tests)."""
    default_plugin_manager.cache_clear()
    default_registry.cache_clear()
