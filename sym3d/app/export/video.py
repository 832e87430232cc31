"""SPI's orbit cameras and a video writer (MP4/H.264 with a GIF fallback).

The MP4 is encoded by the ffmpeg binary that ships inside the ``imageio-ffmpeg`` wheel (no
system ffmpeg and no network needed): H.264 (libx264), ``yuv420p``, CRF 18, ``+faststart`` so
browsers can start playing before the file is fully loaded. Without that binary, or when
encoding fails, :func:`write_video` writes an animated GIF instead and says so with an
:class:`~sym3d.app.export._common.ExportWarning`.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from sym3d.app.export._common import ExportWarning, atomic_path, images_to_uint8
from sym3d.camera import FFHQ_FOCAL, FFHQ_PIVOT, FFHQ_RADIUS, eg3d_sampler_angles, look_at
from sym3d.errors import MissingDependencyError, UserInputError

__all__ = ["orbit_cameras", "write_video", "ffmpeg_status", "VideoFormat"]

VideoFormat = Literal["auto", "mp4", "gif"]


def orbit_cameras(
    num_frames: int = 120,
    *,
    yaw_amplitude: float = 0.7,
    pitch_amplitude: float = 0.4,
    pitch_offset: float = -0.05,
    radius: float = FFHQ_RADIUS,
    pivot: Sequence[float] = FFHQ_PIVOT,
    focal: float = FFHQ_FOCAL,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """SPI's orbit: ``num_frames`` cameras on a closed loop around the head.

    Frame ``i`` uses ``t = 2 pi i / num_frames`` and EG3D ``LookAtPoseSampler`` angles
    ``h = pi/2 + yaw_amplitude sin(t)``, ``v = pi/2 + pitch_offset + pitch_amplitude cos(t)``
    (SPI: 0.7, 0.4, -0.05), converted with :func:`sym3d.camera.eg3d_sampler_angles`; the
    cameras orbit the world origin at ``radius`` and look at ``pivot``. The last frame is one
    step before the first, so the video loops seamlessly. With SPI's values the viewing yaw
    spans about +-43 degrees and the pitch -14 ... +18 degrees (the first frame looks from
    below); the camera goes round once per loop.

    Args:
        num_frames: frames in one loop (SPI: 120, played at 60 fps).
        yaw_amplitude: amplitude of ``h`` (radians).
        pitch_amplitude: amplitude of ``v`` (radians, sampler units).
        pitch_offset: offset of ``v`` from ``pi/2`` (radians, sampler units).
        radius, pivot, focal: camera distance (world units), look-at point and normalised focal.
        device: device of the result.

    Returns:
        ``[num_frames, 25]`` camera labels.

    Raises:
        sym3d.errors.UserInputError: ``num_frames < 1``.
    """
    if num_frames < 1:
        raise UserInputError(f"num_frames: expected a positive integer, got {num_frames}.")
    yaws, pitches = [], []
    for i in range(num_frames):
        t = 2.0 * math.pi * i / num_frames
        yaw, pitch = eg3d_sampler_angles(
            math.pi / 2 + yaw_amplitude * math.sin(t),
            math.pi / 2 + pitch_offset + pitch_amplitude * math.cos(t),
        )
        yaws.append(yaw)
        pitches.append(pitch)
    return look_at(
        torch.tensor(yaws, dtype=torch.float64),
        torch.tensor(pitches, dtype=torch.float64),
        radius=radius,
        pivot=pivot,
        focal=focal,
        dtype=torch.float64,
    ).to(device=device, dtype=torch.float32)


@functools.lru_cache(maxsize=1)
def _find_ffmpeg() -> tuple[str | None, str]:
    """``(executable, "")`` if imageio-ffmpeg provides a usable ffmpeg, else ``(None, reason)``."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None, "imageio-ffmpeg is not installed (pip install 'sym3d[export]')"
    try:
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        return None, f"imageio-ffmpeg found no ffmpeg binary ({exc})"
    if not exe or not os.path.exists(exe):
        return None, f"ffmpeg binary {exe!r} does not exist"
    return exe, ""


def ffmpeg_status() -> tuple[bool, str]:
    """``(available, detail)``: whether MP4 can be written, with the binary path or the reason."""
    exe, reason = _find_ffmpeg()
    return (exe is not None), (exe or reason)


def _even(frames: np.ndarray) -> np.ndarray:
    """Pad ``[N, H, W, 3]`` by edge replication to even ``H`` and ``W`` (``yuv420p`` needs it)."""
    _, h, w, _ = frames.shape
    ph, pw = h % 2, w % 2
    if ph or pw:
        frames = np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    return np.ascontiguousarray(frames)


def _write_mp4(
    frames: np.ndarray,
    path: Path,
    fps: float,
    crf: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    import imageio_ffmpeg

    frames = _even(frames)
    n, h, w, _ = frames.shape
    with atomic_path(path) as tmp:
        writer = imageio_ffmpeg.write_frames(
            str(tmp),
            (w, h),
            fps=fps,
            codec="libx264",
            quality=None,
            macro_block_size=1,
            ffmpeg_log_level="error",
            output_params=["-crf", str(int(crf)), "-preset", "medium", "-movflags", "+faststart"],
        )
        writer.send(None)
        try:
            for i, frame in enumerate(frames):
                writer.send(frame)
                if progress is not None:
                    progress(i + 1, n)
        finally:
            writer.close()
        if tmp.stat().st_size == 0:
            raise OSError("ffmpeg wrote an empty file")


def _write_gif(
    frames: np.ndarray, path: Path, fps: float, progress: Callable[[int, int], None] | None
) -> None:
    from PIL import Image

    n, h, w, _ = frames.shape
    # One palette for all frames (no colour flicker), from a mosaic of up to 16 frames.
    picks = np.linspace(0, n - 1, num=min(n, 16)).round().astype(int)
    mosaic = Image.fromarray(np.concatenate([frames[i] for i in picks], axis=0))
    palette = mosaic.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    images = []
    for i, frame in enumerate(frames):
        images.append(Image.fromarray(frame).quantize(palette=palette, dither=Image.Dither.NONE))
        if progress is not None:
            progress(i + 1, n)
    # GIF delays are in 1/100 s and browsers slow down delays below 2/100 s: cap at 50 fps.
    duration = max(20, int(round(100.0 / fps)) * 10)
    with atomic_path(path) as tmp:
        images[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=duration,
            loop=0,
            optimize=False,
            disposal=1,
        )


def write_video(
    frames: torch.Tensor | np.ndarray,
    path: str | os.PathLike,
    fps: float = 60,
    *,
    format: VideoFormat = "auto",  # noqa: A002 - the natural name
    crf: int = 18,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write frames as an MP4 (H.264), or an animated GIF when ffmpeg is unavailable.

    The suffix of ``path`` is replaced by the format actually written (``.mp4`` or ``.gif``);
    the returned path says which. The file appears atomically (temporary file, then rename).

    Args:
        frames: ``[N, 3, H, W]`` float in ``[0, 1]``, or ``uint8 [N, H, W, 3]``. Odd sizes are
            padded by one edge pixel for MP4 (``yuv420p`` needs even sides).
        path: output file; its suffix picks the format under ``format="auto"`` (``.gif`` means
            GIF, anything else MP4 with the GIF fallback).
        fps: frames per second (SPI: 60). GIF frame delays are whole hundredths of a second and
            at least 0.02 s, so GIFs play at most at 50 fps.
        format: ``"auto"`` (MP4 if possible, else GIF with an :class:`ExportWarning`), ``"mp4"``
            (no fallback) or ``"gif"``.
        crf: H.264 constant rate factor (0 lossless ... 51 worst; 18 looks lossless).
        progress: ``progress(done_frames, total_frames)`` while encoding.

    Returns:
        The written file.

    Raises:
        sym3d.errors.MissingDependencyError: ``format="mp4"`` and no ffmpeg is available.
        sym3d.errors.ShapeError, sym3d.errors.RangeError: bad ``frames``.
        sym3d.errors.UserInputError: no frames, ``fps <= 0`` or an unknown ``format``.
    """
    arr = images_to_uint8(frames, "frames")
    if arr.shape[0] == 0:
        raise UserInputError("frames: expected at least one frame, got 0.")
    if not fps > 0:
        raise UserInputError(f"fps: expected a positive number, got {fps}.")
    if format not in ("auto", "mp4", "gif"):
        raise UserInputError(f"format: expected 'auto', 'mp4' or 'gif', got {format!r}.")
    p = Path(path)
    want = format
    if want == "auto" and p.suffix.lower() == ".gif":
        want = "gif"
    if want in ("auto", "mp4"):
        exe, reason = _find_ffmpeg()
        if exe is None:
            if want == "mp4":
                raise MissingDependencyError(
                    f"MP4 video ({reason})", "export", package="imageio-ffmpeg"
                )
        else:
            target = p.with_suffix(".mp4")
            try:
                _write_mp4(arr, target, fps, crf, progress)
                return target
            except (OSError, RuntimeError, ValueError, BrokenPipeError) as exc:
                if want == "mp4":
                    raise
                reason = f"ffmpeg failed ({type(exc).__name__}: {exc})"
        warnings.warn(
            f"MP4 not written: {reason}; wrote an animated GIF instead.",
            ExportWarning,
            stacklevel=2,
        )
    target = p.with_suffix(".gif")
    _write_gif(arr, target, fps, progress)
    return target
