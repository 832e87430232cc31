"""Headless Chromium for the report tests: find it, and screenshot a page into an array."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

CHROMIUM_MISSING = "headless Chromium is not installed (apt-get install chromium)"


def chromium() -> str | None:
    """Path of a Chromium/Chrome executable, or ``None``."""
    for name in ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"):
        if os.path.exists(name):
            return name
    return shutil.which("chromium")


def screenshot(page: Path, shot: Path, *, width: int, height: int) -> np.ndarray:
    """Render ``page`` headless into ``shot``; returns the picture ``[height, width, 3]`` float32."""
    import imageio.v3 as iio

    cmd = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
        f"--screenshot={shot}",
        page.as_uri(),
    ]
    # a private HOME: Chromium writes its profile there
    env = {**os.environ, "HOME": str(shot.parent)}
    subprocess.run(cmd, check=False, capture_output=True, timeout=120, env=env)
    assert shot.exists(), "chromium wrote no screenshot"
    return np.asarray(iio.imread(shot))[..., :3].astype(np.float32)
