"""The report of a photo run: titled with the result's name, with the photo, the angles and the notes.

SymHeads with a known camera label and two steps per stage (no pose estimator, a few seconds).
"""

from __future__ import annotations

import math
import re

import torch

from sym3d.camera import look_at
from sym3d.image import save_image
from sym3d_extras.pipeline import process_photo
from sym3d_extras.synthetic import SymHeadsGenerator, SymHeadsScene
from tests.extras.batch.conftest import FAST_OVERRIDES
from tests.extras.export._html import parse


def test_report_title_photo_angles_and_notes(tmp_path):
    world = SymHeadsGenerator()
    cam = look_at(math.radians(-15.0), 0.0)
    photo = tmp_path / "Anna Smith.png"
    with torch.no_grad():
        save_image(SymHeadsScene(0, world=world).render(cam[None], resolution=32).image, photo)
    out = tmp_path / "out" / "anna"
    outcome = process_photo(
        photo,
        out,
        generator=world,
        camera=cam,
        overrides=FAST_OVERRIDES,
        export=("views", "metrics", "report"),
        export_options={"lpips": False},
        device="cpu",
    )
    assert outcome.out_dir == str(out)
    page = parse(out / "report.html")
    raw = (out / "report.html").read_text()
    assert re.search(r"<title>(.*?)</title>", raw).group(1) == "sym3d: anna"
    assert re.search(r"<h1>(.*?)</h1>", raw).group(1) == "sym3d: anna"
    assert ".partial" not in raw
    photo_tags = [a for t, a in page.tags if t == "img" and a.get("data-file") == "views/photo.jpg"]
    assert len(photo_tags) == 1 and photo_tags[0]["src"].startswith("data:image/jpeg;base64,")
    assert (out / "views" / "photo.jpg").is_file()
    text = "\x00".join(page.text)
    assert "Photo and pose" in text and "Anna Smith.png" in text
    assert "camera label given; no pose estimation" in text  # FaceObservation.notes, via pose.json
    i = page.text.index("yaw")
    assert float(page.text[i + 1].rstrip("°")) < -5.0  # the label's yaw is -15 degrees about the origin
