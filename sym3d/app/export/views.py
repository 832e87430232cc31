"""Render many views in chunks, and lay images out in a labelled grid.

Example:
    >>> from sym3d.camera import look_at
    >>> from sym3d.image import from_model_range
    >>> cams = look_at(torch.linspace(-0.8, 0.8, 7), 0.0)             # [7, 25]
    >>> out = render_views(gen, ws, cams)                               # image [1, 7, 3, H, W]
    >>> grid = novel_view_grid(from_model_range(out.image[0], clamp=True), yaw_labels(cams))
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from sym3d.camera import yaw_pitch_roll
from sym3d.checks import check_range, check_shape
from sym3d.errors import UserInputError
from sym3d.protocols import Generator3D, RenderOutput

__all__ = [
    "render_views",
    "novel_view_grid",
    "yaw_labels",
    "generator_device",
    "save_photo_preview",
]


def save_photo_preview(
    photo: torch.Tensor, path: str | os.PathLike, *, max_side: int = 1024, quality: int = 90
) -> Path:
    """Write a JPEG copy of a photo for the report, at most ``max_side`` pixels on its long side.

    Args:
        photo: ``[1, 3, H, W]`` or ``[3, H, W]`` in ``[0, 1]`` (the photo as loaded).
        path: the file to write (atomically); its parent folder is created.
        max_side: the long side of the copy; smaller photos keep their size.
        quality: JPEG quality (1-95).

    Returns:
        ``path``.
    """
    import io

    import numpy as np
    from PIL import Image

    from sym3d.app.export._common import atomic_write_bytes

    img = photo.detach().float().cpu()
    img = img[0] if img.dim() == 4 else img
    check_shape(img, [3, "H", "W"], "photo")
    h, w = img.shape[-2:]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        img = F.interpolate(
            img[None], size=size, mode="bilinear", align_corners=False, antialias=True
        )[0]
    arr = (img.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return atomic_write_bytes(Path(path), buf.getvalue())


def generator_device(generator: Generator3D) -> torch.device:
    """The device of the generator's first parameter or buffer (CPU when it has neither)."""
    for tensors in (generator.parameters(), getattr(generator, "buffers", lambda: iter(()))()):
        for t in tensors:
            return t.device
    return torch.device("cpu")


def _cat_outputs(parts: Sequence[RenderOutput]) -> RenderOutput:
    keys = set(parts[0].extras)
    for p in parts[1:]:
        keys &= set(p.extras)
    return RenderOutput(
        image=torch.cat([p.image for p in parts], 1),
        image_raw=torch.cat([p.image_raw for p in parts], 1),
        depth=torch.cat([p.depth for p in parts], 1),
        depth_z=torch.cat([p.depth_z for p in parts], 1),
        opacity=torch.cat([p.opacity for p in parts], 1),
        extras={k: torch.cat([p.extras[k] for p in parts], 1) for k in sorted(keys)},
    )


def _to(out: RenderOutput, device: torch.device | str | None) -> RenderOutput:
    if device is None:
        return out
    return RenderOutput(
        image=out.image.to(device),
        image_raw=out.image_raw.to(device),
        depth=out.depth.to(device),
        depth_z=out.depth_z.to(device),
        opacity=out.opacity.to(device),
        extras={k: v.to(device) for k, v in out.extras.items()},
    )


def render_views(
    generator: Generator3D,
    ws: torch.Tensor,
    cameras: torch.Tensor,
    *,
    batch: int = 8,
    neural_resolution: int | None = None,
    out_device: torch.device | str | None = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> RenderOutput:
    """Render ``ws`` from many cameras, ``batch`` views per ``render`` call, without gradients.

    Each chunk is one :meth:`~sym3d.protocols.Generator3D.render` call (one backbone pass for
    its views); rendering is deterministic (``generator=None``), so chunking does not change
    the result. Chunks are moved to ``out_device`` as they finish, so a long orbit does not
    accumulate on the GPU.

    Args:
        generator: the (tuned) generator.
        ws: ``[B, num_ws, w_dim]`` latents.
        cameras: ``[V, 25]`` (the same cameras for every latent) or ``[B, V, 25]``.
        batch: views per render call (> 0).
        neural_resolution: override of the volume-rendering resolution.
        out_device: where the stacked outputs live (``None``: leave them where rendered).
        progress: ``progress(done_views, total_views)`` after each chunk.

    Returns:
        A :class:`~sym3d.protocols.RenderOutput` with ``[B, V, ...]`` tensors: ``image`` in
        ``[-1, 1]``, ``depth``/``depth_z`` in world units, ``opacity`` in ``[0, 1]``. Extras
        present in every chunk are kept.

    Raises:
        sym3d.errors.ShapeError: ``ws`` or ``cameras`` has the wrong shape.
        sym3d.errors.UserInputError: ``batch < 1`` or no cameras.
    """
    if batch < 1:
        raise UserInputError(
            f"batch: expected a positive number of views per render call, got {batch}."
        )
    dims = check_shape(ws, ["B", generator.num_ws, generator.w_dim], "ws")
    if cameras.dim() == 2:
        check_shape(cameras, ["V", 25], "cameras")
        cameras = cameras[None].expand(dims["B"], -1, -1)
    check_shape(cameras, ["B", "V", 25], "cameras", dims=dims)
    total = int(cameras.shape[1])
    if total == 0:
        raise UserInputError("cameras: expected at least one camera, got 0.")
    device = generator_device(generator)
    ws_d = ws.to(device)
    parts: list[RenderOutput] = []
    with torch.no_grad():
        for start in range(0, total, batch):
            cams = cameras[:, start : start + batch].to(device=device, dtype=ws_d.dtype)
            out = generator.render(ws_d, cams, neural_resolution=neural_resolution)
            parts.append(_to(out.detach(), out_device))
            if progress is not None:
                progress(min(start + batch, total), total)
    return parts[0] if len(parts) == 1 else _cat_outputs(parts)


def yaw_labels(cameras: torch.Tensor, *, with_pitch: bool = False) -> list[str]:
    """Labels such as ``"yaw -46°"`` (``"yaw -46° pitch 5°"``) for cameras ``[V, 25]``.

    Angles are the viewing-direction angles of :func:`sym3d.camera.yaw_pitch_roll` in degrees;
    positive yaw shows the subject's left cheek.
    """
    check_shape(cameras, ["V", 25], "cameras")
    yaw, pitch, _ = yaw_pitch_roll(cameras.detach().cpu().double())
    out = []
    for y, p in zip(yaw.tolist(), pitch.tolist(), strict=True):
        text = f"yaw {math.degrees(y):+.0f}°".replace("+0°", "0°").replace("-0°", "0°")
        if with_pitch:
            text += f" pitch {math.degrees(p):+.0f}°".replace("+0°", "0°").replace("-0°", "0°")
        out.append(text)
    return out


def _font(size: int):  # noqa: ANN202 - PIL font
    from PIL import ImageFont

    try:
        return ImageFont.load_default(
            size=size
        )  # scalable built-in font (Pillow >= 10.1 with FreeType)
    except (TypeError, OSError, ImportError):  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


def _fit(draw, text: str, size: int, width: int):  # noqa: ANN001, ANN202 - PIL objects
    """``(text, font)`` fitting ``width`` pixels: shrink the font down to 8 px, then shorten with an ellipsis."""
    for fs in range(size, 7, -1):
        font = _font(fs)
        if draw.textlength(text, font=font) <= width:
            return text, font
    while len(text) > 1 and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "...", font


def novel_view_grid(
    images: torch.Tensor,
    labels: Sequence[str] | None = None,
    ncols: int | None = None,
    *,
    padding: int = 4,
    background: float = 1.0,
    min_size: int = 128,
    font_size: int | None = None,
) -> torch.Tensor:
    """Tile images into a grid with a small text label under each.

    Args:
        images: ``[N, 3, H, W]`` in ``[0, 1]``.
        labels: ``N`` strings drawn under the images (e.g. :func:`yaw_labels`), or ``None`` for
            no label strip.
        ncols: images per row (default: all in one row).
        padding: pixels between and around cells.
        background: grey level of the background in ``[0, 1]``.
        min_size: images whose height is below this are enlarged by an integer factor with
            nearest-neighbour sampling so that labels stay legible (``0`` keeps native pixels).
        font_size: label text height in pixels (default: about an eighth of the cell, 10-24).

    Returns:
        ``[3, H', W']`` in ``[0, 1]`` (CPU).

    Raises:
        sym3d.errors.ShapeError, sym3d.errors.RangeError: bad ``images``.
        sym3d.errors.UserInputError: ``labels`` does not have ``N`` entries, or ``ncols < 1``.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    dims = check_shape(images, ["N", 3, "H", "W"], "images")
    check_range(
        images,
        0.0,
        1.0,
        "images",
        tol=0.05,
        hint="convert generator output with sym3d.image.from_model_range().",
    )
    n, h, w = dims["N"], dims["H"], dims["W"]
    if n == 0:
        raise UserInputError("images: expected at least one image, got 0.")
    if labels is not None and len(labels) != n:
        raise UserInputError(f"labels: expected {n} labels (one per image), got {len(labels)}.")
    ncols = n if ncols is None else int(ncols)
    if ncols < 1:
        raise UserInputError(f"ncols: expected a positive integer, got {ncols}.")
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    imgs = images.detach().float().cpu().clamp(0, 1)
    scale = max(1, math.ceil(min_size / h)) if min_size else 1
    if scale > 1:
        imgs = F.interpolate(imgs, scale_factor=scale, mode="nearest")
        h, w = h * scale, w * scale
    fs = font_size or max(10, min(24, h // 8))
    strip = int(round(fs * 1.6)) if labels is not None else 0
    cell_h, cell_w = h + strip, w
    H = nrows * cell_h + (nrows + 1) * padding
    W = ncols * cell_w + (ncols + 1) * padding
    canvas = torch.full((3, H, W), float(background))
    for i in range(n):
        r, c = divmod(i, ncols)
        y0 = padding + r * (cell_h + padding)
        x0 = padding + c * (cell_w + padding)
        canvas[:, y0 : y0 + h, x0 : x0 + w] = imgs[i]
    if labels is None:
        return canvas
    arr = (canvas.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    pil = Image.fromarray(arr)
    draw = ImageDraw.Draw(pil)
    ink = (30, 30, 30) if background > 0.5 else (235, 235, 235)
    for i, label in enumerate(labels):
        r, c = divmod(i, ncols)
        cx = padding + c * (cell_w + padding) + cell_w / 2
        cy = padding + r * (cell_h + padding) + h + strip / 2
        text, font = _fit(draw, str(label), fs, cell_w + padding)
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
        draw.text((cx - (x1 - x0) / 2 - x0, cy - (y1 - y0) / 2 - y0), text, fill=ink, font=font)
    return torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
