"""The output folder of one inversion: views, orbit video, depth, mesh, loss plot, metrics, report.

Written next to the files :meth:`sym3d.engine.result.InversionResult.save` writes::

    views/input.png           the aligned input (the generator's resolution)
    views/reconstruction.png  the render at the input camera
    views/mirror.png          the mirrored input | the render at the mirrored camera
    views/novel_grid.png      renders at yaw -yaw_range ... +yaw_range (labelled)
    orbit.mp4 | orbit.gif     SPI's 120-frame orbit at 60 fps (GIF when ffmpeg is unavailable)
    depth.png                 colour-mapped depth at the input camera (near = red)
    depth.npy                 float32 [h, w] camera-space z in world units, NaN = background
    mesh.ply                  marching-cubes mesh, world coordinates, vertex colours
    loss.png                  loss curves per stage
    metrics.json              PSNR/SSIM/LPIPS of the input and mirror views, mesh stats, timings
    report.html               everything above in one self-contained page

Every file is written atomically. Existing files are replaced (a link in their place is replaced,
never followed); a folder or ``views/`` that is a symbolic link is refused.

Each part is one small exporter function in :data:`EXPORTERS`, run in that order over one
:class:`ExportContext`; the file names come from :class:`sym3d.engine.result.ResultFiles`.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
import torch.nn.functional as F

from sym3d.app.export._common import (
    ExportError,
    ExportWarning,
    Progress,
    atomic_write_bytes,
    call_progress,
    save_png,
)
from sym3d.app.export.views import generator_device, novel_view_grid, render_views, yaw_labels
from sym3d.app.outdir import check_not_linked
from sym3d.camera import FFHQ_PIVOT, CameraLabels, look_at, mirror_camera
from sym3d.engine.result import ResultFiles as Files
from sym3d.errors import InputFileError, MissingDependencyError, UserInputError
from sym3d.image import from_model_range, load_image, mirror_image

__all__ = [
    "export_result",
    "ALL_OUTPUTS",
    "EXPORTERS",
    "ExportContext",
    "ExportOptions",
    "tuned_generator",
    "novel_view_cameras",
]


def tuned_generator(result: Any, generator: torch.nn.Module) -> torch.nn.Module:
    """``generator`` if it already holds ``result.tuned``, else ``result.apply(generator)``.

    So :func:`export_result` accepts either the base generator or the tuned one.
    """
    if not result.tuned:
        return generator
    params = dict(generator.named_parameters())
    for name, value in result.tuned.items():
        p = params.get(name)
        if p is None or p.shape != value.shape:
            return result.apply(generator)
        if not torch.equal(p.detach().cpu(), value.detach().cpu().to(p.dtype)):
            return result.apply(generator)
    return generator


def novel_view_cameras(
    camera: torch.Tensor, num_views: int = 7, yaw_range: float = 0.8
) -> torch.Tensor:
    """Level cameras ``[num_views, 25]`` at yaws ``linspace(-yaw_range, yaw_range)``.

    They look at the FFHQ pivot from the input camera's distance to it, with its focal length
    (the same framing as the input). The cameras orbit the pivot itself, so their viewing yaw is
    exactly the requested angle.
    """
    if num_views < 1:
        raise UserInputError(f"num_views: expected a positive integer, got {num_views}.")
    labels = CameraLabels(camera.reshape(-1, 25)[:1].detach().cpu().float())
    pivot = torch.tensor(FFHQ_PIVOT)
    radius = float((labels.position[0] - pivot).norm())
    focal = float(labels.intrinsics[0, 0, 0])
    yaws = torch.linspace(-yaw_range, yaw_range, num_views) if num_views > 1 else torch.zeros(1)
    return look_at(yaws, 0.0, radius=radius, pivot=FFHQ_PIVOT, orbit_center=None, focal=focal)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _json_safe(obj.tolist())
    if isinstance(obj, (np.floating, np.integer)):
        return _json_safe(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


class _Stage:
    """Times a stage and adapts a ``(done, total)`` callback to ``progress(stage, done, total)``."""

    def __init__(self, name: str, progress: Progress | None, timings: dict[str, float]) -> None:
        self.name, self.progress, self.timings = name, progress, timings

    def __enter__(self) -> _Stage:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timings[self.name] = round(time.perf_counter() - self.t0, 3)

    def __call__(self, done: int, total: int) -> None:
        call_progress(self.progress, self.name, done, total)


def _match_size(target: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if target.shape[-2:] == like.shape[-2:]:
        return target
    return F.interpolate(
        target, size=tuple(like.shape[-2:]), mode="bilinear", align_corners=False, antialias=True
    ).clamp(0, 1)


def _image_metrics(
    pred: torch.Tensor, target: torch.Tensor, use_lpips: bool | None, notes: list[str]
) -> dict[str, float | None]:
    from sym3d.app import metrics as M

    out: dict[str, float | None] = {
        "psnr": float(M.psnr(pred, target)[0]),
        "ssim": float(M.ssim(pred, target)[0]),
    }
    if use_lpips is False:
        return out
    try:
        out["lpips"] = float(M.lpips(pred, target)[0])
    except MissingDependencyError as exc:
        if use_lpips:
            raise
        out["lpips"] = None
        if not any(n.startswith("LPIPS") for n in notes):
            notes.append(f"LPIPS not computed: {exc}")
    return out


def _read_pose(path: Path, notes: list[str]) -> dict[str, Any] | None:
    """``pose.json`` of the folder (written by the photo pipeline) for the report, if any."""
    if not path.exists():
        return None
    from sym3d.files import read_text

    try:
        data = json.loads(read_text(path, Files.POSE))
    except (InputFileError, ValueError):
        notes.append(f"{Files.POSE} could not be read.")
        return None
    return data if isinstance(data, dict) else None


def _at_least(low: int) -> Callable[[Any, Any, Any], None]:
    """An attrs validator: an integer (``3`` or ``3.0``) of at least ``low``."""

    def check(_: Any, attribute: Any, value: Any) -> None:
        try:
            ok = int(value) == value and value >= low
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise UserInputError(f"{attribute.name}: expected an integer >= {low}, got {value!r}.")

    return check


def _positive(_: Any, attribute: Any, value: Any) -> None:
    if not (isinstance(value, (int, float)) and value > 0):
        raise UserInputError(f"{attribute.name}: expected a positive number, got {value!r}.")


def _video_format(_: Any, attribute: Any, value: Any) -> None:
    if value not in ("auto", "mp4", "gif"):
        raise UserInputError(f"{attribute.name}: expected 'auto', 'mp4' or 'gif', got {value!r}.")


@attrs.frozen(kw_only=True)
class ExportOptions:
    """The settings of :func:`export_result` (each documented there).

    Raises:
        sym3d.errors.UserInputError: a count below its minimum, ``fps <= 0`` or an unknown
            ``video_format``; checked here, before any slow part runs.
    """

    num_views: int = attrs.field(default=7, validator=_at_least(1))
    yaw_range: float = 0.8
    video_frames: int = attrs.field(default=120, validator=_at_least(1))
    fps: float = attrs.field(default=60, validator=_positive)
    mesh_resolution: int = attrs.field(default=128, validator=_at_least(4))
    mesh_level: float | None = None
    lpips: bool | None = None
    render_batch: int = attrs.field(default=8, validator=_at_least(1))
    mesh_colors: bool = True
    video_format: str = attrs.field(default="auto", validator=_video_format)
    title: str | None = None
    strict: bool = False


def _generator_name(generator: torch.nn.Module) -> str:
    return getattr(generator, "name", type(generator).__name__)


@attrs.define(kw_only=True)
class ExportContext:
    """What every exporter reads, and what they add to as the export goes on.

    Attributes:
        result: the :class:`~sym3d.engine.result.InversionResult`.
        generator: the tuned generator (see :func:`tuned_generator`).
        out_dir: the result folder.
        options: the :class:`ExportOptions`.
        progress: ``progress(stage, done, total)`` or ``None`` (see :meth:`stage`).
        ws: ``[1, num_ws, w_dim]`` the result's latent, on the generator's device.
        camera: ``[1, 25]`` float32 CPU label of the input view.
        target: ``[1, 3, H, W]`` CPU input image in ``[0, 1]`` (resized to the render size once
            rendered), or ``None`` for a result without one.
        base: the render at the input and the mirrored camera (``[1, 2, ...]``), once rendered.
        recon: ``[1, 3, H, W]`` the render at the input camera in ``[0, 1]``, once rendered.
        mirrored: ``[1, 3, H, W]`` the render at the mirrored camera in ``[0, 1]``, once rendered.
        written: the files written so far, by name (what :func:`export_result` returns).
        notes: notes for ``metrics.json`` and the report.
        timings: seconds per finished stage.
        facts: per-part entries for ``metrics.json`` (``depth``, ``video``, ``mesh``).
    """

    result: Any
    generator: torch.nn.Module
    out_dir: Path
    options: ExportOptions
    progress: Progress | None = None
    ws: torch.Tensor
    camera: torch.Tensor
    target: torch.Tensor | None
    base: Any = None
    recon: torch.Tensor | None = None
    mirrored: torch.Tensor | None = None
    written: dict[str, Path] = attrs.Factory(dict)
    notes: list[str] = attrs.Factory(list)
    timings: dict[str, float] = attrs.Factory(dict)
    facts: dict[str, Any] = attrs.Factory(dict)

    @classmethod
    def create(
        cls,
        result: Any,
        generator: torch.nn.Module,
        out_dir: Path,
        options: ExportOptions,
        progress: Progress | None = None,
    ) -> ExportContext:
        """The context of one export; ``generator`` may be the base or the tuned one."""
        gen = tuned_generator(result, generator)
        target = result.target
        return cls(
            result=result,
            generator=gen,
            out_dir=out_dir,
            options=options,
            progress=progress,
            ws=result.ws.detach().to(generator_device(gen)),
            camera=result.camera.detach().reshape(1, 25).float().cpu(),
            target=target.detach().float().cpu().clamp(0, 1) if target is not None else None,
        )

    def stage(self, name: str) -> _Stage:
        """A timed stage that reports progress: ``with ctx.stage(name) as st: st(done, total)``."""
        return _Stage(name, self.progress, self.timings)

    def rendered(self, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(recon, mirrored)``; :class:`ExportError` if :func:`_render_base` did not run."""
        if self.recon is None or self.mirrored is None:
            raise ExportError(f"export part {part!r} needs the base render, which did not run.")
        return self.recon, self.mirrored


Exporter = Callable[[ExportContext, _Stage], None]
"""One part of the folder: writes its files into ``ctx.out_dir`` and records them in ``ctx``;
reports progress through the stage (``stage(done, total)``)."""


def _render_base(ctx: ExportContext, stage: _Stage) -> None:
    """Render the input and the mirrored camera once, for the views, depth and metrics."""
    cams = torch.cat([ctx.camera, mirror_camera(ctx.camera)], 0)
    ctx.base = render_views(
        ctx.generator, ctx.ws, cams, batch=ctx.options.render_batch, progress=stage
    )
    rgb = from_model_range(ctx.base.image[0].float(), clamp=True)  # [2, 3, H, W]
    ctx.recon, ctx.mirrored = rgb[0:1], rgb[1:2]
    target = ctx.target
    if target is not None and target.shape[-2:] != ctx.recon.shape[-2:]:
        ctx.notes.append(
            f"the input ({target.shape[-1]}x{target.shape[-2]}) was resized to the render size "
            f"({ctx.recon.shape[-1]}x{ctx.recon.shape[-2]}) for the comparisons."
        )
        ctx.target = _match_size(target, ctx.recon)


def _export_views(ctx: ExportContext, stage: _Stage) -> None:
    """``views/``: the input, the reconstruction, the mirror pair and the novel-view grid."""
    recon, mirrored = ctx.rendered("views")
    od, opts, target = ctx.out_dir, ctx.options, ctx.target
    cams = novel_view_cameras(ctx.camera, opts.num_views, opts.yaw_range)
    stage(0, 4)
    if target is not None:
        ctx.written["input"] = save_png(target[0], od / Files.INPUT_VIEW)
    ctx.written["reconstruction"] = save_png(recon[0], od / Files.RECONSTRUCTION)
    stage(1, 4)
    if target is not None:
        pair = torch.cat([mirror_image(target), mirrored], 0)
        labels = ["mirrored input", "mirrored camera"]
    else:
        pair, labels = mirrored, ["mirrored camera"]
    ctx.written["mirror"] = save_png(novel_view_grid(pair, labels, ncols=2), od / Files.MIRROR)
    if target is not None:
        try:
            ctx.written["mirror_prior"] = _mirror_prior(ctx)
        except MissingDependencyError as exc:  # Matplotlib's figure: the export extra
            _skip_part(ctx, od / Files.MIRROR_PRIOR, exc)
    stage(2, 4)
    nv = render_views(ctx.generator, ctx.ws, cams, batch=opts.render_batch)
    rgb = from_model_range(nv.image[0].float(), clamp=True)
    grid = novel_view_grid(rgb, yaw_labels(cams), ncols=opts.num_views)
    ctx.written["novel_grid"] = save_png(grid, od / Files.NOVEL_GRID)
    stage(4, 4)


def _mirror_prior(ctx: ExportContext) -> Path:
    """``views/mirror_prior.png``: what the mirror terms were given.

    The photo, its flip, the relit flip and the estimated shading, from the result's depth at
    the input camera and the photo's face mask (the rendered opacity when the folder has none).
    """
    from sym3d.app.export.prior import symmetry_prior_images, write_symmetry_prior_figure

    assert ctx.target is not None and ctx.base is not None
    mask = ctx.base.opacity[0, :1].float().cpu()
    mask_file = ctx.out_dir / Files.FACE_MASK
    if mask_file.is_file():
        mask = load_image(mask_file)[:, :1]
    prior = symmetry_prior_images(
        ctx.target.float().cpu().clamp(0.0, 1.0),
        ctx.base.depth_z[0, :1].float().cpu(),
        ctx.camera.float().cpu(),
        mask,
    )
    ctx.notes.append(f"symmetry prior (views/mirror_prior.png): {prior.note}.")
    return write_symmetry_prior_figure(prior, ctx.out_dir / Files.MIRROR_PRIOR)


def _export_depth(ctx: ExportContext, stage: _Stage) -> None:
    """``depth.png`` (colour-mapped ray depth) and ``depth.npy`` (camera z, NaN = background)."""
    from sym3d.app.export.depth import save_depth, save_depth_image

    ctx.rendered("depth")
    base = ctx.base
    stage(0, 2)
    mask = base.opacity[0, 0, 0] > 0.5
    ray, z = base.depth[0, 0, 0], base.depth_z[0, 0, 0]
    try:
        ctx.written["depth"] = save_depth_image(ray, ctx.out_dir / Files.DEPTH_IMAGE, mask)
    except MissingDependencyError as exc:  # Matplotlib's colour map: the export extra
        _skip_part(ctx, ctx.out_dir / Files.DEPTH_IMAGE, exc)
    ctx.written["depth_npy"] = save_depth(z, ctx.out_dir / Files.DEPTH_ARRAY, mask=mask, kind="z")
    fg = z[mask]
    ctx.facts["depth"] = {
        "file": Files.DEPTH_ARRAY,
        "kind": "camera-space z",
        "units": "world",
        "size": [int(ray.shape[-1]), int(ray.shape[-2])],
        "foreground_fraction": float(mask.float().mean()),
        "z_min": float(fg.min()) if fg.numel() else None,
        "z_max": float(fg.max()) if fg.numel() else None,
    }
    stage(2, 2)


def _export_video(ctx: ExportContext, stage: _Stage) -> None:
    """``orbit.mp4`` (or ``orbit.gif`` without ffmpeg); the other one, from an older run, goes."""
    from sym3d.app.export.video import orbit_cameras, write_video

    opts, od = ctx.options, ctx.out_dir
    n, batch = opts.video_frames, opts.render_batch
    cams = orbit_cameras(n, focal=float(CameraLabels(ctx.camera).intrinsics[0, 0, 0]))
    frames = []
    for start in range(0, n, batch):
        out = render_views(ctx.generator, ctx.ws, cams[start : start + batch], batch=batch)
        rgb = from_model_range(out.image[0].float(), clamp=True)
        frames.append((rgb * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
        stage(min(start + batch, n), n)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ExportWarning)
        fmt: Any = opts.video_format
        path = write_video(np.concatenate(frames, 0), od / Files.ORBIT_MP4, opts.fps, format=fmt)
    for w in caught:
        ctx.notes.append(str(w.message))
        warnings.warn(w.message, w.category, stacklevel=_CALLER)
    (od / (Files.ORBIT_GIF if path.suffix == ".mp4" else Files.ORBIT_MP4)).unlink(missing_ok=True)
    ctx.written["video"] = path
    fmt_name = path.suffix.lstrip(".")
    ctx.facts["video"] = {"file": path.name, "format": fmt_name, "frames": n, "fps": opts.fps}


def _skip_part(ctx: ExportContext, path: Path, exc: Exception) -> None:
    """A file whose optional dependency is missing: re-raise with ``strict``, else note and warn.

    An older run's file of that name is removed, so the folder never mixes runs.
    """
    if ctx.options.strict:
        raise exc
    message = f"{path.name} not written: {exc}"
    ctx.notes.append(message)
    warnings.warn(message, ExportWarning, stacklevel=_CALLER + 1)
    path.unlink(missing_ok=True)


def _export_mesh(ctx: ExportContext, stage: _Stage) -> None:
    """``mesh.ply``; without a surface or the ``export`` extra: skipped (raised with ``strict``)."""
    from sym3d.app.export.mesh import default_color_cameras, extract_mesh, save_mesh

    opts, path = ctx.options, ctx.out_dir / Files.MESH
    try:
        mesh = extract_mesh(
            ctx.generator,
            ctx.ws,
            resolution=opts.mesh_resolution,
            level=opts.mesh_level,
            colors=opts.mesh_colors,
            color_cameras=default_color_cameras(extra=ctx.camera) if opts.mesh_colors else None,
            progress=stage,
        )
    except (ExportError, MissingDependencyError) as exc:
        if opts.strict:
            raise
        message = f"{Files.MESH} not written: {exc}"
        ctx.notes.append(message)
        warnings.warn(message, ExportWarning, stacklevel=_CALLER)
        path.unlink(missing_ok=True)  # never leave an older run's mesh
        return
    ctx.written["mesh"] = save_mesh(mesh, path)
    ctx.facts["mesh"] = {
        "file": Files.MESH,
        "vertices": int(len(mesh.vertices)),
        "faces": int(len(mesh.faces)),
        "watertight": bool(mesh.is_watertight),
        "level": mesh.metadata.get("sym3d", {}).get("level"),
        "resolution": opts.mesh_resolution,
    }


def _export_plots(ctx: ExportContext, stage: _Stage) -> None:
    """``loss.png``: the loss curves per stage (a note when no history was recorded)."""
    from sym3d.app.export.plots import loss_terms, plot_history

    stage(0, 1)
    history = ctx.result.history
    if history and loss_terms(history):
        path = ctx.out_dir / Files.LOSS
        try:
            ctx.written["loss"] = plot_history(history, path, title="Loss per step")
        except MissingDependencyError as exc:  # Matplotlib: the export extra
            _skip_part(ctx, path, exc)
    else:
        ctx.notes.append(f"no loss history recorded; {Files.LOSS} not written.")
    stage(1, 1)


def _export_metrics(ctx: ExportContext, stage: _Stage) -> None:
    """``metrics.json``: image metrics of both views, the parts' facts, timings and notes."""
    recon, mirrored = ctx.rendered("metrics")
    stage(0, 2)
    metrics: dict[str, Any] = {"generator": _generator_name(ctx.generator)}
    use_lpips, target = ctx.options.lpips, ctx.target
    if target is not None:
        metrics["reconstruction"] = _image_metrics(recon, target, use_lpips, ctx.notes)
        stage(1, 2)
        mirror_target = mirror_image(target)
        metrics["mirror"] = _image_metrics(mirrored, mirror_target, use_lpips, ctx.notes)
    else:
        ctx.notes.append("the result has no input image; image metrics were not computed.")
    summary = dict(ctx.result.summary)
    metrics["timings"] = {k: v for k, v in summary.items() if k.endswith("seconds")}
    metrics.update(ctx.facts)
    metrics["timings"]["export_seconds"] = dict(ctx.timings)
    metrics["notes"] = list(ctx.notes)
    data = json.dumps(_json_safe(metrics), indent=1, allow_nan=False).encode()
    ctx.written["metrics"] = atomic_write_bytes(ctx.out_dir / Files.METRICS, data)
    stage(2, 2)


def _shown_metrics(ctx: ExportContext) -> dict[str, Any]:
    """The folder's ``metrics.json`` (this run's or an earlier one), ``{}`` if absent."""
    from sym3d.files import read_text

    path = ctx.out_dir / Files.METRICS
    if not path.is_file():
        return {}
    try:
        shown = json.loads(read_text(path, Files.METRICS))
    except (InputFileError, OSError, ValueError):
        ctx.notes.append(f"{Files.METRICS} could not be read.")
        return {}
    return shown if isinstance(shown, dict) else {}


def _config_text(config: Any) -> str:
    from sym3d.config import dump_toml

    try:
        return dump_toml(config)
    except Exception as exc:  # noqa: BLE001 - a config we cannot serialise still gets a report
        return f"# could not serialise the configuration: {type(exc).__name__}: {exc}"


def _export_report(ctx: ExportContext, stage: _Stage) -> None:
    """``report.html``: every known output present in the folder, including earlier ones."""
    from sym3d.app.export.report import write_report

    od = ctx.out_dir
    stage(0, 1)
    orbit = Files.ORBIT_MP4 if (od / Files.ORBIT_MP4).exists() else Files.ORBIT_GIF
    candidates = {
        "photo": Files.PHOTO,
        "input": Files.INPUT_VIEW,
        "reconstruction": Files.RECONSTRUCTION,
        "mirror": Files.MIRROR,
        "mirror_prior": Files.MIRROR_PRIOR,
        "novel_grid": Files.NOVEL_GRID,
        "depth": Files.DEPTH_IMAGE,
        "orbit": orbit,
        "loss": Files.LOSS,
    }
    images = {k: v for k, v in candidates.items() if (od / v).is_file()}
    metrics_shown = _shown_metrics(ctx)
    pose_shown = _read_pose(od / Files.POSE, ctx.notes)
    metrics_shown.pop("notes", None)
    timings_shown = metrics_shown.pop("timings", {})
    listed = (Files.MESH, Files.DEPTH_ARRAY, Files.METRICS, *Files.SAVED)
    files = [f for f in listed if (od / f).is_file()]
    summary = {"generator": _generator_name(ctx.generator), **dict(ctx.result.summary)}
    if isinstance(timings_shown, dict):
        summary["export_seconds"] = timings_shown.get("export_seconds", ctx.timings)
    else:
        summary["export_seconds"] = ctx.timings
    if "depth" in images:
        ctx.notes.append(
            f"{Files.DEPTH_ARRAY} holds camera-space z in world units (NaN = background), "
            "at the neural resolution."
        )
    ctx.written["report"] = write_report(
        od,
        title=ctx.options.title or f"sym3d: {od.resolve().name}",
        images=images,
        metrics=metrics_shown,
        config_toml=_config_text(ctx.result.config),
        summary=summary,
        notes=ctx.notes,
        files=files,
        pose=pose_shown,
    )
    stage(1, 1)


_CALLER = 3
"""``stacklevel`` of an exporter's warnings: the caller of :func:`export_result`."""

EXPORTERS: Mapping[str, Exporter] = {
    "views": _export_views,
    "depth": _export_depth,
    "video": _export_video,
    "mesh": _export_mesh,
    "plots": _export_plots,
    "metrics": _export_metrics,
    "report": _export_report,
}
"""The parts of the folder, in the order they run; each writes its own files."""

ALL_OUTPUTS: tuple[str, ...] = tuple(EXPORTERS)
"""The parts :func:`export_result` can write (its ``what``)."""

_NEED_RENDER = frozenset({"views", "depth", "metrics"})
"""Parts that use the render at the input and the mirrored camera."""


def _parts(what: Iterable[str]) -> tuple[str, ...]:
    parts = tuple(what)
    unknown = [p for p in parts if p not in EXPORTERS]
    if unknown:
        raise UserInputError(
            f"what: unknown output(s) {', '.join(map(repr, unknown))}; "
            f"expected any of {', '.join(ALL_OUTPUTS)}."
        )
    if "report" in parts and "metrics" not in parts:
        parts = (*parts, "metrics")  # the report shows them
    return parts


def _options(options: ExportOptions | None, settings: Mapping[str, Any]) -> ExportOptions:
    known = attrs.fields_dict(ExportOptions)
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise UserInputError(
            f"export_result: unknown setting(s) {', '.join(unknown)}; "
            f"expected any of {', '.join(known)}."
        )
    if options is None:
        return ExportOptions(**settings)
    return attrs.evolve(options, **settings)


def export_result(
    result: Any,
    generator: torch.nn.Module,
    out_dir: str | os.PathLike,
    *,
    what: Iterable[str] = ALL_OUTPUTS,
    progress: Progress | None = None,
    options: ExportOptions | None = None,
    **settings: Any,
) -> dict[str, Path]:
    """Write the output folder of one inversion (see the module docstring for the files).

    Args:
        result: an :class:`~sym3d.engine.result.InversionResult`.
        generator: the **tuned** generator (``result.apply(base)``). The base generator also
            works: if the parameters named in ``result.tuned`` do not hold the tuned values,
            ``result.apply`` is called on a copy. It is never modified.
        out_dir: the result folder (created if missing).
        what: the parts to write, a subset of :data:`ALL_OUTPUTS` (``"views"``, ``"depth"``,
            ``"video"``, ``"mesh"``, ``"plots"``, ``"metrics"``, ``"report"``); ``"report"``
            implies ``"metrics"``. The report shows every known output present in the folder,
            including ones written earlier. The parts run in the order of :data:`EXPORTERS`.
        progress: ``progress(stage, done, total)``, stage ``"render"`` or one of the parts above.
        options: an :class:`ExportOptions`; ``settings`` override its fields.
        settings: fields of :class:`ExportOptions`:

            * ``num_views`` (7): views in the novel-view grid.
            * ``yaw_range`` (0.8): the grid's views span yaw ``-yaw_range ... +yaw_range``
              (radians).
            * ``video_frames`` (120) and ``fps`` (60): the orbit (SPI: 120 frames at 60 fps).
            * ``mesh_resolution`` (128): marching-cubes grid points per axis.
            * ``mesh_level`` (``None``): iso-level in density units; ``None``: the generator's
              default, see :func:`~sym3d.app.export.mesh.default_level`.
            * ``lpips`` (``None``): ``None`` computes LPIPS when its offline weights are
              installed (else the metric is ``null`` with a note); ``True`` requires it;
              ``False`` skips it.
            * ``render_batch`` (8): views per render call.
            * ``mesh_colors`` (``True``): colour the mesh's vertices from rendered views.
            * ``video_format`` (``"auto"``): ``"auto"`` (MP4, GIF fallback), ``"mp4"`` or
              ``"gif"``.
            * ``title`` (``None``): the report's title (default: the folder name; the photo
              pipeline passes the result's name).
            * ``strict`` (``False``): raise when the mesh cannot be made (no surface at the
              iso-level, or trimesh / scikit-image / SciPy missing) or Matplotlib is missing
              (``depth.png``, ``loss.png``, ``views/mirror_prior.png``). By default such a
              file is skipped with an :class:`~sym3d.app.export._common.ExportWarning` and a
              note in ``metrics.json`` and the report, and the other parts are still written.

    Returns:
        The files written by this call, by name: ``input``, ``reconstruction``, ``mirror``,
        ``novel_grid``, ``video``, ``depth``, ``depth_npy``, ``mesh``, ``loss``, ``metrics``,
        ``report`` (only those produced).

    Raises:
        sym3d.errors.UserInputError: an unknown ``what`` item or setting, or a bad value.
        sym3d.errors.OutputWriteError: ``out_dir`` or its ``views/`` is a symbolic link.
        sym3d.errors.MissingDependencyError: ``lpips=True`` without the ``lpips`` extra; with
            ``strict``, the mesh, ``depth.png`` or ``loss.png`` without the ``export`` extra.
        ExportError: with ``strict``, the density has no surface at the iso-level.
    """
    parts = _parts(what)
    opts = _options(options, settings)  # fail before the slow parts, not after them
    od = Path(out_dir)
    check_not_linked(od / Files.VIEWS, od.parent)  # the folder or views/ linked elsewhere: refuse
    od.mkdir(parents=True, exist_ok=True)
    ctx = ExportContext.create(result, generator, od, opts, progress)
    if _NEED_RENDER.intersection(parts):
        with ctx.stage("render") as stage:
            _render_base(ctx, stage)
    for name, exporter in EXPORTERS.items():
        if name in parts:
            with ctx.stage(name) as stage:
                exporter(ctx, stage)
    return ctx.written
