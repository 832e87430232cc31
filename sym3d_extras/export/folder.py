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
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sym3d.camera import FFHQ_PIVOT, CameraLabels, look_at, mirror_camera
from sym3d.errors import MissingDependencyError, UserInputError
from sym3d.image import from_model_range, mirror_image
from sym3d_extras.export._common import (
    ExportError,
    ExportWarning,
    Progress,
    atomic_write_bytes,
    call_progress,
    save_png,
)
from sym3d_extras.export.views import generator_device, novel_view_grid, render_views, yaw_labels
from sym3d_extras.outdir import check_not_linked

__all__ = ["export_result", "ALL_OUTPUTS", "tuned_generator", "novel_view_cameras"]

ALL_OUTPUTS: tuple[str, ...] = ("views", "video", "depth", "mesh", "plots", "metrics", "report")
"""The parts :func:`export_result` can write (its ``what``)."""

_RESULT_FILES = ("latent.pt", "tuned.safetensors", "config.resolved.toml", "history.json", "summary.json", "input.png")


def tuned_generator(result: Any, generator: torch.nn.Module) -> torch.nn.Module:
    """``generator`` if it already holds ``result.tuned``, else ``result.apply(generator)`` (a copy).

    So :func:`export_result` accepts either the base generator or the tuned one.
    """
    if not result.tuned:
        return generator
    params = dict(generator.named_parameters())
    for name, value in result.tuned.items():
        p = params.get(name)
        if p is None or p.shape != value.shape or not torch.equal(p.detach().cpu(), value.detach().cpu().to(p.dtype)):
            return result.apply(generator)
    return generator


def novel_view_cameras(camera: torch.Tensor, num_views: int = 7, yaw_range: float = 0.8) -> torch.Tensor:
    """Level cameras ``[num_views, 25]`` at yaws ``linspace(-yaw_range, yaw_range)``.

    They look at the FFHQ pivot from the input camera's distance to it, with its focal length
    (the same framing as the input). The cameras orbit the pivot itself, so their viewing yaw is exactly the requested angle.
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
    return F.interpolate(target, size=tuple(like.shape[-2:]), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def _skip(notes: list[str], message: str) -> None:
    """Record a part that could not be written: a note in metrics/report and an ExportWarning."""
    notes.append(message)
    warnings.warn(message, ExportWarning, stacklevel=3)


def _image_metrics(pred: torch.Tensor, target: torch.Tensor, use_lpips: bool | None, notes: list[str]) -> dict[str, float | None]:
    from sym3d_extras import metrics as M

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
    from sym3d.errors import InputFileError
    from sym3d.files import read_text

    try:
        data = json.loads(read_text(path, "pose.json"))
    except (InputFileError, ValueError):
        notes.append("pose.json could not be read.")
        return None
    return data if isinstance(data, dict) else None


def export_result(
    result: Any,
    generator: torch.nn.Module,
    out_dir: str | os.PathLike,
    *,
    num_views: int = 7,
    yaw_range: float = 0.8,
    video_frames: int = 120,
    fps: float = 60,
    mesh_resolution: int = 128,
    mesh_level: float | None = None,
    what: Iterable[str] = ALL_OUTPUTS,
    progress: Progress | None = None,
    lpips: bool | None = None,
    render_batch: int = 8,
    mesh_colors: bool = True,
    video_format: str = "auto",
    title: str | None = None,
    strict: bool = False,
) -> dict[str, Path]:
    """Write the output folder of one inversion (see the module docstring for the files).

    Args:
        result: an :class:`~sym3d.engine.result.InversionResult`.
        generator: the **tuned** generator (``result.apply(base)``). The base generator also
            works: if the parameters named in ``result.tuned`` do not hold the tuned values,
            ``result.apply`` is called on a copy. It is never modified.
        out_dir: the result folder (created if missing).
        num_views: views in the novel-view grid.
        yaw_range: the grid's views span yaw ``-yaw_range ... +yaw_range`` (radians).
        video_frames: frames of the orbit (SPI: 120).
        fps: orbit frame rate (SPI: 60).
        mesh_resolution: marching-cubes grid points per axis.
        mesh_level: iso-level in density units (``None``: the generator's default, see
            :func:`~sym3d_extras.export.mesh.default_level`).
        what: the parts to write, a subset of :data:`ALL_OUTPUTS` (``"views"``, ``"video"``,
            ``"depth"``, ``"mesh"``, ``"plots"``, ``"metrics"``, ``"report"``); ``"report"``
            implies ``"metrics"``. The report shows every known output present in the folder,
            including ones written earlier.
        progress: ``progress(stage, done, total)``, stage one of the parts above.
        lpips: ``None`` computes LPIPS when its offline weights are installed (else the metric
            is ``null`` with a note); ``True`` requires it; ``False`` skips it.
        render_batch: views per render call.
        mesh_colors: colour the mesh's vertices from rendered views.
        video_format: ``"auto"`` (MP4, GIF fallback), ``"mp4"`` or ``"gif"``.
        title: the report's title (default: the folder name; the photo pipeline passes the
            result's name).
        strict: raise when the mesh cannot be made (no surface at the iso-level, or trimesh /
            scikit-image missing). By default that part is skipped with an
            :class:`~sym3d_extras.export._common.ExportWarning` and a note in ``metrics.json``
            and the report, and the other parts are still written.

    Returns:
        The files written by this call, by name: ``input``, ``reconstruction``, ``mirror``,
        ``novel_grid``, ``video``, ``depth``, ``depth_npy``, ``mesh``, ``loss``, ``metrics``,
        ``report`` (only those produced).

    Raises:
        sym3d.errors.UserInputError: an unknown ``what`` item or bad arguments.
        sym3d.errors.OutputWriteError: ``out_dir`` or its ``views/`` is a symbolic link.
        sym3d.errors.MissingDependencyError: ``lpips=True`` without the ``lpips`` extra; with
            ``strict``, the mesh without the ``export`` extra.
        ExportError: with ``strict``, the density has no surface at the iso-level.
    """
    from sym3d_extras.export.depth import save_depth, save_depth_image

    parts = tuple(what)
    unknown = [p for p in parts if p not in ALL_OUTPUTS]
    if unknown:
        raise UserInputError(f"what: unknown output(s) {', '.join(map(repr, unknown))}; expected any of {', '.join(ALL_OUTPUTS)}.")
    if "report" in parts and "metrics" not in parts:
        parts = (*parts, "metrics")  # the report shows them
    # fail before the slow parts, not after them
    for name, value, low in (("num_views", num_views, 1), ("video_frames", video_frames, 1), ("mesh_resolution", mesh_resolution, 4), ("render_batch", render_batch, 1)):
        if int(value) != value or value < low:
            raise UserInputError(f"{name}: expected an integer >= {low}, got {value!r}.")
    if not fps > 0:
        raise UserInputError(f"fps: expected a positive number, got {fps!r}.")
    if video_format not in ("auto", "mp4", "gif"):
        raise UserInputError(f"video_format: expected 'auto', 'mp4' or 'gif', got {video_format!r}.")
    od = Path(out_dir)
    check_not_linked(od / "views", od.parent)  # the folder or views/ linked elsewhere: refuse
    od.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    notes: list[str] = []
    timings: dict[str, float] = {}
    extra_metrics: dict[str, Any] = {}

    gen = tuned_generator(result, generator)
    device = generator_device(gen)
    ws = result.ws.detach().to(device)
    cam = result.camera.detach().reshape(1, 25).float().cpu()
    target = result.target.detach().float().cpu().clamp(0, 1) if result.target is not None else None

    base_render = None
    if any(p in parts for p in ("views", "depth", "metrics")):
        with _Stage("render", progress, timings) as st:
            base_render = render_views(gen, ws, torch.cat([cam, mirror_camera(cam)], 0), batch=render_batch, progress=st)
    recon = mirror_render = None
    if base_render is not None:
        rgb = from_model_range(base_render.image[0].float(), clamp=True)  # [2, 3, H, W]
        recon, mirror_render = rgb[0:1], rgb[1:2]
        if target is not None and target.shape[-2:] != recon.shape[-2:]:
            notes.append(
                f"the input ({target.shape[-1]}x{target.shape[-2]}) was resized to the render size "
                f"({recon.shape[-1]}x{recon.shape[-2]}) for the comparisons."
            )
            target = _match_size(target, recon)

    if "views" in parts:
        assert recon is not None and mirror_render is not None
        with _Stage("views", progress, timings) as st:
            cams = novel_view_cameras(cam, num_views, yaw_range)
            st(0, 4)
            if target is not None:
                written["input"] = save_png(target[0], od / "views" / "input.png")
            written["reconstruction"] = save_png(recon[0], od / "views" / "reconstruction.png")
            st(1, 4)
            if target is not None:
                pair = torch.cat([mirror_image(target), mirror_render], 0)
                labels = ["mirrored input", "mirrored camera"]
            else:
                pair, labels = mirror_render, ["mirrored camera"]
            written["mirror"] = save_png(novel_view_grid(pair, labels, ncols=2), od / "views" / "mirror.png")
            st(2, 4)
            nv = render_views(gen, ws, cams, batch=render_batch)
            grid = novel_view_grid(from_model_range(nv.image[0].float(), clamp=True), yaw_labels(cams), ncols=num_views)
            written["novel_grid"] = save_png(grid, od / "views" / "novel_grid.png")
            st(4, 4)

    if "depth" in parts:
        assert base_render is not None
        with _Stage("depth", progress, timings) as st:
            st(0, 2)
            mask = base_render.opacity[0, 0, 0] > 0.5
            ray = base_render.depth[0, 0, 0]
            written["depth"] = save_depth_image(ray, od / "depth.png", mask)
            written["depth_npy"] = save_depth(base_render.depth_z[0, 0, 0], od / "depth.npy", mask=mask, kind="z")
            fg = base_render.depth_z[0, 0, 0][mask]
            extra_metrics["depth"] = {
                "file": "depth.npy",
                "kind": "camera-space z",
                "units": "world",
                "size": [int(ray.shape[-1]), int(ray.shape[-2])],
                "foreground_fraction": float(mask.float().mean()),
                "z_min": float(fg.min()) if fg.numel() else None,
                "z_max": float(fg.max()) if fg.numel() else None,
            }
            st(2, 2)

    if "video" in parts:
        from sym3d_extras.export.video import orbit_cameras, write_video

        with _Stage("video", progress, timings) as st:
            focal = float(CameraLabels(cam).intrinsics[0, 0, 0])
            cams = orbit_cameras(video_frames, focal=focal)
            frames = []
            for start in range(0, video_frames, render_batch):
                out = render_views(gen, ws, cams[start : start + render_batch], batch=render_batch)
                rgb = from_model_range(out.image[0].float(), clamp=True)
                frames.append((rgb * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
                st(min(start + render_batch, video_frames), video_frames)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ExportWarning)
                path = write_video(np.concatenate(frames, 0), od / "orbit.mp4", fps, format=video_format)  # type: ignore[arg-type]
            for w in caught:
                notes.append(str(w.message))
                warnings.warn(w.message, w.category, stacklevel=2)
            stale = od / ("orbit.gif" if path.suffix == ".mp4" else "orbit.mp4")
            if stale.exists():
                stale.unlink()
            written["video"] = path
            extra_metrics["video"] = {"file": path.name, "format": path.suffix.lstrip("."), "frames": video_frames, "fps": fps}

    if "mesh" in parts:
        from sym3d_extras.export.mesh import default_color_cameras, extract_mesh, save_mesh

        with _Stage("mesh", progress, timings) as st:
            try:
                mesh = extract_mesh(
                    gen,
                    ws,
                    resolution=mesh_resolution,
                    level=mesh_level,
                    colors=mesh_colors,
                    color_cameras=default_color_cameras(extra=cam) if mesh_colors else None,
                    progress=st,
                )
            except (ExportError, MissingDependencyError) as exc:
                if strict:
                    raise
                _skip(notes, f"mesh.ply not written: {exc}")
                (od / "mesh.ply").unlink(missing_ok=True)  # never leave an older run's mesh
                mesh = None
            if mesh is not None:
                written["mesh"] = save_mesh(mesh, od / "mesh.ply")
                meta = mesh.metadata.get("sym3d", {})
                extra_metrics["mesh"] = {
                    "file": "mesh.ply",
                    "vertices": int(len(mesh.vertices)),
                    "faces": int(len(mesh.faces)),
                    "watertight": bool(mesh.is_watertight),
                    "level": meta.get("level"),
                    "resolution": mesh_resolution,
                }

    if "plots" in parts:
        from sym3d_extras.export.plots import loss_terms, plot_history

        with _Stage("plots", progress, timings) as st:
            st(0, 1)
            if result.history and loss_terms(result.history):
                written["loss"] = plot_history(result.history, od / "loss.png", title="Loss per step")
            else:
                notes.append("no loss history recorded; loss.png not written.")
            st(1, 1)

    if "metrics" in parts:
        assert recon is not None and mirror_render is not None
        with _Stage("metrics", progress, timings) as st:
            st(0, 2)
            metrics: dict[str, Any] = {"generator": getattr(gen, "name", type(gen).__name__)}
            if target is not None:
                metrics["reconstruction"] = _image_metrics(recon, target, lpips, notes)
                st(1, 2)
                metrics["mirror"] = _image_metrics(mirror_render, mirror_image(target), lpips, notes)
            else:
                notes.append("the result has no input image; image metrics were not computed.")
            summary = dict(result.summary)
            metrics["timings"] = {k: v for k, v in summary.items() if k.endswith("seconds")}
            metrics.update(extra_metrics)
            metrics["timings"]["export_seconds"] = dict(timings)
            metrics["notes"] = list(notes)
            data = json.dumps(_json_safe(metrics), indent=1, allow_nan=False).encode()
            written["metrics"] = atomic_write_bytes(od / "metrics.json", data)
            st(2, 2)

    if "report" in parts:
        from sym3d.config import dump_toml
        from sym3d_extras.export.report import write_report

        with _Stage("report", progress, timings) as st:
            st(0, 1)
            candidates = {
                "photo": "views/photo.jpg",
                "input": "views/input.png",
                "reconstruction": "views/reconstruction.png",
                "mirror": "views/mirror.png",
                "novel_grid": "views/novel_grid.png",
                "depth": "depth.png",
                "orbit": "orbit.mp4" if (od / "orbit.mp4").exists() else "orbit.gif",
                "loss": "loss.png",
            }
            images = {k: v for k, v in candidates.items() if (od / v).is_file()}
            metrics_shown: dict[str, Any] = {}
            if (od / "metrics.json").is_file():
                try:
                    metrics_shown = json.loads((od / "metrics.json").read_text())
                except (OSError, ValueError):
                    notes.append("metrics.json could not be read.")
            pose_shown = _read_pose(od / "pose.json", notes)
            metrics_shown.pop("notes", None)
            timings_shown = metrics_shown.pop("timings", {})
            files = [f for f in ("mesh.ply", "depth.npy", "metrics.json", *_RESULT_FILES) if (od / f).is_file()]
            try:
                config_toml = dump_toml(result.config)
            except Exception as exc:  # noqa: BLE001 - a config we cannot serialise still gets a report
                config_toml = f"# could not serialise the configuration: {type(exc).__name__}: {exc}"
            summary = {"generator": getattr(gen, "name", type(gen).__name__), **dict(result.summary)}
            export_seconds = timings_shown.get("export_seconds", timings) if isinstance(timings_shown, dict) else timings
            summary["export_seconds"] = export_seconds
            if "depth" in images:
                notes.append("depth.npy holds camera-space z in world units (NaN = background), at the neural resolution.")
            written["report"] = write_report(
                od,
                title=title or f"sym3d: {od.resolve().name}",
                images=images,
                metrics=metrics_shown,
                config_toml=config_toml,
                summary=summary,
                notes=notes,
                files=files,
                pose=pose_shown,
            )
            st(1, 1)
    return written
