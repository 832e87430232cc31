"""Loss curves of an inversion, one panel per stage, as one PNG (Matplotlib, Agg, no pyplot state)."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sym3d.errors import UserInputError
from sym3d_extras.export._common import atomic_write_bytes, require

__all__ = ["plot_history", "loss_terms"]

_META = ("stage", "step", "lr", "seconds")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def loss_terms(history: Sequence[Mapping[str, Any]], *, include_diagnostics: bool = False) -> list[str]:
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
        raise UserInputError("history: expected rows with numeric loss terms, got none (was the inversion run for 0 steps?).")
    stages: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        stages.setdefault(str(r.get("stage", "run")), []).append(r)

    fig = Figure(figsize=(5.6 * len(stages), 4.4), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(stages), squeeze=False)[0]
    palette = [f"C{i}" for i in range(10)]
    colours = {t: ("black" if t == "total" else palette[i % len(palette)]) for i, t in enumerate(terms)}
    for ax, (stage, srows) in zip(axes, stages.items(), strict=True):
        all_vals: list[float] = []
        for term in terms:
            pts = [(r.get("step", i), r[term]) for i, r in enumerate(srows) if _is_number(r.get(term))]
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
            ax.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=min(3, len(handles)), frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return atomic_write_bytes(Path(path), buf.getvalue())
