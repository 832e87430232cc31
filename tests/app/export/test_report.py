from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sym3d.app.export._common import save_png
from sym3d.app.export.report import write_report
from sym3d.errors import UserInputError

from .._browser import CHROMIUM_MISSING, chromium, screenshot
from ._html import data_uris, parse, references

EVIL = '<script>alert("x")</script> & </section>'


def _folder(tmp_path: Path, video: str = "gif") -> dict[str, str]:
    from sym3d.app.export.video import write_video

    (tmp_path / "views").mkdir()
    g = torch.Generator().manual_seed(0)
    for name in ("input", "reconstruction", "mirror", "novel_grid"):
        save_png(
            torch.rand(3, 24, 24 if name != "novel_grid" else 72, generator=g),
            tmp_path / "views" / f"{name}.png",
        )
    save_png(torch.rand(3, 24, 24, generator=g), tmp_path / "depth.png")
    save_png(torch.rand(3, 40, 90, generator=g), tmp_path / "loss.png")
    frames = torch.rand(4, 3, 16, 16, generator=g)
    vid = write_video(frames, tmp_path / f"orbit.{video}", fps=10, format=video)  # type: ignore[arg-type]
    (tmp_path / "mesh.ply").write_bytes(b"ply\n")
    return {
        "input": "views/input.png",
        "reconstruction": "views/reconstruction.png",
        "mirror": "views/mirror.png",
        "novel_grid": "views/novel_grid.png",
        "depth": "depth.png",
        "orbit": vid.name,
        "loss": "loss.png",
    }


def _write(tmp_path, images, **kw):
    args = dict(
        title=f"report {EVIL}",
        images=images,
        metrics={
            "reconstruction": {"psnr": 31.2, "ssim": 0.9, "lpips": None},
            "mirror": {"psnr": 28.0, "ssim": 0.8, "lpips": float("nan")},
            "mesh": {"vertices": 10, EVIL: 1},
        },
        config_toml=f'preset = "spi"\nnote = "{EVIL}"\n',
        summary={"latent_seconds": 1.25, "tune_early_stopped": False},
        notes=[EVIL, "second note"],
    )
    args.update(kw)
    return write_report(tmp_path, **args)


def test_report_is_valid_self_contained_and_escaped(tmp_path):
    images = _folder(tmp_path)
    path = _write(tmp_path, images, files=["mesh.ply"])
    assert path == tmp_path / "report.html"
    page = parse(path)
    tags = [t for t, _ in page.tags]
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    text = "".join(page.text)
    assert EVIL in text  # shown as text (notes, title, config, metric names), never as markup
    assert text.count(EVIL) >= 4
    raw = path.read_text()
    assert "<script>" not in raw and "&lt;script&gt;" in raw
    # everything referenced exists; nothing external
    refs = references(page)
    assert refs, "files are also linked by relative path"
    for ref in refs:
        assert "://" not in ref and not ref.startswith("/")
        assert (tmp_path / ref).is_file(), ref
    assert {"views/input.png", "orbit.gif", "mesh.ply", "loss.png"} <= set(refs)
    # every picture is embedded and decodes to the file's bytes
    embedded = data_uris(page)
    imgs = [(t, m, b) for t, m, b in embedded if t == "img"]
    assert len(imgs) == 7  # 6 pictures + the GIF orbit
    by_file = {a.get("data-file"): a.get("src") for t, a in page.tags if t == "img"}
    assert by_file and all(src.startswith("data:image/") for src in by_file.values())
    payloads = {b for _, _, b in imgs}
    assert (tmp_path / "views" / "novel_grid.png").read_bytes() in payloads
    assert (tmp_path / "orbit.gif").read_bytes() in payloads
    assert "details" in tags and "pre" in tags
    assert "n/a" in text and "31.2" in text


def test_report_mp4_becomes_a_video_tag(tmp_path):
    from sym3d.app.export.video import ffmpeg_status

    if not ffmpeg_status()[0]:
        pytest.skip("no ffmpeg")
    images = _folder(tmp_path, video="mp4")
    page = parse(_write(tmp_path, images))
    videos = [a for t, a in page.tags if t == "video"]
    assert len(videos) == 1 and "controls" in videos[0] and "loop" in videos[0]
    sources = [a for t, a in page.tags if t == "source"]
    assert (
        sources[0]["src"].startswith("data:video/mp4;base64,") and sources[0]["type"] == "video/mp4"
    )
    assert sources[1]["src"] == "orbit.mp4"
    mp4 = [b for t, m, b in data_uris(page) if t == "source"]
    assert mp4 == [(tmp_path / "orbit.mp4").read_bytes()]


def test_large_files_are_linked_not_embedded(tmp_path):
    images = _folder(tmp_path)
    page = parse(_write(tmp_path, images, max_embed_bytes=10))
    assert not data_uris(page)
    assert "is larger than" in "".join(page.text)
    for ref in references(page):
        assert (tmp_path / ref).is_file()


def test_partial_report(tmp_path):
    save_png(torch.rand(3, 8, 8), tmp_path / "x.png")
    page = parse(_write(tmp_path, {"custom": "x.png"}, metrics={}, summary={}, notes=[]))
    assert "More images" in "".join(page.text)


@pytest.mark.parametrize("bad", ["/etc/passwd", "../outside.png", "missing.png"])
def test_bad_paths_are_refused(tmp_path, bad):
    (tmp_path / "sub").mkdir()
    save_png(torch.rand(3, 8, 8), tmp_path / "outside.png")
    with pytest.raises(UserInputError):
        _write(tmp_path / "sub", {"input": bad})
    with pytest.raises(UserInputError):
        _write(tmp_path / "sub", {}, files=[bad])
    assert not (tmp_path / "sub" / "report.html").exists()


@pytest.mark.browser
@pytest.mark.skipif(chromium() is None, reason=CHROMIUM_MISSING)
def test_report_renders_in_headless_chromium(tmp_path):
    images = _folder(tmp_path)
    report = _write(tmp_path, images)
    img = screenshot(report, tmp_path / "shot.png", width=1000, height=1400)
    assert img.shape[:2] == (1400, 1000)
    assert img.std() > 10  # not blank: text, tables and pictures
    # the embedded random-noise pictures are drawn (many distinct colours somewhere on the page)
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 1000


def _section(page, heading: str) -> str:
    """The text of the section whose ``<h2>`` is ``heading`` (up to the next ``<h2>``)."""
    text = "\x00".join(page.text)
    start = text.index(heading)
    return text[start : text.find("Input vs reconstruction", start)]


def test_photo_angles_and_pose_notes_are_shown(tmp_path):
    images = _folder(tmp_path)
    save_png(torch.rand(3, 30, 40), tmp_path / "views" / "photo.png")
    pose = {
        "image": "/home/someone/photos/anna.jpg",
        "camera": [0.0] * 25,
        "angles_degrees": {"yaw": 12.34, "pitch": -5.0, "roll": 1.5},
        "notes": ["the head is turned 12 degrees (yaw)", EVIL],
    }
    page = parse(_write(tmp_path, {"photo": "views/photo.png", **images}, pose=pose))
    heads = [t for t, _ in page.tags if t == "h2"]
    assert heads and page.text.index("Photo and pose") < page.text.index("Input vs reconstruction")
    section = _section(page, "Photo and pose")
    assert "+12.3°" in section and "-5.0°" in section and "+1.5°" in section
    assert "estimated from the photo" in section
    assert "the head is turned 12 degrees (yaw)" in section and EVIL in section
    assert "anna.jpg" in section and "/home/someone" not in section  # the name, not the path
    photo = [a for t, a in page.tags if t == "img" and a.get("data-file") == "views/photo.png"]
    assert len(photo) == 1 and photo[0]["src"].startswith("data:image/png;base64,")
    payloads = [b for t, _, b in data_uris(page) if t == "img"]
    assert (tmp_path / "views" / "photo.png").read_bytes() in payloads


def test_angles_of_a_given_camera_label(tmp_path):
    import math

    from sym3d.camera import look_at

    # orbit_center=None: the camera orbits its look-at point, so its view angles are the inputs
    cam = look_at(math.radians(20.0), math.radians(-10.0), orbit_center=None).reshape(-1).tolist()
    notes = ["camera label given; no pose estimation"]
    pose = {"camera": cam, "angles_degrees": {}, "notes": notes}
    page = parse(_write(tmp_path, {}, pose=pose))
    assert "Pose" in page.text  # the section's heading (no photo given)
    section = _section(page, "Pose")
    assert "of the given camera label" in section
    i = page.text.index("yaw")
    rows = dict(zip(page.text[i : i + 6 : 2], page.text[i + 1 : i + 6 : 2], strict=True))
    assert float(rows["yaw"].rstrip("°")) == pytest.approx(20.0, abs=0.05)
    assert float(rows["pitch"].rstrip("°")) == pytest.approx(-10.0, abs=0.05)
    assert float(rows["roll"].rstrip("°")) == pytest.approx(0.0, abs=0.05)
    assert "camera label given; no pose estimation" in section


def test_no_pose_no_photo_no_section(tmp_path):
    page = parse(_write(tmp_path, _folder(tmp_path)))
    assert not any(t in ("Photo and pose", "Pose", "Photo") for t in page.text)
