"""Plugin discovery: entry points in the group ``"sym3d"``, each plugin isolated from the others.

* Each entry point is imported and registered on its own, and each plugin's hooks are called on
  their own. A plugin that fails to import, whose hook implementations do not match a spec (a
  misspelled hook name or argument), or whose hook raises is reported as broken (with its
  distribution and version) and skipped; the rest keep working.
* A component name registered twice keeps the first registration (built-ins load first); the
  second is reported as a broken component naming both plugins and distributions.
* An entry-point name already in use (sym3d's own are reserved: :data:`RESERVED_NAMES`) is
  reported with both distributions; the one loaded first (sym3d's own) stays.
* ``SYM3D_STRICT_PLUGINS=1`` raises :class:`~sym3d.errors.PluginLoadError` (or
  :class:`~sym3d.errors.PluginConflictError` for a clash) instead of skipping.
* ``SYM3D_DISABLE_PLUGIN_AUTOLOAD=1`` loads no entry points (built-ins only);
  ``SYM3D_LOAD_PLUGINS=eg3d,symheads`` loads only the named entry points.
* The built-in components of the core are registered by :mod:`sym3d.default_plugin` like any
  other plugin.

:func:`get_plugin_manager` returns a fresh manager (tests use their own); :func:`default_registry`
caches the registry for the CLI and :func:`sym3d.invert`.
"""

from __future__ import annotations

import difflib
import functools
import importlib.metadata
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs
import pluggy

from sym3d import hookspecs
from sym3d.env import env_flag
from sym3d.errors import PluginConflictError, PluginError, PluginLoadError
from sym3d.registry import KINDS, ComponentSpec, Registry

__all__ = [
    "ENTRY_POINT_GROUP",
    "RESERVED_NAMES",
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
OWN_DIST = "sym3d"
RESERVED_NAMES: tuple[str, ...] = (
    "sym3d",
    "eg3d",
    "symheads",
    "lpips",
    "mediapipe",
    "benchmarks",
)
"""Entry-point names of sym3d itself (the built-ins and ``[project.entry-points.sym3d]`` of
pyproject.toml); another distribution using one is reported, not loaded."""

_HOOK_BY_KIND = {
    "generator": "register_generators",
    "pose": "register_pose_estimators",
    "prior": "register_priors",
    "loss": "register_losses",
}


@attrs.frozen
class BrokenPlugin:
    """A plugin (or one of its components) that was skipped.

    Attributes:
        name: entry-point (plugin) name.
        dist: distribution that provides it (``""`` when unknown).
        error: what went wrong, in one or two sentences.
        version: version of ``dist`` (``""`` when unknown).
        component: ``"<kind> '<name>'"`` when only that component was skipped, else ``""``.
    """

    name: str
    dist: str
    error: str
    version: str = ""
    component: str = ""

    @property
    def source(self) -> str:
        """``"dist version"`` or ``"unknown distribution"``."""
        return _label(self.dist, self.version)

    def as_dict(self) -> dict[str, str]:
        """The record for ``sym3d plugins --json``."""
        return {
            "name": self.name,
            "dist": self.dist,
            "version": self.version,
            "component": self.component,
            "error": self.error,
        }


@attrs.frozen
class PluginInfo:
    """A loaded plugin: entry-point name, distribution name and version."""

    name: str
    dist: str
    version: str


def _label(dist: str, version: str) -> str:
    if not dist:
        return "unknown distribution"
    return f"{dist} {version}".strip()


def _strict() -> bool:
    return env_flag("SYM3D_STRICT_PLUGINS")


def _hook_names() -> list[str]:
    return [n for n in dir(hookspecs) if getattr(getattr(hookspecs, n), "sym3d_spec", None)]


def _unknown_hooks(plugin: object) -> list[str]:
    """Explain each attribute of ``plugin`` marked as a hookimpl that matches no hook spec."""
    known = _hook_names()
    lines = []
    for attr in dir(plugin):
        try:
            value = getattr(plugin, attr)
        except Exception:  # noqa: S112 - properties of odd plugin objects
            continue
        if getattr(value, "sym3d_impl", None) is None:
            continue
        opts = value.sym3d_impl
        hook_name = (opts.get("specname") if isinstance(opts, dict) else None) or attr
        if hook_name in known:
            continue
        close = difflib.get_close_matches(hook_name, known, n=1, cutoff=0.6)
        tip = f"did you mean {close[0]!r}?" if close else f"sym3d hooks are: {', '.join(known)}."
        lines.append(f"hook {hook_name!r} is not a sym3d hook; {tip}")
    return lines


class Sym3DPluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers which plugins loaded and which broke."""

    def __init__(self) -> None:
        super().__init__("sym3d")
        self.add_hookspecs(hookspecs)
        self.loaded: list[PluginInfo] = []
        self.broken: list[BrokenPlugin] = []
        self._claimed: dict[str, PluginInfo] = {}
        self._hook_failed: set[str] = set()

    def info(self, name: str) -> PluginInfo:
        """The :class:`PluginInfo` of a registered plugin (dist and version ``""`` if unknown)."""
        for info in self.loaded:
            if info.name == name:
                return info
        return PluginInfo(name, "", "")

    def register_isolated(
        self, plugin: object, name: str, *, dist: str = "", version: str = ""
    ) -> bool:
        """Register one plugin; a validation error marks it broken (or raises in strict mode).

        Returns:
            True if the plugin was registered.
        """
        if name in self._claimed:
            self._name_clash(name, dist, version, what="plugin")
            return False
        self._claimed[name] = PluginInfo(name, dist, version)
        try:
            self.register(plugin, name=name)
            self.check_pending()
        except Exception as exc:  # pluggy raises PluginValidationError and others
            if self.is_registered(plugin):
                self.unregister(plugin)
            unknown = _unknown_hooks(plugin)
            self.mark_broken(name, dist, version, exc, detail="; ".join(unknown))
            return False
        self.loaded.append(PluginInfo(name, dist, version))
        return True

    def mark_broken(
        self,
        name: str,
        dist: str,
        version: str,
        exc: BaseException | str,
        *,
        component: str = "",
        detail: str = "",
    ) -> None:
        """Record a broken plugin or component (raise instead under ``SYM3D_STRICT_PLUGINS=1``)."""
        text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}".strip()
        if detail:
            text = f"{detail} ({text})"
        if _strict():
            where = f"{component} of plugin" if component else "plugin"
            msg = f"{where} {name!r} ({_label(dist, version)}) failed to load: {text}"
            if isinstance(exc, PluginConflictError):
                raise PluginConflictError(msg, hint=exc.hint) from exc
            raise PluginLoadError(msg) from (exc if isinstance(exc, BaseException) else None)
        record = BrokenPlugin(name, dist, text, version, component)
        if record not in self.broken:  # build_registry may run more than once
            self.broken.append(record)

    def _name_clash(self, name: str, dist: str, version: str, *, what: str) -> None:
        owner = self._claimed[name]
        exc = PluginConflictError(
            f"{what} name {name!r} of {_label(dist, version)} is already used by "
            f"{_label(owner.dist, owner.version)}; the second one was not loaded.",
            hint=f"rename the entry point in {dist or 'the plugin'}'s pyproject.toml "
            f"(reserved names: {', '.join(RESERVED_NAMES)}).",
        )
        self.mark_broken(name, dist, version, exc)

    def load_entry_points(self, entry_points: Iterable[importlib.metadata.EntryPoint]) -> None:
        """Import and register each entry point on its own (env controls: module docstring).

        sym3d's own entry points load first, so no other distribution can take their names.
        """
        only = os.environ.get("SYM3D_LOAD_PLUGINS")
        allowed = {s.strip() for s in only.split(",") if s.strip()} if only else None
        eps = sorted(entry_points, key=lambda ep: _ep_dist(ep)[0] != OWN_DIST)
        for ep in eps:
            if allowed is not None and ep.name not in allowed:
                continue
            dist_name, version = _ep_dist(ep)
            owner = self._claimed.get(ep.name)
            if owner is not None:
                if owner.dist != dist_name or not dist_name:
                    self._name_clash(ep.name, dist_name, version, what="entry-point")
                continue  # the same distribution seen twice on sys.path
            try:
                module = ep.load()
            except Exception as exc:
                self._claimed[ep.name] = PluginInfo(ep.name, dist_name, version)
                detail = f"importing {ep.value!r} failed"
                self.mark_broken(ep.name, dist_name, version, exc, detail=detail)
                continue
            self.register_isolated(module, ep.name, dist=dist_name, version=version)

    def call_each(
        self,
        hook_name: str,
        kwargs_for: Callable[[PluginInfo], dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> Iterator[tuple[PluginInfo, Any]]:
        """Call ``hook_name`` plugin by plugin (load order); one whose hook raises is marked broken.

        Args:
            hook_name: a hook of :mod:`sym3d.hookspecs`.
            kwargs_for: builds the keyword arguments for one plugin (else ``kwargs`` for all);
                each implementation receives only those it names.

        Yields:
            ``(plugin, result)`` for every plugin whose hook returned.
        """
        impls = {impl.plugin_name: impl for impl in getattr(self.hook, hook_name).get_hookimpls()}
        for info in list(self.loaded):
            impl = impls.get(info.name)
            if impl is None or info.name in self._hook_failed:
                continue
            try:
                given = kwargs_for(info) if kwargs_for else kwargs
                # Like pluggy: an implementation gets only the arguments it names, so a hook
                # may gain arguments without breaking older plugins.
                result = impl.function(**{k: v for k, v in given.items() if k in impl.argnames})
            except Exception as exc:
                self._hook_failed.add(info.name)
                detail = f"hook {hook_name} raised"
                self.mark_broken(info.name, info.dist, info.version, exc, detail=detail)
                continue
            yield info, result

    def hook_failed(self, name: str) -> bool:
        """True when a hook of the plugin ``name`` raised (its components are dropped)."""
        return name in self._hook_failed


def _ep_dist(ep: importlib.metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "", ""
    try:
        return str(dist.name or ""), str(dist.version or "")
    except Exception:  # malformed metadata must not break discovery
        return "", ""


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
    pm.register_isolated(default_plugin, "sym3d", dist=OWN_DIST, version=_own_version())
    if autoload and not env_flag("SYM3D_DISABLE_PLUGIN_AUTOLOAD"):
        pm.load_entry_points(_entry_points() if entry_points is None else entry_points)
    elif entry_points is not None and not env_flag("SYM3D_DISABLE_PLUGIN_AUTOLOAD"):
        pm.load_entry_points(entry_points)
    for name, plugin in plugins:
        pm.register_isolated(plugin, name)
    return pm


def _own_version() -> str:
    from sym3d._version import __version__

    return __version__


def build_registry(pm: Sym3DPluginManager) -> Registry:
    """Call every ``register_*`` hook, one plugin at a time, and collect the components.

    A plugin whose hook raises contributes nothing (it is marked broken); a component whose
    name is taken (or invalid) is skipped and reported, naming both plugins. Both raise under
    ``SYM3D_STRICT_PLUGINS=1``.
    """
    staged: list[ComponentSpec] = []
    for kind in KINDS:
        for _ in pm.call_each(
            _HOOK_BY_KIND[kind],
            kwargs_for=lambda info, kind=kind: {"register": _make_register(staged, kind, info)},
        ):
            pass
    registry = Registry()
    for spec in staged:
        if pm.hook_failed(spec.plugin):
            continue
        _add_isolated(pm, registry, spec)
    return registry


def _add_isolated(pm: Sym3DPluginManager, registry: Registry, spec: ComponentSpec) -> None:
    info = pm.info(spec.plugin)
    component = f"{spec.kind} {spec.name!r}"
    if spec.name in registry.names(spec.kind):
        old = registry.get(spec.kind, spec.name)
        owner = pm.info(old.plugin)
        exc = PluginConflictError(
            f"{component} is registered twice: by plugin {old.plugin!r} "
            f"({_label(owner.dist, owner.version)}) and by plugin {spec.plugin!r} "
            f"({_label(info.dist, info.version)}); the first one is kept.",
            hint="uninstall one of them, or disable one with SYM3D_LOAD_PLUGINS.",
        )
        pm.mark_broken(info.name, info.dist, info.version, exc, component=component)
        return
    try:
        registry.add(spec)
    except PluginError as exc:
        pm.mark_broken(info.name, info.dist, info.version, exc, component=component)


def _make_register(staged: list[ComponentSpec], kind: str, info: PluginInfo) -> Callable[..., None]:
    """The ``register`` callable handed to one plugin's hook; it stages specs for ``info``."""

    def register(
        name: str,
        factory: Callable[..., Any],
        *,
        description: str = "",
        requires: Iterable[str] = (),
        extra: str | None = None,
        options: Iterable[str] | None = None,
    ) -> None:
        staged.append(
            ComponentSpec(
                kind=kind,
                name=name,
                factory=factory,
                description=description,
                requires=tuple(requires),
                extra=extra,
                options=None if options is None else tuple(options),
                plugin=info.name,
                version=info.version,
                dist=info.dist,
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
