"""``sym3d.invert``: one photo (with its camera) -> latent + tuned generator."""

from __future__ import annotations

import copy
import os
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
import torch.nn.functional as F

from sym3d.camera import check_camera_labels, yaw_pitch_roll
from sym3d.checks import check_range, check_shape
from sym3d.config import InversionConfig, apply_overrides, dump_toml, load_toml
from sym3d.engine.checkpoint import fingerprint, load_checkpoint
from sym3d.engine.events import Callback, Resumed, emit
from sym3d.engine.latent_stage import run_latent_stage
from sym3d.engine.objective import Objective, build_objective
from sym3d.engine.presets import get_preset
from sym3d.engine.result import InversionResult
from sym3d.engine.run import Run
from sym3d.engine.tune_stage import run_tune_stage
from sym3d.errors import QualityWarning, UserInputError
from sym3d.image import load_image
from sym3d.priors import DepthRegPrior, MirrorRegionsPrior, MirrorViewPrior, WarpViewsPrior
from sym3d.protocols import FaceObservation, Generator3D, Prior
from sym3d.registry import Registry

__all__ = ["invert", "load_generator", "resolve_config", "build_priors"]


def load_generator(name: str = "symheads", *, device: str | torch.device | None = None, registry: Registry | None = None, **options: Any) -> Generator3D:
    """Build a registered generator by name (``"eg3d"``, ``"symheads"``, ``"tiny"``, ...).

    Args:
        name: registry name (``sym3d plugins`` lists them).
        device: where to put it.
        options: passed to the generator's factory (e.g. ``network="ffhq512-128.pkl"`` for EG3D).

    Raises:
        sym3d.errors.PluginNotFoundError: unknown name (lists the available ones).
    """
    from sym3d.plugins import default_registry

    reg = registry or default_registry()
    gen = reg.build("generator", name, **options)
    if device is not None:
        gen = gen.to(device)
    return gen


def resolve_config(
    preset: str = "spi",
    config: InversionConfig | str | os.PathLike | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    *,
    recommended: Iterable[str] = (),
) -> InversionConfig:
    """Defaults < the generator's recommended settings < preset < config file < overrides.

    The generator's recommendations set the scale of a run (steps, loss resolution) for that
    generator; the preset then says which method runs (e.g. ``w+`` disables stage 2), so a
    recommendation never re-enables what a preset turned off. An :class:`InversionConfig`
    passed as ``config`` replaces all of that except the overrides.
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


def build_priors(config: InversionConfig, objective: Objective) -> list[Prior]:
    """The SPI priors enabled in ``config``."""
    priors: list[Prior] = []
    lat, tune = config.latent, config.tune
    if lat.steps > 0 and lat.mirror.enabled:
        priors.append(
            MirrorViewPrior(lat.mirror, objective.perceptual, perceptual_weight=lat.perceptual_weight, mse_weight=lat.mse_weight, mse=objective.mse)
        )
    if tune.steps > 0:
        if tune.warp.enabled:
            priors.append(WarpViewsPrior(tune.warp, objective.perceptual, num_views=tune.num_views, every=tune.aux_every))
        if tune.mirror.enabled:
            priors.append(
                MirrorRegionsPrior(tune.mirror, tune.warp, objective.region_contextual(tune.mirror), num_views=tune.num_views, every=tune.aux_every)
            )
        if tune.depth_reg.enabled:
            priors.append(DepthRegPrior(tune.depth_reg, num_views=tune.num_views, every=tune.aux_every))
    return priors


def _as_image(image: torch.Tensor | str | os.PathLike) -> torch.Tensor:
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if not isinstance(image, torch.Tensor):
        raise UserInputError(f"image: expected a tensor [1,3,H,W] in [0,1] or a file path, got {type(image).__name__}.")
    x = image[None] if image.dim() == 3 else image
    check_shape(x, [1, 3, "H", "W"], "image")
    check_range(x, 0.0, 1.0, "image", tol=1e-3, hint="images are [0,1]; convert [-1,1] model output with sym3d.image.from_model_range().")
    return x.float()


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > size)


def _prepare_observation(obs: FaceObservation | None, size: int, device: torch.device) -> FaceObservation | None:
    if obs is None:
        return None
    masks = {}
    for key in ("face_mask", "foreground_mask"):
        m = getattr(obs, key)
        masks[key] = None if m is None else _resize(m.float(), size).clamp(0, 1).to(device)
    return attrs.evolve(obs, image=_resize(obs.image.float(), size).clamp(0, 1).to(device), camera=obs.camera.to(device), **masks)


def _quality_warnings(camera: torch.Tensor, image: torch.Tensor, size: int) -> None:
    yaw, pitch, _ = yaw_pitch_roll(camera)
    if float(yaw.abs().max()) > 1.05:
        warnings.warn(
            f"the input camera's yaw is {float(yaw.abs().max()) * 57.3:.0f} degrees; 3D GANs trained on FFHQ are unreliable beyond about 60 degrees.",
            QualityWarning,
            stacklevel=3,
        )
    if image.shape[-1] * 2 < size:
        warnings.warn(
            f"the input image ({image.shape[-1]}px) is upsampled more than 2x to the generator's {size}px; expect a blurry result.",
            QualityWarning,
            stacklevel=3,
        )


def invert(
    image: torch.Tensor | str | os.PathLike | None = None,
    camera: torch.Tensor | None = None,
    *,
    generator: Generator3D | str = "symheads",
    generator_options: Mapping[str, Any] | None = None,
    preset: str = "spi",
    config: InversionConfig | str | os.PathLike | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    observation: FaceObservation | None = None,
    priors: Sequence[Prior | str] = (),
    callbacks: Sequence[Callback] = (),
    device: str | torch.device | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = True,
    pivot: torch.Tensor | None = None,
    registry: Registry | None = None,
) -> InversionResult:
    """Invert one photo into a 3D GAN with the facial symmetry prior (or a baseline preset).

    Args:
        image: ``[1, 3, H, W]`` (or ``[3, H, W]``) in ``[0, 1]``, or an image path; the aligned crop.
            Omit it when ``observation`` is given.
        camera: ``[1, 25]`` (or ``[25]``) EG3D camera label of the image.
        generator: a :class:`~sym3d.protocols.Generator3D` or a registry name. It is never modified:
            the engine tunes a copy.
        generator_options: factory options when ``generator`` is a name.
        preset: ``"spi"`` (default), ``"pti"``, ``"w"``, ``"w+"``, ``"pti-depth-reg"`` or an ablation;
            see :mod:`sym3d.engine.presets`.
        config: a full :class:`~sym3d.config.InversionConfig` (replaces the preset) or a TOML file
            (merged on the preset).
        overrides: dotted overrides, e.g. ``["tune.steps=200"]``.
        observation: an aligned face with camera, masks and regions (e.g. from a pose estimator);
            supplies ``image`` and ``camera``.
        priors: extra priors (objects, or names registered by plugins).
        callbacks: receive :mod:`sym3d.engine.events` (progress, checkpoints).
        device: ``"cpu"``, ``"cuda"``, ... (default: the generator's device).
        checkpoint_dir: where to keep a resumable checkpoint (``config.checkpoint_every`` steps).
        resume: continue from a checkpoint in ``checkpoint_dir`` if present.
        pivot: ``[1, num_ws, w_dim]`` latent to start stage 2 from; stage 1 is skipped (e.g. a
            pivot shared by several stage-2 settings, or from an encoder).
        registry: component registry (default: installed plugins).

    A generator may carry ``recommended_overrides`` (dotted settings suited to it, e.g. step
    counts for a CPU-sized world); they apply after the preset and before ``config``/``overrides``.

    Returns:
        :class:`~sym3d.engine.result.InversionResult`.

    Raises:
        sym3d.errors.UserInputError: bad image/camera/config (typed subclasses).
    """
    from sym3d.plugins import default_registry

    reg = registry or default_registry()
    gen_options = dict(generator_options or {})
    if isinstance(generator, str):
        gen_name = generator
        base_gen = reg.build("generator", generator, **gen_options)
    else:
        base_gen = generator
        gen_name = getattr(generator, "name", type(generator).__name__)
        gen_options = dict(getattr(generator, "build_options", {}) or gen_options)
    if not isinstance(base_gen, Generator3D):
        raise UserInputError(f"generator: {type(base_gen).__name__} does not satisfy sym3d.protocols.Generator3D.")
    cfg = resolve_config(preset, config, overrides, recommended=getattr(base_gen, "recommended_overrides", ()))
    dev = torch.device(device) if device is not None else next(base_gen.parameters()).device

    if observation is not None:
        image = observation.image if image is None else image
        camera = observation.camera if camera is None else camera
    if image is None or camera is None:
        raise UserInputError("invert: pass an image and its camera, or an observation (from a pose estimator) that carries both.")
    target = _as_image(image)
    cam = camera[None] if camera.dim() == 1 else camera
    check_shape(cam, [1, 25], "camera")
    check_camera_labels(cam, "camera")
    size = base_gen.img_resolution
    _quality_warnings(cam, target, size)
    target = _resize(target, size).clamp(0, 1).to(dev)
    cam = cam.float().to(dev)
    obs = _prepare_observation(observation, size, dev)

    extra_priors = [reg.build("prior", p) if isinstance(p, str) else p for p in priors]
    for p in extra_priors:
        if not isinstance(p, Prior):
            raise UserInputError(f"priors: {type(p).__name__} does not satisfy sym3d.protocols.Prior (name, stages, every, views(), __call__).")

    working = copy.deepcopy(base_gen).to(dev)
    needs_reference = cfg.tune.steps > 0 and (cfg.tune.depth_reg.enabled or any("generator" in p.stages for p in extra_priors))
    reference = base_gen.frozen_copy().to(dev) if needs_reference else None
    objective = build_objective(cfg, reg, dev)
    all_priors = [*build_priors(cfg, objective), *extra_priors]

    rng = torch.Generator().manual_seed(cfg.seed)
    fp = fingerprint(target, cam, dump_toml(cfg), gen_name, sorted(gen_options.items()), [type(p).__name__ for p in all_priors], pivot if pivot is not None else "")
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    state = load_checkpoint(ckpt_dir, fp) if (ckpt_dir is not None and resume) else None

    run = Run(
        generator=working,
        reference=reference,
        target=target,
        camera=cam,
        observation=obs,
        config=cfg,
        objective=objective,
        priors=all_priors,
        rng=rng,
        callbacks=list(callbacks),
        checkpoint_dir=ckpt_dir,
        fingerprint=fp,
    )
    if state is not None:
        rng.set_state(state["rng"])
        run.history = list(state["history"])
        emit(run.callbacks, Resumed(path=str(ckpt_dir), stage=state["stage"], step=int(state["step"])))

    summary: dict[str, Any] = {"preset": cfg.preset, "device": str(dev), "generator": gen_name}
    stage = state.get("stage") if state is not None else None
    t0 = time.perf_counter()
    if stage in ("generator", "done"):
        ws = state["ws"].to(dev)  # type: ignore[index]
        if "camera" in state:  # type: ignore[operator]
            run.camera = state["camera"].to(dev)  # type: ignore[index]
    elif pivot is not None:
        check_shape(pivot, [1, base_gen.num_ws, base_gen.w_dim], "pivot")
        ws = pivot.detach().to(dev, torch.float32)
        summary["pivot_given"] = True
    else:
        ws = run_latent_stage(run, state)
        run.checkpoint_state = {"ws": ws.cpu(), "camera": run.camera.cpu()}
        run.maybe_checkpoint(
            "generator", 0, 1, lambda: {"stage": "generator", "step": 0, "ws": ws.cpu(), "tuned": {}, "tune_opt": None}, force=True
        )
        if cfg.latent.refine_camera:
            dyaw, dpitch = (a - b for a, b in zip(yaw_pitch_roll(run.camera)[:2], yaw_pitch_roll(cam)[:2]))
            summary.update(camera_refined_dyaw=float(dyaw), camera_refined_dpitch=float(dpitch))
    summary["latent_seconds"] = time.perf_counter() - t0

    tuned: dict[str, torch.Tensor] = {}
    t1 = time.perf_counter()
    if stage == "done":
        tuned = dict(state["tuned"])  # type: ignore[index]
    elif cfg.tune.steps > 0:
        resume_state = state if (stage == "generator" and state.get("tune_opt") is not None) else None  # type: ignore[union-attr]
        tuned, early, steps_run = run_tune_stage(run, ws, resume_state)
        summary.update(tune_early_stopped=early, tune_steps_run=steps_run)
    summary["tune_seconds"] = time.perf_counter() - t1

    result = InversionResult(
        ws=ws.detach().cpu(),
        camera=run.camera.detach().cpu(),
        generator_name=gen_name,
        generator_options=gen_options,
        scope=cfg.tune.scope,
        tuned=tuned,
        history=tuple(run.history),
        config=cfg,
        target=target.detach().cpu(),
        summary=summary,
    )
    if ckpt_dir is not None:
        run.maybe_checkpoint(
            "done",
            0,
            1,
            lambda: {"stage": "done", "step": cfg.tune.steps, "ws": ws.cpu(), "camera": run.camera.cpu(), "tuned": tuned, "tune_opt": None},
            force=True,
        )
    return result
