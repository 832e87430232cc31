"""Component catalogues filled by plugins: lookup by name, conflicts, suggestions.

A :class:`Registry` maps ``(kind, name)`` to a :class:`ComponentSpec`. Kinds are
``"generator"``, ``"pose"``, ``"prior"`` and ``"loss"``. Two plugins registering one name is
an error naming both; an unknown name lists the available ones and the closest match.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import re
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import attrs

from sym3d.errors import (
    ConfigError,
    MissingDependencyError,
    PluginConflictError,
    PluginError,
    PluginNotFoundError,
)

__all__ = ["KINDS", "ComponentSpec", "Registry", "RegisterFn", "BuildRecord", "build_record"]

KINDS: tuple[str, ...] = ("generator", "pose", "prior", "loss")
_NAME = re.compile(r"^[a-z0-9][a-z0-9+_:.-]*$")


class RegisterFn(Protocol):
    """The ``register`` callable handed to ``register_*`` hooks."""

    def __call__(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        description: str = "",
        requires: Iterable[str] = (),
        extra: str | None = None,
        options: Iterable[str] | None = None,
    ) -> None:
        """Register ``factory`` under ``name``; ``options``: the option names it accepts."""


@attrs.frozen(kw_only=True)
class ComponentSpec:
    """One registered component.

    Attributes:
        kind: one of :data:`KINDS`.
        name: registry name.
        factory: ``factory(**options)`` builds the component (imports lazily).
        description: one line for ``sym3d plugins``.
        requires: import names that must be importable to build it.
        extra: the pip extra that provides ``requires`` (for the error hint).
        plugin: name of the plugin that registered it.
        version: version of the distribution providing that plugin (or ``""``).
        dist: name of that distribution (or ``""``); named in the missing-dependency hint.
        options: the option names ``factory`` accepts, as declared by the plugin (``None``: not
            declared; then they are read from the factory's signature when it has no
            ``**kwargs``).
    """

    kind: str
    name: str
    factory: Callable[..., Any]
    description: str = ""
    requires: tuple[str, ...] = ()
    extra: str | None = None
    plugin: str = ""
    version: str = ""
    dist: str = ""
    options: tuple[str, ...] | None = attrs.field(
        default=None, converter=attrs.converters.optional(tuple)
    )

    def accepted_options(self) -> list[str] | None:
        """Sorted option names the factory accepts, or ``None`` when they cannot be known.

        Declared :attr:`options` win; otherwise the factory's keyword parameters, unless it
        takes ``**kwargs`` (a pass-through factory: its options are known only when it runs).
        """
        if self.options is not None:
            return sorted(self.options)
        try:
            params = inspect.signature(self.factory).parameters.values()
        except (TypeError, ValueError):  # builtins and odd callables
            return None
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return None
        keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return sorted(p.name for p in params if p.kind in keyword)

    def missing_requirements(self) -> list[str]:
        """Import names in :attr:`requires` that cannot be found (without importing them)."""
        missing = []
        for mod in self.requires:
            try:
                found = importlib.util.find_spec(mod) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                missing.append(mod)
        return missing

    @property
    def available(self) -> bool:
        """True when every requirement is importable."""
        return not self.missing_requirements()


@attrs.frozen(kw_only=True)
class BuildRecord:
    """How a component was built: ``registry.build(kind, name, **options)``."""

    kind: str
    name: str
    options: Mapping[str, Any]


_BUILT: weakref.WeakKeyDictionary[Any, BuildRecord] = weakref.WeakKeyDictionary()


def build_record(component: object) -> BuildRecord | None:
    """The :class:`BuildRecord` of an object a :class:`Registry` built, else ``None``."""
    try:
        return _BUILT.get(component)
    except TypeError:  # not weak-referenceable or not hashable: never recorded
        return None


@attrs.define
class Registry:
    """All components by kind and name."""

    _specs: dict[str, dict[str, ComponentSpec]] = attrs.field(
        factory=lambda: {k: {} for k in KINDS}
    )

    def add(self, spec: ComponentSpec) -> None:
        """Add ``spec``; raise :class:`PluginConflictError` if its name is taken for its kind."""
        if spec.kind not in self._specs:
            raise PluginError(
                f"unknown component kind {spec.kind!r}; expected one of {', '.join(KINDS)}."
            )
        if not _NAME.match(spec.name):
            raise PluginError(
                f"plugin {spec.plugin!r} registered an invalid {spec.kind} name {spec.name!r}; "
                "names are lower-case letters, digits and + _ : . -"
            )
        old = self._specs[spec.kind].get(spec.name)
        if old is not None:
            raise PluginConflictError(
                f"{spec.kind} {spec.name!r} is registered twice: by plugin {old.plugin!r} and by plugin {spec.plugin!r}.",
                hint="uninstall one of them, or disable one with SYM3D_LOAD_PLUGINS.",
            )
        self._specs[spec.kind][spec.name] = spec

    def names(self, kind: str) -> list[str]:
        """Sorted names of ``kind``."""
        return sorted(self._specs.get(kind, {}))

    def specs(self, kind: str | None = None) -> list[ComponentSpec]:
        """All specs (of one kind), sorted by kind then name."""
        kinds = [kind] if kind else list(self._specs)
        return [self._specs[k][n] for k in kinds for n in sorted(self._specs.get(k, {}))]

    def get(self, kind: str, name: str) -> ComponentSpec:
        """The spec for ``(kind, name)``.

        Raises:
            PluginNotFoundError: listing the available names and the closest match.
        """
        table = self._specs.get(kind, {})
        if name in table:
            return table[name]
        suggestions = difflib.get_close_matches(name, list(table), n=3, cutoff=0.5)
        raise PluginNotFoundError(kind, name, sorted(table), suggestions)

    def check_options(self, kind: str, name: str, options: Mapping[str, Any]) -> ComponentSpec:
        """The spec of ``(kind, name)`` once ``options`` are known to be accepted by its factory.

        Options of a factory that takes ``**kwargs`` and declares none cannot be checked here;
        :meth:`build` reports those when the factory refuses them.

        Raises:
            PluginNotFoundError: unknown name.
            ConfigError: an option the factory does not accept (lists the accepted ones).
        """
        spec = self.get(kind, name)
        accepted = spec.accepted_options()
        unknown = [key for key in options if accepted is not None and key not in accepted]
        if unknown:
            listing = ", ".join(accepted) if accepted else "none"
            close = difflib.get_close_matches(unknown[0], accepted or [], n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else "`sym3d plugins` lists the options."
            raise ConfigError(
                f"{kind} {name!r} has no option {unknown[0]!r}; accepted options: {listing}.",
                hint=hint,
            )
        return spec

    def build(self, kind: str, name: str, **options: Any) -> Any:
        """Build the component ``(kind, name)`` with ``options``.

        The options are remembered with the component (:func:`build_record`), so that a result
        made with it records how to rebuild exactly this component.

        Raises:
            PluginNotFoundError: unknown name.
            ConfigError: an option the factory does not accept (see :meth:`check_options`).
            MissingDependencyError: a requirement is not installed (names the pip extra).
        """
        spec = self.check_options(kind, name, options)
        missing = spec.missing_requirements()
        if missing:
            raise MissingDependencyError(
                f"{kind} {name!r}", spec.extra, package=", ".join(missing), dist=spec.dist
            )
        try:
            component = spec.factory(**options)
        except TypeError as exc:
            refused = _refused_option(exc, options)
            if refused is None:
                raise
            raise ConfigError(
                f"{kind} {name!r} has no option {refused!r} ({exc}).",
                hint="see the component's documentation for its options.",
            ) from None
        try:  # remembered so that results can rebuild exactly this component
            _BUILT[component] = BuildRecord(kind=kind, name=name, options=dict(options))
        except TypeError:
            pass
        return component


def _refused_option(exc: TypeError, options: Mapping[str, Any]) -> str | None:
    """The option named by Python's "got an unexpected keyword argument 'x'" in ``exc``, if any."""
    text = str(exc)
    if "unexpected keyword argument" not in text:
        return None
    return next((key for key in options if f"'{key}'" in text), None)
