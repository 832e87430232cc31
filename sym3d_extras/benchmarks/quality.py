"""SymHeads quality benchmark: heads x source yaws x asymmetry conditions x methods -> metrics at novel views.

For every (condition, head, source yaw) the scene is photographed at the source yaw (with its exact
camera, face mask and feature regions, as a pose estimator would deliver them), inverted with each
method, and the tuned generator is rendered at the target yaws and compared with the true scene:

* PSNR, SSIM and LPIPS (AlexNet, offline weights) inside the true face mask;
* depth MAE (ray distance, world units) inside the true face mask;
* ``mole``: mean absolute RGB error inside the true mole's visible region (the one-sided detail
  where it really is) and ``ghost``: the same at its mirrored spot, which must stay clean skin.

Stage 1 is shared by methods with the same stage-1 settings (same pivot), so comparisons differ
only by stage 2. Rows are appended to ``rows.csv`` as they finish; a re-run skips finished rows.
"""

from __future__ import annotations

import csv
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from sym3d.app.export._common import require

__all__ = [
    "CONDITIONS",
    "CONDITION_TOKENS",
    "DEFAULT_METHODS",
    "QualitySettings",
    "condition_asymmetry",
    "group_of",
    "parse_condition",
    "run_quality",
    "summarize",
    "write_summary",
]

DEFAULT_METHODS = (
    "w+",
    "pti",
    "pti-depth-reg",
    "spi",
    "spi-paper",
    "spi-no-relight",
    "spi-no-probe",
    "spi-no-anchor",
    "spi-no-mirror",
    "spi-no-warp",
    "spi-no-authentic-mask",
    "spi-no-depth-reg",
)


CONDITION_TOKENS: Mapping[str, Mapping[str, Any]] = {
    "detail": {"detail_amplitude": 1.0},
    "mole": {"mole_contrast": 0.75},
    "fringe": {"fringe_amount": 0.6},
    "sidelight": {"light_azimuth": 0.6},
    "sidelight-right": {"light_azimuth": -0.6},
    "toplight": {"light_elevation": 0.5},
    "lowlight": {"light_elevation": -0.6},
    "twolights": {"fill_strength": 0.6, "fill_azimuth": -0.9},
    "colourlight": {"light_colour": (1.0, 0.8, 0.55)},
}
"""The factors a condition name composes with ``+`` (fields of
:class:`~sym3d_extras.synthetic.AsymmetryConfig`; a factor not named is off): ``detail`` symmetric
fine detail, ``mole`` a mole on the subject's left cheek, ``fringe`` a one-sided fringe,
``sidelight``/``sidelight-right`` the light turned 0.6 rad toward the subject's left/right,
``toplight``/``lowlight`` the light raised by 0.5 rad/lowered by 0.6 rad, ``twolights`` a second
white light (0.6 of the key) 0.9 rad toward the subject's right, ``colourlight`` a warm key light
(RGB 1, 0.8, 0.55) under white ambient light."""


def parse_condition(name: str) -> dict[str, Any]:
    """Fields of :class:`~sym3d_extras.synthetic.AsymmetryConfig` for a condition name.

    A name is factors of :data:`CONDITION_TOKENS` joined by ``+``, e.g.
    ``detail+mole+sidelight-right+colourlight``; factors not named are off (no detail, no mole).

    Raises:
        ConfigError: an unknown, repeated or conflicting factor, or an empty name.
    """
    from sym3d.errors import ConfigError

    tokens = [t.strip() for t in name.split("+")]
    known = ", ".join(CONDITION_TOKENS)
    if not name.strip() or any(not t for t in tokens):
        raise ConfigError(
            f"condition {name!r}: expected factors joined by '+', e.g. 'detail+mole+sidelight'; "
            f"known factors: {known}."
        )
    fields: dict[str, Any] = {"detail_amplitude": 0.0, "mole_contrast": 0.0}
    owner: dict[str, str] = {}
    for token in tokens:
        if token not in CONDITION_TOKENS:
            raise ConfigError(
                f"condition {name!r}: unknown factor {token!r}; known factors: {known}."
            )
        for key, value in CONDITION_TOKENS[token].items():
            if key in owner:
                raise ConfigError(
                    f"condition {name!r}: factors {owner[key]!r} and {token!r} both set {key}; "
                    "name each factor once."
                )
            owner[key] = token
            fields[key] = value
    return fields


def condition_asymmetry(name: str) -> Any:
    """The :class:`~sym3d_extras.synthetic.AsymmetryConfig` of a condition name.

    See :func:`parse_condition`.
    """
    from sym3d_extras.synthetic import AsymmetryConfig

    return AsymmetryConfig(**parse_condition(name))


CONDITIONS: Mapping[str, Mapping[str, Any]] = {
    name: parse_condition(name)
    for name in (
        "detail+mole",
        "detail+mole+fringe",
        "detail+mole+sidelight",
        "detail+mole+sidelight-right",
        "detail+mole+toplight",
        "detail+mole+lowlight",
        "detail+mole+twolights",
        "detail+mole+colourlight",
        "detail+mole+sidelight+colourlight",
    )
}
"""Named conditions (fields of :class:`~sym3d_extras.synthetic.AsymmetryConfig`); any other
``+``-composition of :data:`CONDITION_TOKENS` is accepted too (:func:`parse_condition`)."""

FIELDS = (
    "condition",
    "head",
    "source_yaw",
    "method",
    "target_yaw",
    "group",
    "psnr",
    "ssim",
    "lpips",
    "depth_mae",
    "mole_err",
    "ghost_err",
    "seconds",
    "mirror_left_out",
    "render_asymmetry",
)
METRICS = ("psnr", "ssim", "lpips", "depth_mae", "mole_err", "ghost_err")


@attrs.frozen(kw_only=True)
class QualitySettings:
    """What to run.

    Attributes:
        heads: scene seeds (reported heads; hyperparameters were chosen on other seeds).
        source_yaws: degrees.
        target_yaws: degrees.
        methods: preset names.
        conditions: condition names (:func:`parse_condition`, e.g. from :data:`CONDITIONS`).
        size: image side of the generator and the scene.
        overrides: config overrides applied to every method (on top of the generator's recommendations).
        seed: engine seed.
        lpips: compute LPIPS (needs the ``lpips`` extra).
    """

    heads: tuple[int, ...] = tuple(range(8))
    source_yaws: tuple[float, ...] = (0.0, 15.0, 30.0, 45.0, 60.0)
    target_yaws: tuple[float, ...] = (-60.0, -45.0, -30.0, -15.0, 0.0, 15.0, 30.0, 45.0, 60.0)
    methods: tuple[str, ...] = DEFAULT_METHODS
    conditions: tuple[str, ...] = ("detail+mole",)
    size: int = 64
    overrides: tuple[str, ...] = ()
    seed: int = 0
    lpips: bool = True


def group_of(source: float, target: float) -> str:
    """``"near"`` (|target - source| <= 15 deg), ``"mirror"`` (target = -source, source != 0) or ``"far"``."""
    if source != 0 and abs(target + source) < 1e-6:
        return "mirror"
    return "near" if abs(target - source) <= 15.0 + 1e-6 else "far"


def _stage1_key(cfg: Any) -> str:
    """Everything but stage 2 and the preset's name: methods with equal keys share one pivot.

    Every stage-1 setting counts (a term's options such as ``mirror_view.relight`` too), so a
    method never reuses a pivot it would not have computed itself.
    """
    import attrs

    fields = attrs.asdict(cfg, recurse=False)
    fields.pop("tune")
    fields.pop("preset")
    return repr(sorted(fields.items()))


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    w = mask.expand_as(x)
    total = float(w.sum())
    return float((x * w).sum() / total) if total > 1e-6 else float("nan")


def mirror_left_out(history: Iterable[Mapping[str, Any]]) -> float:
    """Share of stage 1's gated steps on which the relit mirror was left out (``nan``: no gate).

    Read from the ``mirror_view/_left_out`` entries of a result's history (``docs/engine.md``,
    ``max_correction``); a method that reused another's pivot has no stage-1 history of its own.
    """
    flags = [
        float(h["mirror_view/_left_out"])
        for h in history
        if h.get("stage") == "latent" and "mirror_view/_left_out" in h
    ]
    return sum(flags) / len(flags) if flags else float("nan")


def stage1_render_asymmetry(history: Iterable[Mapping[str, Any]]) -> float:
    """The light probe's reading in stage 1 (``nan``: no probe ran).

    Read from the first ``mirror_view/_render_asymmetry`` entry of a result's history
    (``docs/engine.md``, ``max_render_asymmetry``): above the threshold the probe, not the pair
    gate, left the mirror out.
    """
    for h in history:
        if h.get("stage") == "latent" and "mirror_view/_render_asymmetry" in h:
            return float(h["mirror_view/_render_asymmetry"])
    return float("nan")


def _header(path: Path) -> list[str] | None:
    """The columns of an existing ``rows.csv`` (files from before a column was added keep theirs)."""
    if not path.exists():
        return None
    with open(path, newline="") as f:
        return next(csv.reader(f), None)


def _read_done(path: Path) -> set[tuple]:
    if not path.exists():
        return set()
    with open(path, newline="") as f:
        return {
            (r["condition"], int(r["head"]), float(r["source_yaw"]), r["method"])
            for r in csv.DictReader(f)
        }


def run_quality(
    settings: QualitySettings,
    out_dir: str | Path,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> Path:
    """Run the benchmark, appending to ``out_dir/rows.csv``; returns its path.

    ``progress(label, done, total)`` is called after each inversion.
    """
    import sym3d
    from sym3d.app import metrics
    from sym3d.camera import look_at
    from sym3d.config import apply_overrides
    from sym3d.engine import resolve_config
    from sym3d.image import from_model_range
    from sym3d.protocols import generator_info
    from sym3d_extras.synthetic import SymHeadsScene, build_symheads

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.csv"
    done = _read_done(rows_path)
    header = _header(rows_path)
    new_file = header is None
    world = build_symheads(img_resolution=settings.size, neural_resolution=settings.size)
    targets = look_at(torch.tensor([math.radians(t) for t in settings.target_yaws]), 0.0)
    lpips_fn = None
    if settings.lpips:
        from sym3d_extras.perceptual import LPIPS

        lpips_fn = LPIPS("alex", resize_to=None)
    jobs = [
        (c, h, s) for c in settings.conditions for h in settings.heads for s in settings.source_yaws
    ]
    total = len(jobs) * len(settings.methods)
    count = 0
    with open(rows_path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header or FIELDS, extrasaction="ignore")
        if new_file:
            writer.writeheader()
        for cond, head, src in jobs:
            asym = condition_asymmetry(cond)
            scene = SymHeadsScene(head, asym, world=world, resolution=settings.size)
            cam = look_at(math.radians(src), 0.0)[None]
            obs = scene.face_observation(cam)
            truth = scene.render(targets)
            pivots: dict[str, tuple[torch.Tensor, float, float]] = {}
            for method in settings.methods:
                count += 1
                if (cond, head, float(src), method) in done:
                    continue
                t0 = time.perf_counter()
                cfg = resolve_config(
                    method,
                    None,
                    settings.overrides,
                    recommended=generator_info(world).recommended_overrides,
                )
                cfg = apply_overrides(cfg, {"seed": settings.seed})
                key = _stage1_key(cfg)
                pivot, left_out, probed = pivots.get(key, (None, float("nan"), float("nan")))
                result = sym3d.invert(
                    observation=obs, generator=world, config=cfg, pivot=pivot, progress="off"
                )
                if pivot is None:
                    left_out = mirror_left_out(result.history)
                    probed = stage1_render_asymmetry(result.history)
                    pivots[key] = (result.ws, left_out, probed)
                tuned = result.apply(world)
                with torch.no_grad():
                    pred = tuned.render(result.ws, targets[None])
                img = from_model_range(pred.image[0]).clamp(0, 1)
                mask = truth.face_mask
                psnr = metrics.psnr(img, truth.image, mask=mask)
                ssim = metrics.ssim(img, truth.image, mask=mask)
                lp = (
                    lpips_fn(img * mask, truth.image * mask, reduction="none")
                    if lpips_fn is not None
                    else torch.full((len(targets),), float("nan"))
                )
                seconds = time.perf_counter() - t0
                err = (img - truth.image).abs().mean(1, keepdim=True)
                for i, tyaw in enumerate(settings.target_yaws):
                    depth_err = (pred.depth[0, i] - truth.depth[i]).abs()
                    writer.writerow(
                        {
                            "condition": cond,
                            "head": head,
                            "source_yaw": src,
                            "method": method,
                            "target_yaw": tyaw,
                            "group": group_of(src, tyaw),
                            "psnr": f"{float(psnr[i]):.4f}",
                            "ssim": f"{float(ssim[i]):.5f}",
                            "lpips": f"{float(lp[i]):.5f}",
                            "depth_mae": f"{_masked_mean(depth_err, mask[i]):.6f}",
                            "mole_err": f"{_masked_mean(err[i], truth.mole_mask[i]):.5f}",
                            "ghost_err": f"{_masked_mean(err[i], truth.ghost_mask[i]):.5f}",
                            "seconds": f"{seconds:.2f}",
                            "mirror_left_out": f"{left_out:.3f}",
                            "render_asymmetry": f"{probed:.4f}",
                        }
                    )
                f.flush()
                if progress is not None:
                    progress(f"{cond} head {head} yaw {src:g} {method}", count, total)
    return rows_path


def _load_rows(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ("source_yaw", "target_yaw", *METRICS, "seconds"):
            r[k] = float(r[k])
        r["head"] = int(r["head"])
    return rows


def summarize(
    rows_path: str | Path, *, groups: Iterable[str] = ("near", "far", "mirror")
) -> list[dict[str, Any]]:
    """Per (condition, source yaw, group, method): mean and 95% CI over heads of each metric.

    Each head contributes one value per cell: its mean over the target views of the group.
    """
    from sym3d.app.metrics import confidence_interval

    rows = _load_rows(Path(rows_path))
    per_head: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        per_head[(r["condition"], r["source_yaw"], r["group"], r["method"], r["head"])].append(r)
    cells: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (cond, src, grp, method, _head), rs in per_head.items():
        for m in METRICS:
            vals = [r[m] for r in rs if not math.isnan(r[m])]
            if vals:
                cells[(cond, src, grp, method)][m].append(sum(vals) / len(vals))
    out = []
    for (cond, src, grp, method), metrics_ in sorted(
        cells.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[0][3])
    ):
        if grp not in groups:
            continue
        row: dict[str, Any] = {
            "condition": cond,
            "source_yaw": src,
            "group": grp,
            "method": method,
            "heads": len(metrics_["psnr"]),
        }
        for m, vals in metrics_.items():
            ci = confidence_interval(vals, nan_policy="omit") if len(vals) > 1 else None
            row[m] = sum(vals) / len(vals)
            row[f"{m}_ci"] = (ci.high - ci.low) / 2 if ci is not None else float("nan")
        out.append(row)
    return out


CLAIMS = (
    # (metric, method, baseline, better): SPI's central claims on far views
    ("psnr", "spi", "pti", "higher"),
    ("depth_mae", "spi", "pti", "lower"),
    ("psnr", "spi", "pti-depth-reg", "higher"),
    ("depth_mae", "spi", "pti-depth-reg", "lower"),
)


def paired_differences(
    rows_path: str | Path,
    *,
    group: str = "far",
    min_source: float = 30.0,
    claims: Sequence[tuple[str, str, str, str]] = CLAIMS,
) -> list[dict[str, Any]]:
    """Paired per-head differences ``method - baseline`` of group means, with 95% CIs over heads.

    Pairing by head removes head-to-head variation (the same head, source view and target views
    for both methods). Also reports the ghost-mole ratio ``method / pti`` averaged over all views
    where the ghost spot is visible.
    """
    from sym3d.app.metrics import confidence_interval

    rows = _load_rows(Path(rows_path))
    means: dict[tuple, float] = {}
    acc: dict[tuple, list[float]] = defaultdict(list)
    ghost: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        if r["group"] == group:
            for m in METRICS:
                if not math.isnan(r[m]):
                    acc[(r["condition"], r["source_yaw"], r["method"], r["head"], m)].append(r[m])
        if not math.isnan(r["ghost_err"]):
            ghost[(r["condition"], r["source_yaw"], r["method"], r["head"])].append(r["ghost_err"])
    for k, vals in acc.items():
        means[k] = sum(vals) / len(vals)
    out = []
    keys = sorted({(c, s) for (c, s, _m, _h, _x) in acc if s >= min_source})
    for cond, src in keys:
        heads = sorted({h for (c, s, _m, h, _x) in acc if (c, s) == (cond, src)})
        for metric, method, base, better in claims:
            diffs = [
                means[(cond, src, method, h, metric)] - means[(cond, src, base, h, metric)]
                for h in heads
                if (cond, src, method, h, metric) in means and (cond, src, base, h, metric) in means
            ]
            if not diffs:
                continue
            ci = confidence_interval(diffs) if len(diffs) > 1 else None
            mean = sum(diffs) / len(diffs)
            holds = (mean > 0 if better == "higher" else mean < 0) and (
                ci is None or (ci.low > 0 if better == "higher" else ci.high < 0)
            )
            out.append(
                {
                    "condition": cond,
                    "source_yaw": src,
                    "claim": f"{metric}: {method} - {base}",
                    "better": better,
                    "heads": len(diffs),
                    "mean": mean,
                    "ci_low": ci.low if ci else float("nan"),
                    "ci_high": ci.high if ci else float("nan"),
                    "significant": holds,
                }
            )
        g_spi = [
            sum(ghost[(cond, src, "spi", h)]) / len(ghost[(cond, src, "spi", h)])
            for h in heads
            if ghost.get((cond, src, "spi", h))
        ]
        g_pti = [
            sum(ghost[(cond, src, "pti", h)]) / len(ghost[(cond, src, "pti", h)])
            for h in heads
            if ghost.get((cond, src, "pti", h))
        ]
        if g_spi and g_pti:
            ratio = (sum(g_spi) / len(g_spi)) / max(sum(g_pti) / len(g_pti), 1e-9)
            out.append(
                {
                    "condition": cond,
                    "source_yaw": src,
                    "claim": "ghost_err: spi / pti (all views)",
                    "better": "<= 1.5",
                    "heads": len(g_spi),
                    "mean": ratio,
                    "ci_low": float("nan"),
                    "ci_high": float("nan"),
                    "significant": ratio <= 1.5,
                }
            )
    return out


def write_summary(
    rows_path: str | Path, out_dir: str | Path, *, methods: Sequence[str] | None = None
) -> dict[str, Path]:
    """Write ``summary.csv``, ``summary.md`` and one plot per metric (metric vs target yaw per method)."""
    out = Path(out_dir)
    summary = summarize(rows_path)
    paths: dict[str, Path] = {}
    cols = [
        "condition",
        "source_yaw",
        "group",
        "method",
        "heads",
        *[x for m in METRICS for x in (m, f"{m}_ci")],
    ]
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in summary:
            w.writerow({k: r.get(k, "") for k in cols})
    paths["summary_csv"] = out / "summary.csv"
    lines = []
    fmt = {
        "psnr": "{:.2f}",
        "ssim": "{:.3f}",
        "lpips": "{:.3f}",
        "depth_mae": "{:.4f}",
        "mole_err": "{:.3f}",
        "ghost_err": "{:.3f}",
    }
    for cond in sorted({r["condition"] for r in summary}):
        lines.append(f"\n### condition: {cond}\n")
        lines.append(
            "| source yaw | group | method | heads | PSNR (dB) | SSIM | LPIPS | depth MAE | mole err | ghost err |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for r in [r for r in summary if r["condition"] == cond]:
            if methods and r["method"] not in methods:
                continue
            cells = []
            for m in METRICS:
                v, ci = r.get(m, float("nan")), r.get(f"{m}_ci", float("nan"))
                cells.append(
                    fmt[m].format(v) + ("" if math.isnan(ci) else " ± " + fmt[m].format(ci))
                )
            lines.append(
                f"| {r['source_yaw']:g} | {r['group']} | {r['method']} | {r['heads']} | "
                + " | ".join(cells)
                + " |"
            )
    claims = paired_differences(rows_path)
    if claims:
        lines.append(
            "\n### Claims (far views, source yaw >= 30): paired differences over heads, 95% CI\n"
        )
        lines.append("| condition | source yaw | claim | want | heads | mean | 95% CI | holds |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for c in claims:
            ci = "" if math.isnan(c["ci_low"]) else f"[{c['ci_low']:+.4g}, {c['ci_high']:+.4g}]"
            lines.append(
                f"| {c['condition']} | {c['source_yaw']:g} | {c['claim']} | {c['better']} | {c['heads']} | {c['mean']:+.4g} | {ci} | {'yes' if c['significant'] else 'no'} |"
            )
    (out / "summary.md").write_text(
        "# SymHeads quality benchmark (mean ± 95% CI over heads)\n" + "\n".join(lines) + "\n"
    )
    paths["summary_md"] = out / "summary.md"
    paths.update(_plots(Path(rows_path), out))
    return paths


def _plots(rows_path: Path, out: Path) -> dict[str, Path]:
    matplotlib = require("matplotlib", "the quality plots", extra="bench")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _load_rows(rows_path)
    paths = {}
    sources = sorted({r["source_yaw"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for metric in METRICS:
        fig, axes = plt.subplots(
            1, len(sources), figsize=(3.2 * len(sources), 3.0), sharey=True, squeeze=False
        )
        for ax, src in zip(axes[0], sources, strict=True):
            for method in methods:
                pts: dict[float, list[float]] = defaultdict(list)
                for r in rows:
                    if (
                        r["source_yaw"] == src
                        and r["method"] == method
                        and not math.isnan(r[metric])
                    ):
                        pts[r["target_yaw"]].append(r[metric])
                if pts:
                    xs = sorted(pts)
                    ax.plot(
                        xs, [sum(pts[x]) / len(pts[x]) for x in xs], marker="o", ms=3, label=method
                    )
            ax.axvline(src, color="k", lw=0.6, ls=":")
            ax.set_title(f"source yaw {src:g}°")
            ax.set_xlabel("target yaw (°)")
        axes[0][0].set_ylabel(metric)
        if axes[0][-1].get_legend_handles_labels()[0]:
            axes[0][-1].legend(fontsize=6)
        fig.tight_layout()
        path = out / f"plot_{metric}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths[f"plot_{metric}"] = path
    return paths
