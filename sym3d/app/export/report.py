"""A single self-contained ``report.html`` for one inversion.

Every picture (and the orbit video, up to ``max_embed_bytes``) is embedded as a base64 data URI,
so the file can be moved or mailed alone; each one is also linked by its relative path, so the
full-size files open from the output folder. The page has no scripts and loads no external CSS,
JavaScript or fonts. All text (title, notes, metric names, config) is HTML-escaped.

Known image names get a fixed place and caption: ``photo`` (the original photo) first, beside
the estimated pose (angles and notes, from ``pose``), then ``input`` and ``reconstruction`` side by
side, ``mirror``, ``novel_grid``, ``depth``, ``orbit`` (``.mp4``/``.webm`` become a ``<video>``,
``.gif`` an image), ``loss``; any other names follow under "More images".
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sym3d.app.export._common import atomic_write_bytes
from sym3d.engine.result import ResultFiles
from sym3d.errors import UserInputError

__all__ = ["write_report", "KNOWN_IMAGES", "pose_angles"]

KNOWN_IMAGES: dict[str, tuple[str, str]] = {
    "photo": (
        "Photo",
        "The photo as given (downscaled for this page); the input below was cropped from it.",
    ),
    "input": ("Input", "The aligned input image the inversion saw."),
    "reconstruction": ("Reconstruction", "The inverted model rendered from the input camera."),
    "mirror": (
        "Mirror view",
        "Left: the mirrored input. Right: the model rendered from the mirrored camera. "
        "A symmetric face should look alike in both; SPI uses this pair as a proxy for novel-view fidelity.",
    ),
    "mirror_prior": (
        "What the symmetry prior was given",
        "The photo; its flip, SPI's pseudo label for the mirrored camera; the flip relit to the "
        "photo's light (the label with the mirror terms' relight option); the estimated shading "
        "(grey outside the face). Under a side light the plain flip shows the lit cheek on the "
        "wrong side; if the relit flip looks wrong, do not trust the relit presets on this photo.",
    ),
    "novel_grid": (
        "Novel views",
        "The model seen from other yaw angles (positive yaw shows the subject's left cheek).",
    ),
    "depth": (
        "Depth",
        "Expected depth from the input camera: near is red, far is blue; the background is grey.",
    ),
    "orbit": ("Orbit", "SPI's orbit: yaw and pitch swing around the head in a closed loop."),
    "loss": ("Loss curves", "Every loss term per optimisation step, one panel per stage."),
}

_MIME = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
}
_VIDEO = (".mp4", ".webm")

_CSS = """
:root { --fg: #1d2125; --muted: #5f6b76; --bg: #f6f7f9; --card: #ffffff; --line: #dde1e6; --accent: #2f6fde; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6e9ec; --muted: #9aa5b1; --bg: #15181c; --card: #1e2227; --line: #333a42; --accent: #7aa7ff; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 20px 48px; }
header h1 { font-size: 1.6em; margin: 0 0 4px; }
header p { margin: 0; color: var(--muted); }
section { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 16px 18px; margin: 18px 0; }
section h2 { font-size: 1.15em; margin: 0 0 10px; }
.row { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
figure { margin: 0; max-width: 100%; }
figure img, figure video { display: block; max-width: 100%; height: auto; border-radius: 6px; border: 1px solid var(--line); background: #808080; }
img.px { image-rendering: pixelated; }
figcaption { font-size: 0.86em; color: var(--muted); margin-top: 6px; max-width: 60ch; }
figcaption a { color: var(--accent); }
table { border-collapse: collapse; width: 100%; font-size: 0.93em; }
th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; width: 45%; }
table.matrix th, table.matrix td { width: auto; }
h3 { font-size: 0.95em; margin: 4px 0 6px; color: var(--muted); }
td.num { font-variant-numeric: tabular-nums; }
.two { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 18px; }
ul.notes { margin: 0; padding-left: 20px; }
details summary { cursor: pointer; font-weight: 600; }
pre { overflow-x: auto; background: var(--bg); padding: 12px; border-radius: 6px; font-size: 0.85em; line-height: 1.4; }
footer { color: var(--muted); font-size: 0.8em; text-align: center; margin-top: 28px; }
"""


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _resolve(out_dir: Path, rel: str | os.PathLike, what: str) -> Path:
    """``out_dir / rel`` after checking that ``rel`` is relative, stays inside and exists."""
    r = Path(rel)
    if r.is_absolute():
        raise UserInputError(
            f"{what}: expected a path relative to the report folder, got the absolute path {str(r)!r}."
        )
    full = (out_dir / r).resolve()
    if not full.is_relative_to(out_dir.resolve()):
        raise UserInputError(
            f"{what}: {str(r)!r} points outside the report folder {str(out_dir)!r}."
        )
    if not full.is_file():
        raise UserInputError(f"{what}: file {str(out_dir / r)!r} does not exist.")
    return full


def _href(rel: str | os.PathLike) -> str:
    return _esc(quote(Path(rel).as_posix()))


def _data_uri(path: Path, max_bytes: int) -> str | None:
    size = path.stat().st_size
    if size > max_bytes:
        return None
    mime = _MIME.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _display_width(path: Path) -> tuple[int | None, bool]:
    """``(width attribute, pixelated)``: small images are shown enlarged by an integer factor."""
    try:
        from PIL import Image

        with Image.open(path) as img:
            w, _h = img.size
    except Exception:  # noqa: BLE001 - a picture we cannot measure is shown at its own size
        return None, False
    scale = max(1, math.ceil(256 / w)) if w < 256 else 1
    return w * scale, scale > 1


def _format_value(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        if math.isinf(v):
            return "∞" if v > 0 else "-∞"
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_format_value(x) for x in v)
    return str(v)


def _flatten(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            rows.extend(_flatten(v, key + " / "))
        else:
            rows.append((key, v))
    return rows


_PRETTY = {
    "psnr": "PSNR (dB) ↑",
    "ssim": "SSIM ↑",
    "lpips": "LPIPS ↓",
    "reconstruction": "input view",
    "mirror": "mirror view",
}


def _is_flat(v: Any) -> bool:
    return isinstance(v, Mapping) and all(not isinstance(x, Mapping) for x in v.values())


def _matrix(rows: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    cols = list(rows[0][1])
    head = "".join(f'<th scope="col">{_esc(_PRETTY.get(c, c))}</th>' for c in cols)
    body = "".join(
        f'<tr><th scope="row">{_esc(_PRETTY.get(name, name))}</th>'
        + "".join(f'<td class="num">{_esc(_format_value(vals.get(c)))}</td>' for c in cols)
        + "</tr>"
        for name, vals in rows
    )
    return f'<table class="matrix"><tr><th></th>{head}</tr>{body}</table>'


def _metric_blocks(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The metrics as ``(heading, table)`` blocks.

    Scalars go together; flat mappings with the same keys become one matrix (e.g.
    PSNR/SSIM/LPIPS of the input and mirror views); other mappings get one table each.
    """
    blocks: list[tuple[str, str]] = []
    scalars = {k: v for k, v in metrics.items() if not isinstance(v, Mapping)}
    if scalars:
        blocks.append(("Overview", _table(scalars)))
    groups: dict[tuple[str, ...], list[tuple[str, Mapping[str, Any]]]] = {}
    for k, v in metrics.items():
        if _is_flat(v) and v:
            groups.setdefault(tuple(v), []).append((k, v))
    done: set[str] = set()
    for keys, members in groups.items():
        if len(members) > 1:
            image_like = set(keys) <= {"psnr", "ssim", "lpips"}
            blocks.append(
                (
                    "Image metrics" if image_like else ", ".join(n for n, _ in members),
                    _matrix(members),
                )
            )
            done.update(n for n, _ in members)
    for k, v in metrics.items():
        if isinstance(v, Mapping) and k not in done:
            blocks.append((k.replace("_", " ").capitalize(), _table(v)))
    return blocks


def _size_text(n: int) -> str:
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _video_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` of a video from its header (imageio-ffmpeg), or ``None``."""
    try:
        import imageio_ffmpeg

        gen = imageio_ffmpeg.read_frames(str(path))
        try:
            meta = next(gen)
        finally:
            gen.close()
        w, h = meta["size"]
        return int(w), int(h)
    except Exception:  # noqa: BLE001 - the page works without it
        return None


def _table(d: Mapping[str, Any]) -> str:
    if not d:
        return "<p>(none)</p>"
    body = "".join(
        f'<tr><th scope="row">{_esc(k)}</th><td class="num">{_esc(_format_value(v))}</td></tr>'
        for k, v in _flatten(d)
    )
    return f"<table>{body}</table>"


class _Media:
    def __init__(self, out_dir: Path, embed: bool, max_embed_bytes: int) -> None:
        self.out_dir, self.embed, self.max = out_dir, embed, max_embed_bytes
        self.notes: list[str] = []

    def figure(self, name: str, rel: str | os.PathLike, caption: str | None = None) -> str:
        full = _resolve(self.out_dir, rel, f"images[{name!r}]")
        title, default_caption = KNOWN_IMAGES.get(name, (name, ""))
        cap = caption if caption is not None else default_caption
        data = _data_uri(full, self.max) if self.embed else None
        if self.embed and data is None:
            self.notes.append(
                f"{Path(rel).as_posix()} is larger than {self.max / 1e6:.0f} MB and is linked, not embedded."
            )
        src = _esc(data) if data is not None else _href(rel)
        link = f'<a href="{_href(rel)}">{_esc(Path(rel).as_posix())}</a>'
        if full.suffix.lower() in _VIDEO:
            mime = _MIME[full.suffix.lower()]
            sources = f'<source src="{src}" type="{mime}">'
            if data is not None:
                sources += f'<source src="{_href(rel)}" type="{mime}">'
            size = _video_size(full)
            width = size[0] * max(1, math.ceil(256 / size[0])) if size else 384
            media = (
                f'<video width="{width}" controls loop autoplay muted playsinline preload="auto" aria-label="{_esc(title)}">{sources}'
                f"Your browser cannot play this video; open {link}.</video>"
            )
        else:
            width, pixelated = _display_width(full)
            attrs = f' width="{width}"' if width else ""
            cls = ' class="px"' if pixelated else ""
            media = f'<img src="{src}" alt="{_esc(title)}"{attrs}{cls} data-file="{_href(rel)}">'
        return f'<figure id="{_esc(name)}">{media}<figcaption>{_esc(cap)} File: {link}</figcaption></figure>'


def pose_angles(pose: Mapping[str, Any]) -> tuple[dict[str, float], str]:
    """Yaw, pitch and roll in degrees from a ``pose.json`` mapping, and where they come from.

    ``pose["angles_degrees"]`` (the pose estimator's angles) when present; otherwise the angles
    of the viewing direction of ``pose["camera"]`` (a 25-number EG3D label, e.g. one given with
    ``--cameras``), see :func:`sym3d.camera.yaw_pitch_roll`. Positive yaw shows the subject's
    left cheek. Returns ``({}, "")`` when neither is usable.
    """
    angles = pose.get("angles_degrees")
    if isinstance(angles, Mapping) and angles:
        out = {
            k: float(angles[k])
            for k in ("yaw", "pitch", "roll")
            if isinstance(angles.get(k), (int, float))
        }
        if out:
            return out, "estimated from the photo"
    camera = pose.get("camera")
    if isinstance(camera, Sequence) and len(camera) == 25:
        try:
            import torch

            from sym3d.camera import yaw_pitch_roll

            angs = yaw_pitch_roll(torch.tensor([float(v) for v in camera], dtype=torch.float64))
        except Exception:  # noqa: BLE001 - an unreadable label gets no angles, not a failed report
            return {}, ""
        names = ("yaw", "pitch", "roll")
        out = {k: math.degrees(float(a)) for k, a in zip(names, angs, strict=True)}
        if all(math.isfinite(v) for v in out.values()):
            return out, "of the given camera label"
    return {}, ""


def _pose_section(
    media: _Media, images: Mapping[str, str | os.PathLike], pose: Mapping[str, Any] | None
) -> str:
    """The original photo beside the pose table and the pose notes; ``""`` when neither exists."""
    fig = media.figure("photo", images["photo"]) if "photo" in images else ""
    facts = ""
    if pose is not None:
        angles, source = pose_angles(pose)
        if angles:
            rows = "".join(
                f'<tr><th scope="row">{_esc(k)}</th><td class="num">{v:+.1f}°</td></tr>'
                for k, v in angles.items()
            )
            facts += f"<h3>Head pose ({_esc(source)}, degrees)</h3><table>{rows}</table>"
        source_name = pose.get("image")
        if source_name and source_name != "<tensor>":
            facts += f"<p>Photo: {_esc(Path(str(source_name)).name)}</p>"
        pose_notes = [str(n) for n in pose.get("notes") or ()]
        if pose_notes:
            items = "".join(f"<li>{_esc(n)}</li>" for n in pose_notes)
            facts += f'<h3>Pose notes</h3><ul class="notes">{items}</ul>'
    if not fig and not facts:
        return ""
    heading = "Photo and pose" if fig and facts else ("Photo" if fig else "Pose")
    body = f"{fig}<div>{facts}</div>" if facts else fig
    return f'<section><h2>{heading}</h2><div class="row">{body}</div></section>'


def write_report(
    out_dir: str | os.PathLike,
    *,
    title: str,
    images: Mapping[str, str | os.PathLike],
    metrics: Mapping[str, Any],
    config_toml: str,
    summary: Mapping[str, Any],
    notes: Sequence[str] = (),
    files: Sequence[str | os.PathLike] = (),
    pose: Mapping[str, Any] | None = None,
    filename: str = ResultFiles.REPORT,
    embed: bool = True,
    max_embed_bytes: int = 25_000_000,
) -> Path:
    """Write ``out_dir/report.html`` (atomically) and return its path.

    Args:
        out_dir: the output folder; every path below is relative to it.
        title: page title.
        images: name -> relative path of a picture or video (see the module docstring for the
            names with a fixed place).
        metrics: values to show in the metrics table; nested mappings become ``a / b`` rows.
        config_toml: the resolved configuration (shown verbatim in a collapsible block).
        summary: run facts (steps, seconds, early stop, ...), shown as a table.
        notes: remarks shown as a list (warnings, fallbacks, ...).
        files: other relative paths to link under "Files" (mesh, latent, weights, ...).
        pose: the content of ``pose.json``: ``angles_degrees`` (yaw/pitch/roll), ``camera`` (the
            25-number label, used for the angles when there are none), ``notes`` (the pose
            estimator's remarks) and optionally ``image`` (the photo's name); shown with the
            ``photo`` image in the first section. See :func:`pose_angles`.
        filename: the report's file name inside ``out_dir``.
        embed: embed pictures and the video as data URIs (``False``: link them only).
        max_embed_bytes: files larger than this are linked, not embedded.

    Raises:
        sym3d.errors.UserInputError: an image or file path is absolute, leaves ``out_dir`` or
            does not exist.
    """
    od = Path(out_dir)
    if not od.is_dir():
        raise UserInputError(f"out_dir: {str(od)!r} is not a directory.")
    media = _Media(od, embed, max_embed_bytes)
    images = dict(images)
    parts: list[str] = []

    pose_html = _pose_section(media, images, pose)
    if pose_html:
        parts.append(pose_html)
    pair = [n for n in ("input", "reconstruction") if n in images]
    if pair:
        figs = "".join(media.figure(n, images[n]) for n in pair)
        heading = "Input vs reconstruction" if len(pair) == 2 else KNOWN_IMAGES[pair[0]][0]
        parts.append(f'<section><h2>{heading}</h2><div class="row">{figs}</div></section>')
    for name in ("mirror", "novel_grid", "depth", "orbit", "loss"):
        if name in images:
            parts.append(
                f"<section><h2>{_esc(KNOWN_IMAGES[name][0])}</h2>{media.figure(name, images[name])}</section>"
            )
    others = [n for n in images if n not in KNOWN_IMAGES]
    if others:
        figs = "".join(media.figure(n, images[n]) for n in others)
        parts.append(f'<section><h2>More images</h2><div class="row">{figs}</div></section>')

    blocks = (
        "".join(f"<div><h3>{_esc(h)}</h3>{t}</div>" for h, t in _metric_blocks(metrics))
        or "<p>(none)</p>"
    )
    parts.append(f'<section><h2>Metrics</h2><div class="two">{blocks}</div></section>')
    parts.append(f"<section><h2>Run summary</h2>{_table(summary)}</section>")
    all_notes = [*notes, *media.notes]
    if all_notes:
        items = "".join(f"<li>{_esc(n)}</li>" for n in all_notes)
        parts.append(f'<section><h2>Notes</h2><ul class="notes">{items}</ul></section>')
    if files:
        rows = []
        for rel in files:
            full = _resolve(od, rel, "files")
            rows.append(
                f'<tr><th scope="row"><a href="{_href(rel)}">{_esc(Path(rel).as_posix())}</a></th>'
                f'<td class="num">{_size_text(full.stat().st_size)}</td></tr>'
            )
        parts.append(f"<section><h2>Files</h2><table>{''.join(rows)}</table></section>")
    parts.append(
        "<section><details><summary>Configuration (config.resolved.toml)</summary>"
        f"<pre>{_esc(config_toml)}</pre></details></section>"
    )

    from sym3d import __version__

    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="sym3d {_esc(__version__)}">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head>\n"
        f"<body><main><header><h1>{_esc(title)}</h1><p>sym3d inversion report</p></header>\n"
        + "\n".join(parts)
        + f"\n<footer>Written by sym3d {_esc(__version__)} on {_esc(stamp)}. Self-contained: no scripts, no external resources.</footer>"
        "</main></body></html>\n"
    )
    return atomic_write_bytes(od / filename, page.encode("utf-8"))
