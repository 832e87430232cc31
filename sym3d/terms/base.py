"""What every objective term shares: its config base class, the set-up environment, the base prior.

A *term* is one module of :mod:`sym3d.terms` holding a config class and the provider it builds.
One snake-case name is used for the module, the config key (``tune.terms.<name>``), the config
class (``<Name>Config``) and the log prefix (``"<name>/<term>"``)::

    @attrs.frozen(kw_only=True)
    class CenterDepthConfig(TermConfig, name="center_depth", stages=("generator",)):
        weight: float = 1.0

        def setup(self, env: TermEnv) -> Prior:
            return CenterDepth(self, env)

Defining the class registers the term; one preset line such as
``{"tune.terms.center_depth.enabled": True}`` switches it on (see :mod:`sym3d.engine.presets`).
"""

from __future__ import annotations

import abc
import importlib
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import attrs

from sym3d.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from sym3d.protocols import Prior, PriorContext, PriorViews
    from sym3d.terms.losses import Losses

__all__ = [
    "TermConfig",
    "TermEnv",
    "BasePrior",
    "OrbitViewsPrior",
    "ImageLossFn",
    "term_config_class",
    "term_names",
    "StageName",
]

StageName = Literal["latent", "generator"]
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_CATALOGUE: dict[str, type[TermConfig]] = {}


@attrs.frozen(kw_only=True)
class TermConfig:
    """Base of every term's config: subclass with the ``name=`` (and ``stages=``) class keywords.

    Attributes:
        enabled: build the term (``false`` keeps its settings but leaves it out of the run).
    """

    name: ClassVar[str] = ""
    stages: ClassVar[tuple[str, ...]] = ("latent", "generator")
    needs_reference: ClassVar[bool] = False
    """True when the provider reads ``ctx.reference`` (the frozen pretrained generator)."""
    enabled: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))

    def __init_subclass__(cls, *, name: str = "", stages: Sequence[str] = (), **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if name:
            if not _NAME.match(name):
                raise ConfigError(f"term name {name!r}: expected snake_case (a-z, 0-9, _).")
            cls.name = name
            if stages:
                cls.stages = tuple(stages)
        own = cls.__dict__.get("name")
        if own:  # attrs re-creates the class (slots); the last class made is the one to keep
            _CATALOGUE[own] = cls

    def setup(self, env: TermEnv) -> Prior:
        """Build the provider of this term for one stage (see :class:`TermEnv`)."""
        raise NotImplementedError(f"{type(self).__name__} must implement setup(env) -> Prior")


def term_config_class(name: str) -> type[TermConfig]:
    """The config class of term ``name``: a defined class, else module ``sym3d.terms.<name>``.

    Raises:
        ConfigError: no such term (lists the known ones).
    """
    if name not in _CATALOGUE and _NAME.match(name):
        try:
            importlib.import_module(f"sym3d.terms.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"sym3d.terms.{name}":
                raise
    if name not in _CATALOGUE:
        raise ConfigError(f"unknown term {name!r}; known terms: {', '.join(term_names())}.")
    return _CATALOGUE[name]


def term_names() -> list[str]:
    """Names of the terms defined so far (the built-in ones always included)."""
    from sym3d.terms import BUILTIN

    for name in BUILTIN:
        if name not in _CATALOGUE:
            importlib.import_module(f"sym3d.terms.{name}")
    return sorted(_CATALOGUE)


@attrs.frozen(kw_only=True)
class TermEnv:
    """What a term's ``setup`` receives.

    Attributes:
        stage: the stage the provider is built for.
        losses: the run's image losses (perceptual, MSE, contextual features).
        every: the stage's auxiliary cadence (stage 2: ``tune.aux_every``; stage 1: 1).
        num_views: cameras per auxiliary term (``tune.num_views``).
        mirror_min_yaw: below this input |yaw| (radians) no mirror term runs, in either stage.
    """

    stage: StageName
    losses: Losses
    every: int = 1
    num_views: int = 1
    mirror_min_yaw: float = 0.2


class ImageLossFn(Protocol):
    """``loss(pred [B,3,H,W], target [B,3,H,W], mask=None) -> [B]`` on images in ``[0, 1]``."""

    def __call__(
        self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-sample loss ``[B]``."""
        ...


RegionLossFn = Callable[..., Any]
"""``loss(pred, target, boxes [B,R,4], mask=, weight_mask=) -> [B]`` (contextual loss in boxes)."""


class BasePrior(abc.ABC):
    """Convenience base of providers: stores ``name``, ``stages``, ``every``; asks for no views.

    Subclasses override :meth:`views` if they need renders and implement :meth:`__call__`.
    """

    def __init__(self, name: str, stages: Sequence[str], every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"every: expected a positive integer, got {every}.")
        self.name = name
        self.stages = tuple(stages)
        self.every = every

    def views(self, ctx: PriorContext) -> torch.Tensor | None:
        """No extra views by default."""
        return None

    @abc.abstractmethod
    def __call__(self, ctx: PriorContext, views: PriorViews | None) -> dict[str, torch.Tensor]:
        """Return the weighted loss terms (see :meth:`sym3d.protocols.Prior.__call__`)."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, stages={self.stages}, every={self.every})"
        )


class OrbitViewsPrior(BasePrior):
    """Base of the providers that compare with the frozen generator at random orbit cameras.

    Subclasses set ``self.config`` (with ``yaw_range`` and ``pitch_range`` half-widths in
    radians, and optionally ``symmetric``, default ``True``) and ``self.num_views``.
    """

    config: Any
    num_views: int

    def views(self, ctx: PriorContext) -> torch.Tensor | None:
        """``[num_views, 25]`` random orbit cameras drawn with ``ctx.rng``."""
        from sym3d.camera import sample_orbit_cameras

        c = self.config
        return sample_orbit_cameras(
            self.num_views,
            yaw_range=c.yaw_range,
            pitch_range=c.pitch_range,
            symmetric=getattr(c, "symmetric", True),
            generator=ctx.rng,
            device=ctx.camera.device,
        )
