"""Figures as PNGs (Matplotlib, Agg, no pyplot state).

:func:`plot_history`: the loss curves of an inversion, one panel per stage.
:func:`plot_image_grid`: a labelled grid of image tiles (rows of methods, columns of views) with
colour bars for the rows that show colour-mapped values (depth, errors).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from sym3d.app.export._common import atomic_write_bytes, require
from sym3d.errors import UserInputError

__all__ = ["plot_history", "loss_terms", "plot_image_grid", "ColourScale"]

_META = ("stage", "step", "lr", "seconds")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def loss_terms(
    history: Sequence[Mapping[str, Any]], *, include_diagnostics: bool = False
) -> list[str]:
    """Names of the numeric loss terms in ``history``, in first-seen order (``"total"`` last).

    Diagnostics (terms whose last ``/``-separated part starts with ``_``, e.g.
    ``"warp_views/_valid"``) are left out unless ``include_diagnostics``.
    """
    names: dict[str, None] = {}
    for row in history:
        for k, v in row.items():
            if k in _META or not _is_number(v):
                continue
            if not include_diagnostics and k.rsplit("/", 1)[-1].startswith("_"):
                continue
            names.setdefault(k, None)
    ordered = [k for k in names if k != "total"]
    return ordered + (["total"] if "total" in names else [])


def plot_history(
    history: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    title: str | None = None,
    include_diagnostics: bool = False,
    show_lr: bool = True,
    dpi: int = 110,
) -> Path:
    """Plot the loss terms of every stage against the step and write one PNG atomically.

    One panel per stage (``"latent"``, ``"generator"``, ... in the order they ran); one line per
    term, the ``total`` in black. Terms logged only on some steps (SPI's auxiliary terms every
    4th step) are drawn through the steps where they exist, with markers. A panel uses a log
    y axis when all its values are positive and span more than a factor of 10. The learning
    rate is drawn on a secondary axis (grey, dotted) when ``show_lr``.

    Args:
        history: ``InversionResult.history``: rows ``{"stage", "step", "lr", "seconds", term: value}``.
        path: the PNG to write.
        title: figure title.
        include_diagnostics: also plot ``_``-prefixed diagnostic terms.
        show_lr: draw the learning rate.
        dpi: resolution.

    Returns:
        The written file.

    Raises:
        sym3d.errors.UserInputError: ``history`` has no numeric loss terms.
        sym3d.errors.MissingDependencyError: Matplotlib is missing.
    """
    require("matplotlib", "loss plots")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [r for r in history if isinstance(r, Mapping)]
    terms = loss_terms(rows, include_diagnostics=include_diagnostics)
    if not terms:
        raise UserInputError(
            "history: expected rows with numeric loss terms, got none (was the inversion run for 0 steps?)."
        )
    stages: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        stages.setdefault(str(r.get("stage", "run")), []).append(r)

    fig = Figure(figsize=(5.6 * len(stages), 4.4), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(stages), squeeze=False)[0]
    palette = [f"C{i}" for i in range(10)]
    colours = {
        t: ("black" if t == "total" else palette[i % len(palette)]) for i, t in enumerate(terms)
    }
    for ax, (stage, srows) in zip(axes, stages.items(), strict=True):
        all_vals: list[float] = []
        for term in terms:
            pts = [
                (r.get("step", i), r[term]) for i, r in enumerate(srows) if _is_number(r.get(term))
            ]
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            all_vals.extend(ys)
            sparse = len(pts) < 0.6 * len(srows) or len(pts) < 20
            ax.plot(
                xs,
                ys,
                label=term,
                color=colours[term],
                linewidth=2.0 if term == "total" else 1.2,
                marker="o" if sparse else None,
                markersize=2.5,
                alpha=0.95,
            )
        if all_vals and min(all_vals) > 0 and max(all_vals) / min(all_vals) > 10:
            ax.set_yscale("log")
        seconds = sum(float(r["seconds"]) for r in srows if _is_number(r.get("seconds")))
        heading = f"{stage}: {len(srows)} steps" + (f", {seconds:.1f} s" if seconds else "")
        lr = [(r.get("step", i), r["lr"]) for i, r in enumerate(srows) if _is_number(r.get("lr"))]
        lr_values = {v for _, v in lr}
        if show_lr and len(lr_values) == 1:
            heading += f", lr {lr[0][1]:.3g}"  # a constant rate needs no axis
        ax.set_title(heading, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(True, which="major", alpha=0.3)
        if show_lr and len(lr_values) > 1:
            ax2 = ax.twinx()
            ax2.plot(*zip(*lr, strict=True), color="0.55", linestyle=":", linewidth=1.0)
            ax2.set_ylabel("learning rate (dotted)", color="0.45", fontsize=8)
            ax2.tick_params(axis="y", colors="0.45", labelsize=7)
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            ax.legend(
                handles,
                labels,
                fontsize=7,
                loc="upper center",
                bbox_to_anchor=(0.5, -0.16),
                ncol=min(3, len(handles)),
                frameon=False,
            )
    if title:
        fig.suptitle(title, fontsize=11)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return atomic_write_bytes(Path(path), buf.getvalue())


@attrs.frozen
class ColourScale:
    """How the tiles of a row were colour-mapped, for its colour bar.

    Attributes:
        cmap: Matplotlib colour-map name (e.g. ``"turbo_r"``: the low end is red).
        vmin: the value at the low end of the map.
        vmax: the value at the high end (values beyond it were clipped).
        label: the bar's caption (quantity and units).
    """

    cmap: str
    vmin: float
    vmax: float
    label: str


def _tile_array(tile: Any) -> Any:
    """``[3, H, W]`` tensor or ``[H, W, 3]`` array in ``[0, 1]`` -> ``[H, W, 3]`` float array."""
    import numpy as np

    if hasattr(tile, "detach"):
        arr = tile.detach().float().cpu().numpy()
    else:
        arr = np.asarray(tile, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = arr.transpose(1, 2, 0)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise UserInputError(
            f"tiles: expected [3, H, W] images, got an array of shape {list(arr.shape)}."
        )
    return np.clip(arr, 0.0, 1.0)


def plot_image_grid(
    tiles: Sequence[Sequence[Any]],
    path: str | os.PathLike,
    *,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    scales: Sequence[ColourScale | None] | None = None,
    side: tuple[Any, str] | None = None,
    tile_px: int = 128,
    dpi: int = 100,
) -> Path:
    """Write a grid of image tiles with row and column labels and colour bars as one PNG.

    Every tile is labelled with its row's and its column's label in its top-left corner (so a
    cropped or zoomed figure stays readable); the column labels also head the columns and the
    row labels sit left of the rows. Consecutive rows with the same :class:`ColourScale` share
    one colour bar right of them.

    Args:
        tiles: rows of tiles, each ``[3, H, W]`` (tensor or array) in ``[0, 1]``; every row has
            ``len(col_labels)`` tiles.
        path: the PNG to write (atomically).
        row_labels: one label per row (e.g. ``"SPI"``, ``"depth SPI"``).
        col_labels: one label per column (e.g. ``"+15°"``).
        scales: per row, the colour scale its tiles were mapped with, or ``None`` for plain
            images (default: all ``None``).
        side: an optional ``(tile, caption)`` shown left of the first row (e.g. the input).
        tile_px: the side of a tile in the PNG, in pixels.
        dpi: resolution (text sizes are in points, so this scales the text with the tiles).

    Returns:
        The written file.

    Raises:
        sym3d.errors.UserInputError: ragged rows, or label/scale counts that do not match.
        sym3d.errors.MissingDependencyError: Matplotlib is missing.
    """
    require("matplotlib", "figures")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    n_rows, n_cols = len(tiles), len(col_labels)
    scales = list(scales) if scales is not None else [None] * n_rows
    if n_rows == 0 or n_cols == 0:
        raise UserInputError("tiles: expected at least one row and one column, got none.")
    if len(row_labels) != n_rows or len(scales) != n_rows:
        raise UserInputError(
            f"row_labels/scales: expected {n_rows} each (one per row), "
            f"got {len(row_labels)}/{len(scales)}."
        )
    bad = [i for i, row in enumerate(tiles) if len(row) != n_cols]
    if bad:
        raise UserInputError(
            f"tiles: row {bad[0]} has {len(tiles[bad[0]])} tiles, expected {n_cols} (one a column)."
        )

    t = tile_px / dpi  # inches per tile
    gap, head, left_text = 0.04 * t, 0.28 * t, 0.9 * t
    side_w = (t + 0.12 * t) if side is not None else 0.0
    bar_w = 1.1 * t if any(s is not None for s in scales) else 0.1 * t
    width = left_text + side_w + n_cols * (t + gap) + bar_w
    height = head + n_rows * (t + gap) + 0.05 * t
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    fs = max(6.0, 9.0 * tile_px / 128)

    def box(x0: float, y_top: float, w: float, h: float) -> list[float]:
        """Axes rectangle in figure fractions from inches measured from the top-left corner."""
        return [x0 / width, 1.0 - (y_top + h) / height, w / width, h / height]

    def show(ax: Any, tile: Any, text: str) -> None:
        ax.imshow(_tile_array(tile), interpolation="bilinear" if tile_px > 64 else "nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.text(
            0.02,
            0.98,
            text,
            transform=ax.transAxes,
            ha="left",
            va="top",
            fontsize=fs * 0.8,
            color="white",
            bbox={"facecolor": "black", "alpha": 0.6, "pad": 1.5, "linewidth": 0},
        )

    x_grid = left_text + side_w
    if side is not None:
        ax = fig.add_axes(box(left_text * 0.15, head, t, t))
        show(ax, side[0], side[1])
    for c, label in enumerate(col_labels):
        fig.text(
            (x_grid + c * (t + gap) + t / 2) / width,
            1.0 - head * 0.5 / height,
            label,
            ha="center",
            va="center",
            fontsize=fs,
        )
    for r, row in enumerate(tiles):
        y = head + r * (t + gap)
        fig.text(
            (x_grid - 0.08 * t) / width,
            1.0 - (y + t / 2) / height,
            row_labels[r],
            ha="right",
            va="center",
            fontsize=fs,
        )
        for c, tile in enumerate(row):
            ax = fig.add_axes(box(x_grid + c * (t + gap), y, t, t))
            show(ax, tile, f"{row_labels[r]} {col_labels[c]}")
    r = 0
    while r < n_rows:
        scale, r_end = scales[r], r
        while r_end + 1 < n_rows and scales[r_end + 1] == scale:
            r_end += 1
        if scale is not None:
            y0 = head + r * (t + gap) + 0.05 * t
            span = (r_end - r + 1) * (t + gap) - gap - 0.1 * t
            cax = fig.add_axes(box(x_grid + n_cols * (t + gap) + 0.08 * t, y0, 0.12 * t, span))
            mappable = ScalarMappable(norm=Normalize(scale.vmin, scale.vmax), cmap=scale.cmap)
            bar = fig.colorbar(mappable, cax=cax)
            bar.set_label(scale.label, fontsize=fs * 0.8)
            bar.ax.tick_params(labelsize=fs * 0.75)
        r = r_end + 1
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return atomic_write_bytes(Path(path), buf.getvalue())
