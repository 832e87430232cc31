"""``sym3d.invert``: one photo (with or without its camera) -> latent + tuned generator."""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from sym3d.checks import check_shape
from sym3d.config import InversionConfig, apply_overrides, dump_toml, load_toml
from sym3d.defaults import DEFAULT_GENERATOR
from sym3d.engine.checkpoint import fingerprint
from sym3d.engine.events import Callback
from sym3d.engine.inputs import build_extra_priors, prepare_inputs, resolve_generator
from sym3d.engine.presets import get_preset
from sym3d.engine.result import InversionResult
from sym3d.engine.runner import Runner
from sym3d.engine.step import Run
from sym3d.errors import UserInputError
from sym3d.priors import build_priors
from sym3d.protocols import FaceObservation, Generator3D, PoseEstimator, Prior, generator_info
from sym3d.registry import Registry
from sym3d.terms.losses import build_losses

__all__ = ["invert", "load_generator", "load_pose_estimator", "resolve_config"]

Progress = Literal["auto", "rich", "plain", "off"]


def _registry(registry: Registry | None) -> Registry:
    from sym3d.plugins import default_registry

    return registry or default_registry()


def load_generator(
    name: str = DEFAULT_GENERATOR,
    *,
    device: str | torch.device | None = None,
    registry: Registry | None = None,
    **options: Any,
) -> Generator3D:
    """Build a registered generator by name (``"eg3d"``, ``"symheads"``, ``"tiny"``, ...).

    Args:
        name: registry name (``sym3d plugins`` lists them); default
            :data:`~sym3d.defaults.DEFAULT_GENERATOR` (``"symheads"``).
        device: where to put it.
        options: passed to the generator's factory (e.g. ``network="ffhq512-128.pkl"`` for EG3D);
            recorded, so that results rebuild exactly this generator.

    Raises:
        sym3d.errors.PluginNotFoundError: unknown name (lists the available ones).
        sym3d.errors.ConfigError: an option the factory does not accept (lists the accepted
            ones when the plugin declares them).
    """
    gen = _registry(registry).build("generator", name, **options)
    if device is not None:
        gen.to(device)  # nn.Module.to moves in place: the registry's record stays valid
    return gen


def load_pose_estimator(
    name: str = "mediapipe", *, registry: Registry | None = None, **options: Any
) -> PoseEstimator:
    """Build a registered pose estimator (photo -> aligned crop, camera, masks, regions).

    Raises:
        sym3d.errors.PluginNotFoundError: unknown name.
        sym3d.errors.MissingDependencyError: its extra is not installed (names it, e.g. ``faces``).
    """
    return _registry(registry).build("pose", name, **options)


def resolve_config(
    preset: str = "spi",
    config: InversionConfig | str | os.PathLike | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    *,
    recommended: Iterable[str] = (),
) -> InversionConfig:
    """The run's config, by the precedence stated in :class:`sym3d.protocols.GeneratorInfo`.

    An :class:`InversionConfig` passed as ``config`` replaces all but the overrides.
    """
    if isinstance(config, InversionConfig):
        cfg = config
    else:
        recommended = list(recommended)
        base = apply_overrides(InversionConfig(), recommended) if recommended else None
        cfg = get_preset(preset, base)
        if config is not None:
            cfg = load_toml(config, base=cfg)
    return apply_overrides(cfg, overrides) if overrides else cfg


def _needs_reference(cfg: InversionConfig, extra: Sequence[Prior]) -> bool:
    """Whether stage 2 needs the frozen pretrained generator (a term or an extra prior reads it)."""
    if cfg.tune.steps == 0:
        return False
    terms = cfg.tune.terms.values()
    return any(t.enabled and t.needs_reference for t in terms) or any(
        "generator" in p.stages for p in extra
    )


def _progress(progress: Progress, callbacks: Sequence[Callback]) -> Any:
    """A renderer of :mod:`sym3d.cli.progress` for ``progress``.

    ``auto`` is rich when stderr is a terminal and the caller passed no callbacks of its own.
    """
    from sym3d.cli.progress import make_progress

    if progress not in ("auto", "rich", "plain", "off"):
        raise UserInputError(f"progress: expected auto, rich, plain or off, got {progress!r}.")
    if progress == "auto":
        progress = "rich" if sys.stderr.isatty() and not callbacks else "off"
    return make_progress(progress)


def invert(
    image: torch.Tensor | str | os.PathLike | None = None,
    camera: torch.Tensor | None = None,
    *,
    generator: Generator3D | str = DEFAULT_GENERATOR,
    generator_options: Mapping[str, Any] | None = None,
    preset: str = "spi",
    config: InversionConfig | str | os.PathLike | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    observation: FaceObservation | None = None,
    pose_estimator: PoseEstimator | str = "mediapipe",
    priors: Sequence[Prior | str] = (),
    callbacks: Sequence[Callback] = (),
    progress: Progress = "auto",
    device: str | torch.device | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = True,
    pivot: torch.Tensor | None = None,
    registry: Registry | None = None,
) -> InversionResult:
    """Invert one photo into a 3D GAN with the facial symmetry prior (or a baseline preset).

    Args:
        image: ``[1, 3, H, W]`` (or ``[3, H, W]``) in ``[0, 1]``, or an image path. With
            ``camera``: the aligned crop. Without: a photo, cropped and posed by ``pose_estimator``.
        camera: ``[1, 25]`` (or ``[25]``) EG3D camera label of the crop; never modified.
        generator: a :class:`~sym3d.protocols.Generator3D` or a registry name (default
            :data:`~sym3d.defaults.DEFAULT_GENERATOR`, ``"symheads"``); never modified (the
            engine tunes a copy).
        generator_options: factory options when ``generator`` is a name.
        preset: ``"spi"`` (default), ``"pti"``, ``"w"``, ``"w+"``, ... (see
            :mod:`sym3d.engine.presets`).
        config: a full :class:`~sym3d.config.InversionConfig` (replaces the preset) or a TOML file
            (merged on it); precedence: :class:`~sym3d.protocols.GeneratorInfo`.
        overrides: dotted overrides, e.g. ``["tune.steps=200"]``.
        observation: an aligned face with camera, masks and regions (supplies image and camera).
        pose_estimator: estimator (or registry name) used for a photo given without a camera.
        priors: extra terms (objects satisfying :class:`~sym3d.protocols.Prior`, or names),
            added after the config's ``priors`` (registered priors with options).
        callbacks: receive :mod:`sym3d.engine.events`.
        progress: ``"auto"`` (rich progress when stderr is a terminal and no ``callbacks`` are
            given), ``"rich"``, ``"plain"`` or ``"off"``; printed on stderr.
        device: ``"cpu"``, ``"cuda"``, ... (default: the generator's device).
        checkpoint_dir: where the run state is kept (every ``config.checkpoint_every`` steps).
        resume: continue from the run state in ``checkpoint_dir`` if there is one.
        pivot: ``[1, num_ws, w_dim]`` latent to start stage 2 from; stage 1 is skipped.
        registry: component registry (default: installed plugins).

    Raises:
        sym3d.errors.UserInputError: bad image/camera/config (typed subclasses).
    """
    reg = _registry(registry)
    base_gen, source = resolve_generator(generator, generator_options, reg)
    info = generator_info(base_gen)
    cfg = resolve_config(preset, config, overrides, recommended=info.recommended_overrides)
    dev = torch.device(device) if device is not None else next(base_gen.parameters()).device
    size = base_gen.img_resolution
    inputs = prepare_inputs(image, camera, observation, pose_estimator, size, dev, reg)
    extra = build_extra_priors([*build_priors(cfg.priors, reg), *priors], reg)
    if pivot is not None:
        check_shape(pivot, [1, base_gen.num_ws, base_gen.w_dim], "pivot")

    losses = build_losses(cfg.perceptual, cfg.perceptual_resize, cfg.contextual_features, reg, dev)
    working = copy.deepcopy(base_gen).to(dev)
    reference = base_gen.frozen_copy().to(dev) if _needs_reference(cfg, extra) else None
    rng = torch.Generator().manual_seed(cfg.seed)
    run = Run(working, reference, inputs.target, inputs.camera, inputs.observation, rng, [])
    options = sorted((source.options or {}).items())
    names = [type(p).__name__ for p in extra]
    given = pivot if pivot is not None else ""
    fp = fingerprint(
        inputs.target, inputs.camera, dump_toml(cfg), source.name, options, names, given
    )
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    with _progress(progress, callbacks) as bar:
        run.callbacks = [*callbacks, bar]
        outcome = Runner(run, cfg, losses, extra, ckpt, fp)(resume=resume, pivot=pivot)
    summary = {"preset": cfg.preset, "device": str(dev), "generator": source.name}
    return InversionResult(
        ws=outcome.ws,
        camera=outcome.camera,
        input_camera=inputs.camera.detach().cpu(),
        generator_name=source.name,
        generator_options=source.options,
        generator_note=source.reason,
        scope=cfg.tune.scope,
        tuned=outcome.tuned,
        history=tuple(run.history),
        config=cfg,
        target=inputs.target.detach().cpu(),
        summary={**summary, **outcome.summary},
    )
