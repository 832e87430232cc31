from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from sym3d.app.export import video
from sym3d.app.export._common import ExportWarning
from sym3d.app.export.video import orbit_cameras, write_video
from sym3d.camera import FFHQ_PIVOT, eg3d_sampler_angles, look_at, mirror_camera
from sym3d.errors import MissingDependencyError, RangeError, UserInputError


def _frames(n: int = 12, h: int = 32, w: int = 48) -> torch.Tensor:
    """Moving gradient frames: every frame differs (GIF writers merge identical frames)."""
    t = torch.arange(n, dtype=torch.float32)[:, None, None, None]
    x = torch.linspace(0, 1, w)[None, None, None, :]
    y = torch.linspace(0, 1, h)[None, None, :, None]
    r = (x + t / n) % 1.0
    return torch.cat([r.expand(n, 1, h, w), y.expand(n, 1, h, w), (1 - r).expand(n, 1, h, w)], 1)


def _no_temp_files(d):
    assert not [p.name for p in d.iterdir() if p.name.startswith(".tmp-")]


@pytest.fixture
def no_ffmpeg(monkeypatch):
    monkeypatch.setattr(video, "_find_ffmpeg", lambda: (None, "ffmpeg disabled by the test"))


def test_orbit_cameras_follow_spi():
    n = 120
    cams = orbit_cameras(n)
    assert cams.shape == (n, 25)
    for i in (0, 17, 30, 95):
        t = 2 * math.pi * i / n
        yaw, pitch = eg3d_sampler_angles(
            math.pi / 2 + 0.7 * math.sin(t), math.pi / 2 - 0.05 + 0.4 * math.cos(t)
        )
        torch.testing.assert_close(cams[i], look_at(yaw, pitch), atol=1e-5, rtol=0)
    # radius 2.7 from the origin, looking at the pivot
    pos = cams[:, [3, 7, 11]]
    torch.testing.assert_close(pos.norm(dim=-1), torch.full((n,), 2.7), atol=1e-5, rtol=0)
    fwd = cams[:, [2, 6, 10]]
    to_pivot = torch.nn.functional.normalize(torch.tensor(FFHQ_PIVOT) - pos, dim=-1)
    torch.testing.assert_close(fwd, to_pivot, atol=1e-5, rtol=0)


def test_orbit_is_a_symmetric_closed_loop():
    n = 16
    cams = orbit_cameras(n)
    # frame i is at t = 2 pi i / n (so frame n would be frame 0 again) ...
    torch.testing.assert_close(orbit_cameras(2 * n)[::2], cams)
    # ... and frames i and n - i are mirror images (yaw negated, pitch kept)
    for i in range(1, n // 2):
        torch.testing.assert_close(mirror_camera(cams[i]), cams[n - i], atol=1e-5, rtol=0)
    with pytest.raises(UserInputError):
        orbit_cameras(0)


def test_mp4_round_trip(tmp_path):
    imageio = pytest.importorskip("imageio.v2")
    if not video.ffmpeg_status()[0]:
        pytest.skip(f"no ffmpeg: {video.ffmpeg_status()[1]}")
    frames = _frames(12, 32, 48)
    path = write_video(frames, tmp_path / "orbit.mp4", fps=60)
    assert path == tmp_path / "orbit.mp4" and path.stat().st_size > 0
    reader = imageio.get_reader(path, format="FFMPEG")
    try:
        meta = reader.get_meta_data()
        assert meta["codec"] == "h264"
        assert meta["fps"] == 60
        assert meta["size"] == (48, 32)
        assert reader.count_frames() == 12
        first = reader.get_data(0)
    finally:
        reader.close()
    ref = (frames[0].permute(1, 2, 0).numpy() * 255).astype(np.float32)
    assert np.abs(first.astype(np.float32) - ref).mean() < 8  # lossy but close
    _no_temp_files(tmp_path)


def test_mp4_odd_size_is_padded(tmp_path):
    imageio = pytest.importorskip("imageio.v2")
    if not video.ffmpeg_status()[0]:
        pytest.skip("no ffmpeg")
    path = write_video(_frames(4, 31, 45), tmp_path / "odd.mp4", fps=10)
    reader = imageio.get_reader(path, format="FFMPEG")
    try:
        assert reader.get_meta_data()["size"] == (46, 32)
        assert reader.count_frames() == 4
    finally:
        reader.close()


def test_gif_round_trip(tmp_path):
    import imageio.v3 as iio

    frames = _frames(10, 24, 40)
    path = write_video(frames, tmp_path / "orbit.gif", fps=60)
    assert path.suffix == ".gif"
    data = iio.imread(path, index=None)
    assert data.shape[:3] == (10, 24, 40)
    assert iio.immeta(path)["duration"] == 20  # 60 fps is capped at 50 fps in GIFs
    assert iio.immeta(path)["loop"] == 0


def test_uint8_frames_accepted(tmp_path):
    import imageio.v3 as iio

    frames = (_frames(5, 16, 16).permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    path = write_video(frames, tmp_path / "v.gif", fps=25)
    assert iio.imread(path, index=None).shape[:3] == (5, 16, 16)


def test_fallback_to_gif_without_ffmpeg(tmp_path, no_ffmpeg):
    import imageio.v3 as iio

    with pytest.warns(ExportWarning, match="disabled by the test.*GIF"):
        path = write_video(_frames(6), tmp_path / "orbit.mp4", fps=60)
    assert path == tmp_path / "orbit.gif"
    assert not (tmp_path / "orbit.mp4").exists()
    assert iio.imread(path, index=None).shape[:3] == (6, 32, 48)
    _no_temp_files(tmp_path)


def test_mp4_required_raises_without_ffmpeg(tmp_path, no_ffmpeg):
    with pytest.raises(MissingDependencyError, match="export"):
        write_video(_frames(3), tmp_path / "orbit.mp4", format="mp4")


def test_fallback_when_encoding_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(video, "_find_ffmpeg", lambda: ("/nonexistent/ffmpeg", ""))

    def broken(frames, path, fps, crf, progress):
        with video.atomic_path(path) as tmp:
            tmp.write_bytes(b"partial")
            raise OSError("encoder crashed")

    monkeypatch.setattr(video, "_write_mp4", broken)
    with pytest.warns(ExportWarning, match="encoder crashed"):
        path = write_video(_frames(4), tmp_path / "orbit.mp4")
    assert path.suffix == ".gif" and not (tmp_path / "orbit.mp4").exists()
    _no_temp_files(tmp_path)


def test_bad_frames(tmp_path):
    with pytest.raises(RangeError):
        write_video(_frames(3) * 2 - 1, tmp_path / "x.gif")
    with pytest.raises(UserInputError, match="fps"):
        write_video(_frames(3), tmp_path / "x.gif", fps=0)
    with pytest.raises(UserInputError, match="format"):
        write_video(_frames(3), tmp_path / "x.gif", format="avi")  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserInputError, match="at least one"):
            write_video(torch.zeros(0, 3, 8, 8), tmp_path / "x.gif")
