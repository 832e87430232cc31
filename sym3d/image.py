"""Image I/O, value-range conversion and mirroring.

Public images are float tensors ``[B, 3, H, W]`` in ``[0, 1]``; generators work in ``[-1, 1]``.
:func:`to_model_range` and :func:`from_model_range` are the only converters between the two.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sym3d.atomic import atomic_path
from sym3d.checks import check_range, check_shape
from sym3d.errors import ImageLoadError, InputFileError, QualityWarning, UserInputError
from sym3d.files import open_regular, read_bytes

__all__ = [
    "MAX_PIXELS",
    "MAX_ASPECT_RATIO",
    "check_image_file",
    "load_image",
    "save_image",
    "to_model_range",
    "from_model_range",
    "mirror_image",
    "to_uint8",
]

MAX_PIXELS: int = 100_000_000
"""Images with more pixels are refused (override with ``max_pixels=`` or ``SYM3D_MAX_PIXELS``).

The one pixel limit: Pillow's decompression-bomb threshold (89.5 MP) is overridden by it."""
MAX_ASPECT_RATIO: float = 20.0
"""Images longer than this many times their width (or wider than this many times their height)
are refused: no face photo is a strip."""

_PILLOW_LOCK = threading.Lock()


def to_model_range(x: torch.Tensor) -> torch.Tensor:
    """Map public ``[0, 1]`` images to the generators' ``[-1, 1]``."""
    return x * 2.0 - 1.0


def from_model_range(x: torch.Tensor, *, clamp: bool = False) -> torch.Tensor:
    """Map generator ``[-1, 1]`` images to the public ``[0, 1]`` (optionally clamped)."""
    y = (x + 1.0) * 0.5
    return y.clamp(0.0, 1.0) if clamp else y


def mirror_image(x: torch.Tensor) -> torch.Tensor:
    """Flip images ``[..., H, W]`` along the width (the mirrored view of :func:`sym3d.camera.mirror_camera`)."""
    return x.flip(-1)


def _max_pixels(max_pixels: int | None) -> int:
    if max_pixels is not None:
        return max_pixels
    env = os.environ.get("SYM3D_MAX_PIXELS", "").strip()
    if not env:
        return MAX_PIXELS
    try:
        value = int(env)
    except ValueError:
        value = 0
    if value <= 0:
        raise UserInputError(f"SYM3D_MAX_PIXELS: expected a positive pixel count, got {env!r}.")
    return value


def _to_float_rgb(img, path: Path) -> np.ndarray:  # noqa: ANN001 - PIL.Image.Image
    """Convert any PIL image to ``float32 [H, W, 3]`` in [0, 1], compositing alpha on white."""
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img, dtype=np.uint16).astype(np.float32) / 65535.0
        return np.repeat(arr[..., None], 3, axis=-1)
    if mode == "I":
        arr = np.asarray(img, dtype=np.int64).astype(np.float32)
        peak = 65535.0 if arr.max() > 255 else 255.0
        arr = np.clip(arr / peak, 0.0, 1.0)
        return np.repeat(arr[..., None], 3, axis=-1)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        if arr.max() > 1.0:
            arr = arr / 255.0
        return np.repeat(np.clip(arr, 0.0, 1.0)[..., None], 3, axis=-1)
    has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        rgb, alpha = rgba[..., :3], rgba[..., 3:4]
        return rgb * alpha + (1.0 - alpha)  # composite on white
    if mode != "RGB":
        img = img.convert("RGB")
    if not isinstance(img, Image.Image):  # pragma: no cover - defensive
        raise ImageLoadError(path, "not a raster image")
    return np.asarray(img, dtype=np.float32) / 255.0


def _read_16bit_rgb(path: Path, img: Any, limit: int) -> np.ndarray:
    """``float32 [H, W, 3]`` in ``[0, 1]`` of a 16-bit-per-channel RGB(A) PNG opened as ``img``.

    Pillow reduces 48/64-bit colour to 8 bits; kornia's image decoder (``kornia_rs``, a hard
    dependency) keeps the full depth, so the result does not depend on optional packages.
    Alpha is composited on white.
    """
    from kornia_rs.io import decode_image_png_u16

    # a PNG is at most its raw samples (8 bytes per RGBA16 pixel) plus per-row and chunk overhead
    data = read_bytes(path, "an image", max_bytes=9 * limit + (1 << 20))
    w, h = img.size
    try:
        arr = decode_image_png_u16(data, (h, w), img.mode.lower())
    except Exception as exc:  # noqa: BLE001 - kornia_rs raises a bare Exception
        raise ImageLoadError(path, f"corrupt or truncated image ({exc}).") from None
    f = arr.astype(np.float32) / 65535.0  # [H, W, 3 | 4]
    rgb = f[..., :3]
    if f.shape[-1] == 4:
        alpha = f[..., 3:4]
        rgb = rgb * alpha + (1.0 - alpha)
    return np.ascontiguousarray(rgb)


def _pillow_limit(limit: int) -> contextlib.AbstractContextManager[None]:
    """Let Pillow open images up to ``limit`` pixels: sym3d's limit is the one that counts.

    Pillow warns above ``Image.MAX_IMAGE_PIXELS`` (89.5 MP by default) and refuses above twice
    that; sym3d ignores the warning (it checks ``limit`` itself, before decoding) and, only when
    ``limit`` is above Pillow's hard threshold, raises Pillow's setting for the duration of the
    call (under a lock; restored afterwards).
    """
    from PIL import Image

    @contextlib.contextmanager
    def ctx() -> Iterator[None]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            pillow = Image.MAX_IMAGE_PIXELS
            if pillow is None or limit <= 2 * pillow:
                yield
                return
            with _PILLOW_LOCK:
                Image.MAX_IMAGE_PIXELS = limit
                try:
                    yield
                finally:
                    Image.MAX_IMAGE_PIXELS = pillow

    return ctx()


def _check_size(p: Path, w: int, h: int, limit: int) -> None:
    if w == 0 or h == 0:
        raise ImageLoadError(p, f"image has zero size ({w}x{h}).")
    if w * h > limit:
        raise ImageLoadError(
            p,
            f"image is too large ({w}x{h} = {w * h / 1e6:.1f} MP; limit {limit / 1e6:.1f} MP).",
            hint="downscale it, or raise the limit with SYM3D_MAX_PIXELS.",
        )
    if max(w, h) > MAX_ASPECT_RATIO * min(w, h):
        raise ImageLoadError(
            p,
            f"image is {w}x{h} pixels, an aspect ratio of {max(w, h) / min(w, h):.0f}:1; expected "
            f"at most {MAX_ASPECT_RATIO:g}:1 (a photo with a face).",
            hint="crop the photo around the face.",
        )


@contextlib.contextmanager
def _open_image(path: str | os.PathLike, limit: int) -> Iterator[tuple[Path, Any]]:
    """Open a regular image file with Pillow (header only), check its size; yield (path, img)."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    try:
        f = open_regular(p, "an image")
    except ImageLoadError:
        raise
    except InputFileError as exc:  # same message, the image-specific type
        raise ImageLoadError(p, exc.reason, hint=exc.hint) from None
    with f:
        if os.fstat(f.fileno()).st_size == 0:
            raise ImageLoadError(p, "file is empty (0 bytes).")
        with _pillow_limit(limit):
            try:
                img = Image.open(f)
            except UnidentifiedImageError:
                unknown = "not a recognised image format (is it really an image?)."
                raise ImageLoadError(p, unknown) from None
            except Image.DecompressionBombError as exc:
                raise ImageLoadError(p, f"image is too large ({exc}).") from None
            except (OSError, SyntaxError, ValueError) as exc:
                raise ImageLoadError(p, f"corrupt or truncated image ({exc}).") from None
            with img:
                _check_size(p, *img.size, limit)
                yield p, img


def check_image_file(path: str | os.PathLike, *, max_pixels: int | None = None) -> tuple[int, int]:
    """Check an image file without decoding it; return its ``(width, height)`` in pixels.

    Reads only the header: cheap enough to check every input before a long run starts.

    Raises:
        ImageLoadError: as :func:`load_image` for a missing, special, empty, unrecognised, too
            large or too elongated file (a corrupt pixel stream is only found by loading).
    """
    with _open_image(path, _max_pixels(max_pixels)) as (_, img):
        return img.size


def load_image(
    path: str | os.PathLike,
    *,
    max_pixels: int | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Load an image file as ``[1, 3, H, W]`` float32 in ``[0, 1]``.

    Handles PNG, JPEG, WebP, BMP, TIFF, 8/16-bit, grayscale (replicated to RGB), palette, RGBA and
    LA (composited on white), and applies the EXIF orientation. Of an animated image (GIF, APNG,
    WebP, multi-page TIFF) the first frame is used, with a :class:`~sym3d.errors.QualityWarning`
    naming the frame count.

    Args:
        path: image file (a regular file: FIFOs, devices and directories are refused at once).
        max_pixels: refuse larger images (default :data:`MAX_PIXELS`, env ``SYM3D_MAX_PIXELS``).
            This is the only pixel limit: Pillow's own decompression-bomb threshold does not apply.
        device: where to put the tensor.

    Raises:
        ImageLoadError: the file is missing, not a regular file, empty, not an image, corrupt,
            zero-size, larger than ``max_pixels`` or more elongated than :data:`MAX_ASPECT_RATIO`.
    """
    from PIL import ExifTags, ImageOps

    limit = _max_pixels(max_pixels)
    with _open_image(path, limit) as (p, img):
        try:
            frames = int(getattr(img, "n_frames", 1) or 1)
            img.seek(0)
            img.load()
            transposed = ImageOps.exif_transpose(img)
            rgb_png = img.format == "PNG" and img.mode in ("RGB", "RGBA")
            # EXIF-oriented 16-bit PNGs (rare) take Pillow's 8-bit path, which applies it
            upright = img.getexif().get(ExifTags.Base.Orientation, 1) == 1
            deep = rgb_png and upright and _is_16bit_png(p)
            arr = _read_16bit_rgb(p, img, limit) if deep else _to_float_rgb(transposed, p)
        except ImageLoadError:
            raise
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageLoadError(p, f"corrupt or truncated image ({exc}).") from None
    if frames > 1:
        msg = f"{p}: an animated image with {frames} frames; only the first frame is used."
        warnings.warn(msg, QualityWarning, stacklevel=2)
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None].to(torch.float32)
    return t.to(device) if device is not None else t


def _is_16bit_png(p: Path) -> bool:
    """True if ``p`` is a PNG whose IHDR declares 16 bits per channel."""
    try:
        with open_regular(p, "an image") as f:
            head = f.read(26)
    except OSError:
        return False
    return head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 25 and head[24] == 16


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Convert ``[3, H, W]`` or ``[1, 3, H, W]`` in ``[0, 1]`` to ``uint8 [H, W, 3]`` (values clamped)."""
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise UserInputError(f"image: expected a single image [1,3,H,W], got {list(x.shape)}.")
        x = x[0]
    check_shape(x, [3, "H", "W"], "image")
    return x.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def save_image(x: torch.Tensor, path: str | os.PathLike, *, check: bool = True) -> Path:
    """Write an image ``[1, 3, H, W]`` or ``[3, H, W]`` in ``[0, 1]`` atomically.

    The format follows the suffix (``.png``, ``.jpg``, ``.webp``, ...). Values slightly outside
    ``[0, 1]`` are clamped; values far outside raise :class:`~sym3d.errors.RangeError` when
    ``check`` is set (a sign of passing ``[-1, 1]`` model output by mistake).
    """
    from PIL import Image

    if check:
        check_range(
            x, 0.0, 1.0, "image", tol=0.05, hint="convert model output with from_model_range()."
        )
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    arr = to_uint8(x)
    with atomic_path(p) as tmp:
        Image.fromarray(arr).save(tmp)
    return p
