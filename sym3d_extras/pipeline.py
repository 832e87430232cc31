"""One photo -> one result folder: pose estimation, inversion, exports, written atomically.

The folder is built in ``<out>.partial`` next to the final location (which also holds the run's
resumable checkpoint) and renamed to ``<out>`` only when everything is written, so a crash never
leaves a half-written result that looks finished. A re-run resumes from the partial folder; an
existing finished folder is refused unless ``overwrite`` is set.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from sym3d.errors import ResultExistsError, UserInputError
from sym3d.protocols import FaceObservation, Generator3D, PoseEstimator

__all__ = ["PhotoOutcome", "partial_dir", "process_photo", "observation_from_label"]


@attrs.frozen(kw_only=True)
class PhotoOutcome:
    """What :func:`process_photo` did for one image."""

    image: str
    out_dir: str
    seconds: float
    metrics: Mapping[str, Any] = attrs.field(factory=dict)
    notes: tuple[str, ...] = ()


def partial_dir(out_dir: Path) -> Path:
    """Where the result is assembled before the final rename."""
    return out_dir.with_name(out_dir.name + ".partial")


def observation_from_label(image: torch.Tensor, camera: torch.Tensor) -> FaceObservation:
    """An observation for an already aligned crop with a known camera label (no masks, no regions)."""
    cam = camera.reshape(1, 25).float()
    return FaceObservation(image=image, camera=cam, notes=("camera label given; no pose estimation",))


def _json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def process_photo(
    image: str | os.PathLike | torch.Tensor,
    out_dir: str | os.PathLike,
    *,
    generator: Generator3D,
    pose_estimator: PoseEstimator | None = None,
    camera: torch.Tensor | None = None,
    preset: str = "spi",
    config: Any = None,
    overrides: Iterable[str] = (),
    device: str | torch.device | None = None,
    callbacks: Sequence[Callable[[Any], None]] = (),
    export: Sequence[str] = ("views", "video", "depth", "mesh", "plots", "report"),
    export_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    resume: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> PhotoOutcome:
    """Invert one photo into ``out_dir`` (see module docstring).

    Args:
        image: a photo path or a ``[1, 3, H, W]`` tensor in ``[0, 1]``.
        out_dir: the result folder to create.
        generator: the generator to invert into (not modified).
        pose_estimator: turns the photo into an aligned crop + camera + masks; required unless
            ``camera`` is given (then the image must already be an aligned crop).
        camera: a known ``[25]``/``[1, 25]`` camera label of an aligned crop (skips pose estimation).
        preset, config, overrides, device: as in :func:`sym3d.invert`.
        callbacks: engine event callbacks (progress).
        export: which outputs to write (see :func:`sym3d_extras.export.export_result`).
        export_options: keyword options of ``export_result`` (frames, mesh resolution, ...).
        overwrite: replace an existing finished folder.
        resume: continue a crashed run from its checkpoint.
        progress: ``progress(stage, done, total)`` for the export steps.

    Raises:
        ResultExistsError: ``out_dir`` holds a finished result and ``overwrite`` is false.
        UserInputError: neither a pose estimator nor a camera label.
    """
    import sym3d
    from sym3d.image import load_image, save_image

    t0 = time.perf_counter()
    out = Path(out_dir)
    name = str(image) if not isinstance(image, torch.Tensor) else "<tensor>"
    if out.exists() and not overwrite:
        raise ResultExistsError(f"{out}: a finished result is already there.", hint="pass --overwrite to replace it, or choose another --out.")
    work = partial_dir(out)
    if work.exists() and not resume:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)

    photo = load_image(image) if not isinstance(image, torch.Tensor) else image
    notes: list[str] = []
    pose: dict[str, Any] = {}
    if camera is not None:
        obs = observation_from_label(photo, camera)
    elif pose_estimator is not None:
        analysis = pose_estimator.analyze(photo, source=name) if hasattr(pose_estimator, "analyze") else None
        obs = analysis.observation if analysis is not None else pose_estimator(photo)
        if analysis is not None:
            pose = {k: math.degrees(float(getattr(analysis, k))) for k in ("yaw", "pitch", "roll") if hasattr(analysis, k)}
    else:
        raise UserInputError(
            f"{name}: no camera label and no pose estimator.",
            hint="install the faces extra (pip install 'sym3d[faces]') or pass camera labels (--cameras dataset.json).",
        )
    notes.extend(obs.notes)
    (work / "views").mkdir(exist_ok=True)
    save_image(obs.image, work / "views" / "aligned.png")
    from sym3d_extras.export.views import save_photo_preview

    save_photo_preview(photo, work / "views" / "photo.jpg")  # the report shows it
    if obs.face_mask is not None:
        save_image(obs.face_mask.expand(-1, 3, -1, -1), work / "views" / "face_mask.png")
    _json(work / "pose.json", {"image": name, "camera": obs.camera.reshape(-1).tolist(), "angles_degrees": pose, "regions": dict(obs.regions), "notes": notes})

    result = sym3d.invert(
        observation=obs,
        generator=generator,
        preset=preset,
        config=config,
        overrides=list(overrides),
        callbacks=list(callbacks),
        device=device,
        checkpoint_dir=work / "checkpoint",
        resume=resume,
    )
    result.save(work)
    metrics: dict[str, Any] = {}
    if export:
        from sym3d_extras.export import export_result

        tuned = result.apply(generator)
        # the report is titled with the result's name, not the work folder's
        options = {"title": f"sym3d: {out.name}", **dict(export_options or {})}
        written = export_result(
            result, tuned, work, what=tuple(export), progress=progress, **options
        )
        if "metrics" in written and Path(written["metrics"]).exists():
            metrics = json.loads(Path(written["metrics"]).read_text())
    shutil.rmtree(work / "checkpoint", ignore_errors=True)
    seconds = time.perf_counter() - t0
    _json(work / "run.json", {"image": name, "seconds": seconds, "preset": result.config.preset, "notes": notes, "summary": dict(result.summary)})
    if out.exists():  # overwrite: swap the old result out, then remove it
        trash = out.with_name(out.name + ".old")
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(out, trash)
        os.replace(work, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(work, out)
    return PhotoOutcome(image=name, out_dir=str(out), seconds=seconds, metrics=metrics, notes=tuple(notes))
