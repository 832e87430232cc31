"""One photo -> one result folder: pose estimation, inversion, exports, written atomically.

The result ``OUT/<key>`` is assembled in ``OUT/.work/<key>`` (which also holds the run's resumable
checkpoint) under the result's lock, checked for completeness, flushed to disk and renamed into
place only when everything is written, so a crash never leaves a half-written result that looks
finished and two runs never write one result (see :mod:`sym3d.app.outdir`). A re-run resumes
from the work folder; an existing finished folder is refused unless ``overwrite`` is set, and then
it is moved aside under a unique name and deleted only after the new one is in place.
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

from sym3d.app.outdir import (
    WORK_DIR,
    check_complete,
    check_key,
    check_not_linked,
    result_lock,
    trash_dir,
    work_dir,
)
from sym3d.atomic import atomic_write_text, fsync_dir, fsync_tree
from sym3d.engine.result import ResultFiles as Files
from sym3d.errors import ResultExistsError, Sym3DError, UserInputError
from sym3d.protocols import FaceObservation, Generator3D, PoseEstimator

__all__ = ["PhotoOutcome", "process_photo", "observation_from_label"]


@attrs.frozen(kw_only=True)
class PhotoOutcome:
    """What :func:`process_photo` did for one image."""

    image: str
    out_dir: str
    seconds: float
    metrics: Mapping[str, Any] = attrs.field(factory=dict)
    notes: tuple[str, ...] = ()


def observation_from_label(image: torch.Tensor, camera: torch.Tensor) -> FaceObservation:
    """An observation for an already aligned crop with a known camera label (no masks, no regions)."""
    cam = camera.reshape(1, 25).float()
    return FaceObservation(
        image=image, camera=cam, notes=("camera label given; no pose estimation",)
    )


def _json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, default=str))


def _from_checkpoint(exc: BaseException) -> bool:
    """The exception was raised while reading the resumable checkpoint."""
    from sym3d.engine.checkpoint import load_checkpoint

    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code is load_checkpoint.__code__:
            return True
        tb = tb.tb_next
    return False


def _commit(work: Path, out: Path) -> None:
    """Flush ``work`` to disk and rename it to ``out``; an old ``out`` is moved aside, then deleted."""
    fsync_tree(work)
    if os.path.lexists(out):  # overwrite: only the entry this run moved aside is deleted
        trash = trash_dir(out)
        os.replace(out, trash)
        os.replace(work, out)
        fsync_dir(out.parent)
        if trash.is_dir() and not trash.is_symlink():
            shutil.rmtree(trash, ignore_errors=True)
        else:
            trash.unlink(missing_ok=True)
    else:
        os.replace(work, out)
        fsync_dir(out.parent)


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
    before_commit: Callable[[], None] | None = None,
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
        export: which outputs to write (see :func:`sym3d.app.export.export_result`).
        export_options: keyword options of ``export_result`` (frames, mesh resolution, ...).
        overwrite: replace an existing finished folder.
        resume: continue a crashed run from its checkpoint.
        progress: ``progress(stage, done, total)`` for the export steps.
        before_commit: called under the lock right before the final rename; raising there
            keeps the work folder and renames nothing (a batch worker whose coordinator is gone).

    Raises:
        ResultExistsError: ``out_dir`` holds a finished result and ``overwrite`` is false.
        ResultNameError: ``out_dir``'s name cannot name a result (hidden, reserved, ...).
        ResultBusyError: another run is writing the same result.
        UserInputError: neither a pose estimator nor a camera label.
        OutputWriteError: the assembled result is incomplete (changed by something else).
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    name = str(image) if not isinstance(image, torch.Tensor) else "<tensor>"
    check_key(out.name, name)
    check_not_linked(out.parent / WORK_DIR, out.parent)
    with result_lock(out):
        if os.path.lexists(out) and not overwrite:
            raise ResultExistsError(
                f"{out}: a finished result is already there.",
                hint="pass --overwrite to replace it, or choose another --out.",
            )
        work = work_dir(out)
        if work.exists() and not resume:
            shutil.rmtree(work)
        created = not work.exists()
        work.mkdir(parents=True, exist_ok=True)
        try:
            outcome, expected = _run(
                image, name, work, generator=generator, pose_estimator=pose_estimator,
                camera=camera, preset=preset, config=config, overrides=overrides, device=device,
                callbacks=callbacks, export=export, export_options=export_options, resume=resume,
                progress=progress,
            )  # fmt: skip
        except BaseException:
            if created and not (work / "checkpoint").exists():  # nothing to resume: remove it
                shutil.rmtree(work, ignore_errors=True)
            raise
        metrics = outcome.pop("metrics")
        seconds = time.perf_counter() - t0
        _json(work / Files.RUN, {"image": name, "seconds": seconds, **outcome})
        check_complete(work, [*expected, Files.RUN])
        if before_commit is not None:
            before_commit()
        _commit(work, out)
    notes = tuple(outcome["notes"])
    return PhotoOutcome(image=name, out_dir=str(out), seconds=seconds, metrics=metrics, notes=notes)


def _run(
    image: Any,
    name: str,
    work: Path,
    *,
    generator: Generator3D,
    pose_estimator: PoseEstimator | None,
    camera: torch.Tensor | None,
    preset: str,
    config: Any,
    overrides: Iterable[str],
    device: str | torch.device | None,
    callbacks: Sequence[Callable[[Any], None]],
    export: Sequence[str],
    export_options: Mapping[str, Any] | None,
    resume: bool,
    progress: Callable[[str, int, int], None] | None,
) -> tuple[dict[str, Any], list[str]]:
    """Pose, inversion and exports into ``work``: ``(run.json data, files that must be there)``."""
    import sym3d
    from sym3d.image import load_image, save_image

    photo = load_image(image) if not isinstance(image, torch.Tensor) else image
    notes: list[str] = []
    pose: dict[str, Any] = {}
    if camera is not None:
        obs = observation_from_label(photo, camera)
    elif pose_estimator is not None:
        analysis = (
            pose_estimator.analyze(photo, source=name)
            if hasattr(pose_estimator, "analyze")
            else None
        )
        obs = analysis.observation if analysis is not None else pose_estimator(photo)
        if analysis is not None:
            pose = {
                k: math.degrees(float(getattr(analysis, k)))
                for k in ("yaw", "pitch", "roll")
                if hasattr(analysis, k)
            }
    else:
        raise UserInputError(
            f"{name}: no camera label and no pose estimator.",
            hint="install the faces extra (pip install 'sym3d[faces]') or pass camera labels (--cameras dataset.json).",
        )
    notes.extend(obs.notes)
    expected = [Files.POSE, Files.ALIGNED, Files.LATENT, Files.CONFIG]
    expected += [Files.HISTORY, Files.SUMMARY]
    (work / Files.VIEWS).mkdir(exist_ok=True)
    save_image(obs.image, work / Files.ALIGNED)
    from sym3d.app.export.views import save_photo_preview

    save_photo_preview(photo, work / Files.PHOTO)  # the report shows it
    expected.append(Files.PHOTO)
    if obs.face_mask is not None:
        save_image(obs.face_mask.expand(-1, 3, -1, -1), work / Files.FACE_MASK)
        expected.append(Files.FACE_MASK)
    pose_record = {
        "image": Path(name).name,
        "camera": obs.camera.reshape(-1).tolist(),
        "angles_degrees": pose,
    }
    _json(work / Files.POSE, {**pose_record, "regions": dict(obs.regions), "notes": notes})

    try:
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
    except Exception as exc:
        if isinstance(exc, Sym3DError) or not _from_checkpoint(exc):
            raise
        raise Sym3DError(
            # torch's own text would advise weights_only=False: never relay that
            f"{work / 'checkpoint'}: the resumable checkpoint of {name} cannot be read "
            f"({type(exc).__name__}); it is damaged or was not written by sym3d.",
            hint="run again with --no-resume (this image starts over), or delete that folder.",
        ) from None
    result.save(work)
    expected += [Files.TUNED] if result.tuned else []
    expected += [Files.TARGET] if result.target is not None else []
    metrics: dict[str, Any] = {}
    if export:
        from sym3d.app.export import export_result

        tuned = result.apply(generator)
        # the report is titled with the result's name, not the work folder's
        options = {"title": f"sym3d: {work.name}", **dict(export_options or {})}
        written = export_result(
            result, tuned, work, what=tuple(export), progress=progress, **options
        )
        expected.extend(str(Path(p).relative_to(work)) for p in written.values())
        if "metrics" in written and Path(written["metrics"]).exists():
            metrics = json.loads(Path(written["metrics"]).read_text())
    shutil.rmtree(work / "checkpoint", ignore_errors=True)
    data = {"preset": result.config.preset, "notes": notes, "summary": dict(result.summary)}
    return {**data, "metrics": metrics}, expected
