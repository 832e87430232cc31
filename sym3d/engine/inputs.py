"""The inputs of ``sym3d.invert`` made ready: the generator and its source, photo, crop, camera."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch

from sym3d.camera import check_camera_labels, yaw_pitch_roll
from sym3d.checks import check_range, check_shape
from sym3d.errors import ConfigError, PluginNotFoundError, QualityWarning, UserInputError
from sym3d.image import load_image
from sym3d.protocols import FaceObservation, Generator3D, PoseEstimator, Prior, generator_info
from sym3d.registry import Registry, build_record
from sym3d.resize import resize

__all__ = [
    "GeneratorSource",
    "resolve_generator",
    "build_extra_priors",
    "Inputs",
    "prepare_inputs",
]


@attrs.frozen
class GeneratorSource:
    """Registry name and factory options that rebuild the generator.

    ``options`` is ``None`` when it cannot be rebuilt; ``reason`` then says why.
    """

    name: str
    options: Mapping[str, Any] | None
    reason: str = ""


def _json_exact(options: Mapping[str, Any]) -> dict[str, Any] | None:
    """``options`` as they will read back from JSON, or ``None`` when JSON cannot hold them."""
    try:
        return json.loads(json.dumps(dict(options), allow_nan=False))
    except (TypeError, ValueError):
        return None


def resolve_generator(
    generator: Generator3D | str, options: Mapping[str, Any] | None, registry: Registry
) -> tuple[Generator3D, GeneratorSource]:
    """Build ``generator`` when it is a name, and find how to rebuild it.

    The generator's own ``info.build_options`` come first, then the registry's record of the
    factory options it was built with.
    """
    if isinstance(generator, str):
        gen = registry.build("generator", generator, **dict(options or {}))
    else:
        gen = generator
    if not isinstance(gen, Generator3D):
        raise UserInputError(
            f"generator: {type(gen).__name__} does not satisfy sym3d.protocols.Generator3D."
        )
    image_range = tuple(generator_info(gen).image_range)
    if image_range != (-1.0, 1.0):
        raise UserInputError(
            f"generator {gen.name!r} renders images in {image_range}; sym3d needs [-1, 1].",
            hint="declare info=GeneratorInfo(image_range=(-1.0, 1.0)) and render in [-1, 1].",
        )
    record = build_record(gen)
    declared = generator_info(gen).build_options
    if declared is not None:  # the generator's own statement (e.g. EG3D adds its checkpoint hash)
        name, opts = gen.name, declared
    elif record is not None:
        name, opts = record.name, record.options
    else:
        reason = "it was built outside the registry and declares no info.build_options"
        return gen, GeneratorSource(gen.name, None, reason)
    exact = _json_exact(opts)
    if exact is None:
        return gen, GeneratorSource(
            name, None, f"its factory options {dict(opts)!r} are not JSON values"
        )
    return gen, GeneratorSource(name, exact)


def build_extra_priors(priors: Sequence[Prior | str], registry: Registry) -> list[Prior]:
    """The caller's extra priors (objects, or names built from the registry), checked."""
    extra = [registry.build("prior", p) if isinstance(p, str) else p for p in priors]
    seen: set[str] = set()
    for p in extra:
        if not isinstance(p, Prior):
            raise UserInputError(
                f"priors: {type(p).__name__} does not satisfy sym3d.protocols.Prior "
                "(name, stages, every, views(), __call__)."
            )
        if p.name in seen:  # its terms would overwrite those of the other one of that name
            raise ConfigError(
                f"priors: two priors are named {p.name!r} (given twice?); their losses would "
                "overwrite each other.",
                hint="give each prior once, with the options you want.",
            )
        seen.add(p.name)
    return extra


def _as_image(image: torch.Tensor | str | os.PathLike) -> torch.Tensor:
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if not isinstance(image, torch.Tensor):
        raise UserInputError(
            "image: expected a tensor [1,3,H,W] in [0,1] or a file path, "
            f"got {type(image).__name__}."
        )
    x = image[None] if image.dim() == 3 else image
    check_shape(x, [1, 3, "H", "W"], "image")
    hint = "images are [0,1]; convert [-1,1] model output with sym3d.image.from_model_range()."
    check_range(x, 0.0, 1.0, "image", tol=1e-3, hint=hint)
    return x.float()


def _quality_warnings(camera: torch.Tensor, image: torch.Tensor, size: int) -> None:
    yaw = float(yaw_pitch_roll(camera)[0].abs().max())
    if yaw > 1.05:
        warnings.warn(
            f"the input camera's yaw is {yaw * 57.3:.0f} degrees; 3D GANs trained on FFHQ are "
            "unreliable beyond about 60 degrees.",
            QualityWarning,
            stacklevel=4,
        )
    if image.shape[-1] * 2 < size:
        warnings.warn(
            f"the input image ({image.shape[-1]}px) is upsampled more than 2x to the generator's "
            f"{size}px; expect a blurry result.",
            QualityWarning,
            stacklevel=4,
        )


def _estimate(
    image: torch.Tensor | str | os.PathLike, pose_estimator: PoseEstimator | str, registry: Registry
) -> FaceObservation:
    """Crop and camera of a photo from a pose estimator (built by name when a string)."""
    if isinstance(pose_estimator, str):
        try:
            pose_estimator = registry.build("pose", pose_estimator)
        except PluginNotFoundError as exc:
            raise UserInputError(
                "invert: no camera was given and no pose estimator "
                f"{pose_estimator!r} is installed "
                f"({exc}).",
                hint="install the faces extra (pip install 'sym3d[faces]'), or pass camera=.",
            ) from None
    return pose_estimator(_as_image(image))


@attrs.frozen(kw_only=True)
class Inputs:
    """The photo at the generator's resolution, its camera and (when known) masks and regions."""

    target: torch.Tensor
    camera: torch.Tensor
    observation: FaceObservation | None


def prepare_inputs(
    image: torch.Tensor | str | os.PathLike | None,
    camera: torch.Tensor | None,
    observation: FaceObservation | None,
    pose_estimator: PoseEstimator | str,
    size: int,
    device: torch.device,
    registry: Registry,
) -> Inputs:
    """Check and resize the inputs; estimate crop and camera of a photo given without a camera."""
    if observation is None and image is not None and camera is None:
        observation = _estimate(image, pose_estimator, registry)
        image = None
    if observation is not None:
        image = observation.image if image is None else image
        camera = observation.camera if camera is None else camera
    if image is None or camera is None:
        raise UserInputError(
            "invert: pass an image and its camera, or an observation (from a pose estimator) "
            "that carries both."
        )
    target = _as_image(image)
    cam = camera[None] if camera.dim() == 1 else camera
    check_shape(cam, [1, 25], "camera")
    check_camera_labels(cam, "camera")
    _quality_warnings(cam, target, size)
    obs = None
    if observation is not None:
        masks = {}
        for key in ("face_mask", "foreground_mask"):
            m = getattr(observation, key)
            masks[key] = None if m is None else resize(m.float(), size).clamp(0, 1).to(device)
        obs = attrs.evolve(
            observation,
            image=resize(observation.image.float(), size).clamp(0, 1).to(device),
            camera=observation.camera.to(device),
            **masks,
        )
    target = resize(target, size).clamp(0, 1).to(device)
    return Inputs(target=target, camera=cam.detach().clone().float().to(device), observation=obs)
