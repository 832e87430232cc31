"""Fixtures of the batch tests: a few rendered SymHeads heads with their camera labels, tiny settings.

Every image takes about 1-3 s on one CPU thread (2 steps per stage, MSE instead of LPIPS, no
contextual loss, only views + metrics exported without LPIPS).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from sym3d.app.batch import BatchSettings, JobSpec

FAST_OVERRIDES = (
    "latent.steps=2",
    "tune.steps=2",
    "tune.aux_every=1",
    "tune.num_views=1",
    "perceptual=mse",
    "tune.terms.mirror_regions.enabled=false",
    "latent.mean_samples=16",
)
FAST_CLI = [arg for o in FAST_OVERRIDES for arg in ("--set", o)]
HEADS = 3


def fast_spec(**changes) -> JobSpec:
    """The tiny settings used by every batch test (known cameras: no pose estimator)."""
    options = {
        "generator": "symheads",
        "pose": None,
        "overrides": FAST_OVERRIDES,
        "export": ("views", "metrics"),
        "export_options": {"lpips": False},
    }
    options.update(changes)
    return JobSpec(**options)


def fast_settings(input_dir: Path, out_dir: Path, **changes) -> BatchSettings:
    options = {
        "input_dir": input_dir,
        "out_dir": out_dir,
        "spec": fast_spec(),
        "cameras": input_dir / "dataset.json",
        "device": "cpu",
        "workers": 2,
        "threads": 1,
    }
    options.update(changes)
    return BatchSettings(**options)


@pytest.fixture(scope="session")
def symheads_images(tmp_path_factory) -> Path:
    """``head0.png``... rendered at known cameras, plus ``dataset.json`` with their labels (made once).

    32 px renders (the inversion resizes them to the generator's 64 px): a quarter of the cost.
    """
    import torch

    from sym3d.camera import look_at
    from sym3d.image import save_image
    from sym3d_extras.synthetic import SymHeadsGenerator, SymHeadsScene

    folder = tmp_path_factory.mktemp("symheads-inputs")
    world = SymHeadsGenerator()
    labels = []
    for i in range(4):
        cam = look_at(math.radians(-20 + 15 * i), 0.0)
        with torch.no_grad():
            save_image(
                SymHeadsScene(i, world=world).render(cam[None], resolution=32).image,
                folder / f"head{i}.png",
            )
        labels.append([f"head{i}.png", cam.reshape(-1).tolist()])
    (folder / "dataset.json").write_text(json.dumps({"labels": labels}))
    return folder


def copy_inputs(
    src: Path, dest: Path, heads: int = HEADS, *, corrupt: bool = False, unlabelled: bool = False
) -> Path:
    """A fresh input folder with ``heads`` heads (and optionally a corrupt file and an image without a label)."""
    dest.mkdir(parents=True, exist_ok=True)
    labels = json.loads((src / "dataset.json").read_text())["labels"][:heads]
    for name, _ in labels:
        shutil.copy(src / name, dest / name)
    if corrupt:
        (dest / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
        labels.append(["corrupt.png", labels[0][1]])
    if unlabelled:
        shutil.copy(src / "head3.png", dest / "nolabel.png")
    (dest / "dataset.json").write_text(json.dumps({"labels": labels}))
    return dest


def read_rows(manifest: Path) -> dict[str, dict]:
    """The manifest's image rows by key (a separate read-only look, as another process would)."""
    db = sqlite3.connect(manifest, timeout=30)
    db.row_factory = sqlite3.Row
    try:
        return {r["key"]: dict(r) for r in db.execute("SELECT * FROM images")}
    finally:
        db.close()


def read_events(manifest: Path) -> list[dict]:
    db = sqlite3.connect(manifest, timeout=30)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM events ORDER BY id")]
    finally:
        db.close()


def kill_worker_of(manifest: Path, key: str, stop: threading.Event, timeout: float = 900.0) -> dict:
    """Wait until ``key`` is running, then SIGKILL its worker process; returns what was killed.

    Waits until the batch ends (``stop``) or ``timeout`` seconds: on a loaded machine starting Ray
    and loading the generators alone can take minutes.

    The worker's pid is the manifest's ``worker`` column (``host:pid``), the same for a local
    worker process and a Ray actor.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set():
        if manifest.exists():
            try:
                row = read_rows(manifest).get(key)
            except sqlite3.Error:
                row = None
            if row and row["status"] == "running" and row["worker"]:
                pid = int(row["worker"].rsplit(":", 1)[1])
                os.kill(pid, signal.SIGKILL)
                return {"key": key, "pid": pid, "worker": row["worker"]}
        time.sleep(0.02)
    return {}


def run_with_kill(settings: BatchSettings, key: str):
    """Run the batch in this process while another thread kills the worker of ``key`` mid-image."""
    from sym3d.app.batch import run_batch

    killed: dict = {}
    done = threading.Event()

    def killer() -> None:
        killed.update(kill_worker_of(settings.out_dir / "manifest.sqlite", key, done))

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        report = run_batch(settings)
    finally:
        done.set()
        thread.join(5)
    return report, killed


def load_result_tensors(folder: Path) -> dict:
    """``ws`` of ``latent.pt`` and every tensor of ``tuned.safetensors``."""
    import torch
    from safetensors.torch import load_file

    latent = torch.load(folder / "latent.pt", map_location="cpu", weights_only=True)
    tensors = {"ws": latent["ws"]}
    tensors.update({f"tuned/{k}": v for k, v in load_file(folder / "tuned.safetensors").items()})
    return tensors


@pytest.fixture(scope="session")
def local_batch(symheads_images, tmp_path_factory):
    """One local run (2 workers x 1 thread) over 3 heads, a corrupt file and an unlabelled image,
    whose worker is SIGKILLed while it processes ``head1``. Shared by the local and the Ray tests.
    """
    root = tmp_path_factory.mktemp("local-batch")
    inputs = copy_inputs(symheads_images, root / "in", corrupt=True, unlabelled=True)
    settings = fast_settings(inputs, root / "out")
    report, killed = run_with_kill(settings, "head1")
    return {"settings": settings, "report": report, "killed": killed, "out": root / "out"}
