"""Depth maps as pictures (colour-mapped PNG) and as numbers (``.npy`` or 16-bit PNG).

Units and conventions: depth is in **world units** (EG3D FFHQ: the head spans about 0.5 units
and the cameras sit 2.7 units from the origin). ``RenderOutput.depth`` is the expected distance
along the unit ray through each pixel centre (``kind="ray"``, EG3D's ``image_depth``);
``RenderOutput.depth_z`` is the camera-space z of the same point (``kind="z"``, what you need
to lift pixels to 3D with the intrinsics: ``X = z * K^-1 [u, v, 1]``). They are equal at the
principal point and differ by about 1.3% at the image corners for the FFHQ focal length. Depth
maps are at the generator's **neural** resolution (EG3D: 128), not the image resolution.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from sym3d.app.export._common import atomic_path, require, save_png
from sym3d.errors import ShapeError, UserInputError

__all__ = ["depth_to_image", "save_depth_image", "save_depth", "load_depth", "DepthKind"]

DepthKind = Literal["ray", "z"]

_PNG_KEY = "sym3d-depth"


def _as_hw(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    t = torch.as_tensor(x).detach().cpu()
    while t.dim() > 2 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 2:
        raise ShapeError(name, "[H, W], [1, H, W] or [1, 1, H, W]", tuple(torch.as_tensor(x).shape))
    return t


def _foreground(depth: torch.Tensor, mask: torch.Tensor | np.ndarray | None) -> torch.Tensor:
    """Boolean ``[H, W]``: pixels with a finite, positive depth inside ``mask`` (``> 0.5``)."""
    fg = torch.isfinite(depth) & (depth > 0)
    if mask is not None:
        m = _as_hw(mask, "mask")
        if m.shape != depth.shape:
            raise ShapeError(
                "mask", f"the depth's spatial shape {list(depth.shape)}", tuple(m.shape)
            )
        fg &= m > 0.5 if m.dtype != torch.bool else m
    return fg


def _near_far(
    values: torch.Tensor, near: float | None, far: float | None, clip_percentile: float
) -> tuple[float, float]:
    if values.numel() == 0:
        return (1.0 if near is None else near), (2.0 if far is None else far)
    v = values.double()
    if near is None:
        near = (
            float(torch.quantile(v, clip_percentile / 100.0))
            if clip_percentile > 0
            else float(v.min())
        )
    if far is None:
        far = (
            float(torch.quantile(v, 1.0 - clip_percentile / 100.0))
            if clip_percentile > 0
            else float(v.max())
        )
    if not far > near:
        far = near + 1e-6
    return near, far


def depth_to_image(
    depth: torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray | None = None,
    *,
    cmap: str = "turbo",
    near: float | None = None,
    far: float | None = None,
    background: float = 0.5,
    clip_percentile: float = 1.0,
) -> torch.Tensor:
    """Colour-map a depth map for viewing: near is the top of the colour map (red for turbo).

    Args:
        depth: ``[H, W]``, ``[1, H, W]`` or ``[1, 1, H, W]`` in world units.
        mask: same spatial shape; foreground where ``> 0.5`` (e.g. ``opacity``). Pixels outside
            it, or with non-finite or non-positive depth, are painted ``background``.
        cmap: a Matplotlib colour-map name (``"turbo"``, ``"viridis"``, ``"gray"``, ...).
        near, far: the depth range mapped onto the colour map (default: the
            ``clip_percentile`` and ``100 - clip_percentile`` percentiles of the foreground
            depth, so a few stray edge pixels do not squash the contrast).
        background: grey level of the background in ``[0, 1]`` (neutral mid grey by default).
        clip_percentile: see ``near``/``far``; ``0`` uses the exact min and max.

    Returns:
        ``[3, H, W]`` float in ``[0, 1]`` (CPU).

    Raises:
        sym3d.errors.ShapeError: bad ``depth`` or ``mask`` shape.
        sym3d.errors.UserInputError: unknown colour map or a bad ``clip_percentile``.
        sym3d.errors.MissingDependencyError: Matplotlib is missing.
    """
    require("matplotlib", "depth colour maps", package="matplotlib")
    import matplotlib

    if not 0.0 <= clip_percentile < 50.0:
        raise UserInputError(
            f"clip_percentile: expected a value in [0, 50), got {clip_percentile}."
        )
    try:
        cm = matplotlib.colormaps[cmap]
    except KeyError:
        raise UserInputError(
            f"cmap: unknown Matplotlib colour map {cmap!r}.",
            hint="try 'turbo', 'viridis' or 'gray'.",
        ) from None
    d = _as_hw(depth, "depth").float()
    fg = _foreground(d, mask)
    near, far = _near_far(d[fg], near, far, clip_percentile)
    t = ((far - d) / (far - near)).clamp(0, 1)
    t = torch.where(fg, t, torch.zeros_like(t)).nan_to_num(0.0)
    lut = torch.from_numpy(cm(np.linspace(0.0, 1.0, 256))[:, :3].astype(np.float32))  # [256, 3]
    rgb = lut[(t * 255).round().long()]  # [H, W, 3]
    rgb[~fg] = float(background)
    return rgb.permute(2, 0, 1).contiguous()


def save_depth_image(
    depth: torch.Tensor | np.ndarray,
    path: str | os.PathLike,
    mask: torch.Tensor | np.ndarray | None = None,
    **kwargs: object,
) -> Path:
    """Write :func:`depth_to_image` of ``depth`` to ``path`` (PNG, atomically); see it for ``kwargs``."""
    return save_png(depth_to_image(depth, mask, **kwargs), path)  # type: ignore[arg-type]


def save_depth(
    depth: torch.Tensor | np.ndarray,
    path: str | os.PathLike,
    *,
    mask: torch.Tensor | np.ndarray | None = None,
    kind: DepthKind = "ray",
    near: float | None = None,
    far: float | None = None,
) -> Path:
    """Save depth values for later use, atomically, as ``.npy`` or 16-bit ``.png``.

    * ``.npy``: ``float32 [H, W]`` in world units, NaN outside the mask. (The file holds only
      the array; record ``kind`` yourself, e.g. in the file name.)
    * ``.png``: 16-bit grayscale; ``0`` is background and ``1 .. 65535`` map linearly onto
      ``near .. far`` (default: the foreground's min and max), i.e.
      ``depth = near + (value - 1) / 65534 * (far - near)``: a step of about
      ``(far - near) / 65534`` (under 1e-5 world units for a face). ``near``, ``far``, ``kind``
      and the units are stored in a PNG text chunk ``"sym3d-depth"`` (JSON); :func:`load_depth`
      decodes it.

    Args:
        depth: ``[H, W]``, ``[1, H, W]`` or ``[1, 1, H, W]`` in world units.
        path: ``*.npy`` or ``*.png``.
        mask: foreground where ``> 0.5``; default: finite positive depth.
        kind: ``"ray"`` (distance along the unit ray, ``RenderOutput.depth``) or ``"z"``
            (camera-space z, ``RenderOutput.depth_z``): what ``depth`` is, for the metadata.
        near, far: the 16-bit PNG's encoded range.

    Returns:
        The written file.

    Raises:
        sym3d.errors.UserInputError: unknown suffix or ``kind``.
        sym3d.errors.ShapeError: bad shapes.
    """
    from PIL import Image, PngImagePlugin

    if kind not in ("ray", "z"):
        raise UserInputError(f"kind: expected 'ray' or 'z', got {kind!r}.")
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".npy", ".png"):
        raise UserInputError(
            f"{p}: expected a .npy or .png file name for raw depth, got {p.suffix or 'no suffix'!r}."
        )
    d = _as_hw(depth, "depth").double()
    fg = _foreground(d, mask)
    if suffix == ".npy":
        arr = torch.where(fg, d, torch.full_like(d, float("nan"))).float().numpy()
        with atomic_path(p) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, arr)
        return p
    near_v, far_v = _near_far(d[fg], near, far, 0.0)
    q = ((d - near_v) / (far_v - near_v)).clamp(0, 1) * 65534.0 + 1.0
    q = torch.where(fg, q.round(), torch.zeros_like(q)).numpy().astype(np.uint16)
    info = PngImagePlugin.PngInfo()
    info.add_text(
        _PNG_KEY,
        json.dumps(
            {
                "near": near_v,
                "far": far_v,
                "kind": kind,
                "units": "world",
                "background": 0,
                "decode": "depth = near + (value - 1) / 65534 * (far - near)",
            }
        ),
    )
    with atomic_path(p) as tmp:
        Image.fromarray(q).save(tmp, format="PNG", pnginfo=info)
    return p


def load_depth(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """Read depth written by :func:`save_depth`: ``(float32 [H, W] with NaN background, metadata)``.

    The metadata of a ``.npy`` file is ``{}``; a 16-bit PNG's holds ``near``, ``far``, ``kind``
    and ``units``.

    Raises:
        sym3d.errors.UserInputError: not a depth file written by :func:`save_depth`.
    """
    from PIL import Image

    p = Path(path)
    if p.suffix.lower() == ".npy":
        return np.load(p, allow_pickle=False).astype(np.float32), {}
    with Image.open(p) as img:
        meta_text = img.info.get(_PNG_KEY)
        arr = np.asarray(img).astype(np.float64)
    if meta_text is None:
        raise UserInputError(f"{p}: not a sym3d 16-bit depth PNG (no {_PNG_KEY!r} text chunk).")
    meta = json.loads(meta_text)
    out = meta["near"] + (arr - 1.0) / 65534.0 * (meta["far"] - meta["near"])
    out[arr == 0] = np.nan
    return out.astype(np.float32), meta
