import sys

import numpy as np
import pytest
import torch
from PIL import Image

from sym3d.errors import ImageLoadError, RangeError
from sym3d.image import from_model_range, load_image, mirror_image, save_image, to_model_range


def _rgb(h=12, w=16):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".webp", ".bmp", ".tiff"])
def test_lossless_formats_roundtrip(tmp_path, suffix):
    arr = _rgb()
    p = tmp_path / f"x{suffix}"
    Image.fromarray(arr).save(p, **({"lossless": True} if suffix == ".webp" else {}))
    x = load_image(p)
    assert x.shape == (1, 3, 12, 16) and x.dtype == torch.float32
    assert torch.allclose(x[0].permute(1, 2, 0), torch.from_numpy(arr).float() / 255, atol=1e-6)


def test_jpeg(tmp_path):
    p = tmp_path / "x.jpg"
    Image.fromarray(np.full((10, 10, 3), 128, np.uint8)).save(p, quality=95)
    x = load_image(p)
    assert x.shape == (1, 3, 10, 10) and abs(float(x.mean()) - 128 / 255) < 0.01


def test_grayscale_replicated(tmp_path):
    p = tmp_path / "g.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8), mode="L").save(p)
    x = load_image(p)
    assert x.shape == (1, 3, 8, 8)
    assert torch.equal(x[0, 0], x[0, 1]) and torch.equal(x[0, 1], x[0, 2])


def test_16bit_gray_keeps_precision(tmp_path):
    p = tmp_path / "g16.png"
    arr = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000 + 7
    Image.fromarray(arr).save(p)
    x = load_image(p)
    assert torch.allclose(x[0, 0], torch.from_numpy(arr.astype(np.float32) / 65535.0), atol=1e-6)


def _write_png16(arr: np.ndarray, path, orientation: int | None = None) -> None:
    """Minimal 16-bit RGB / RGBA PNG writer (Pillow cannot write 48/64-bit colour)."""
    import struct
    import zlib

    h, w, c = arr.shape
    raw = b"".join(b"\x00" + arr[i].astype(">u2").tobytes() for i in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2 if c == 3 else 6, 0, 0, 0)
    body = chunk(b"IHDR", ihdr)
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        body += chunk(b"eXIf", exif.tobytes().removeprefix(b"Exif\x00\x00"))
    body += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


@pytest.mark.parametrize("cv2_importable", [True, False])
def test_16bit_rgb_roundtrip_keeps_precision(tmp_path, monkeypatch, cv2_importable):
    """Full 16-bit precision whether or not the optional OpenCV is importable."""
    if not cv2_importable:
        monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` raises ImportError
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 65536, size=(6, 5, 3), dtype=np.uint16)
    arr[0, 0] = (1, 2, 65534)  # neighbours that 8 bits cannot tell apart
    _write_png16(arr, tmp_path / "c16.png")
    x = load_image(tmp_path / "c16.png")
    assert x.shape == (1, 3, 6, 5) and x.dtype == torch.float32
    back = (x[0].permute(1, 2, 0) * 65535.0).round().to(torch.int64).numpy()
    np.testing.assert_array_equal(back, arr.astype(np.int64))


def test_16bit_rgba_composited_on_white(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)
    arr = np.zeros((2, 3, 4), np.uint16)
    arr[..., 0] = 40000
    arr[0, :, 3] = 65535  # top row opaque
    arr[1, :, 3] = 16384  # bottom row a quarter opaque
    _write_png16(arr, tmp_path / "a16.png")
    x = load_image(tmp_path / "a16.png")[0]
    a = 16384 / 65535
    torch.testing.assert_close(x[:, 0, 0], torch.tensor([40000 / 65535, 0.0, 0.0]))
    want = torch.tensor([40000 / 65535 * a + 1 - a, 1 - a, 1 - a])
    torch.testing.assert_close(x[:, 1, 0], want, atol=1e-6, rtol=0)


def test_16bit_png_exif_orientation_applied(tmp_path):
    arr = np.zeros((4, 6, 3), np.uint16)
    arr[0, 0] = 65535  # white top-left corner
    _write_png16(arr, tmp_path / "r16.png", orientation=3)  # rotated by 180 degrees
    x = load_image(tmp_path / "r16.png")
    assert x.shape == (1, 3, 4, 6)
    assert (x[0, :, -1, -1] > 0.99).all() and (x[0, :, 0, 0] < 0.01).all()


def test_corrupt_16bit_png_is_a_load_error(tmp_path):
    p = tmp_path / "bad16.png"
    _write_png16(np.ones((4, 4, 3), np.uint16), p)
    data = bytearray(p.read_bytes())
    data[45:60] = b"\x00" * 15  # inside the IDAT stream
    p.write_bytes(bytes(data))
    with pytest.raises(ImageLoadError, match="corrupt"):
        load_image(p)


def test_rgba_composited_on_white(tmp_path):
    p = tmp_path / "a.png"
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[..., 0] = 255  # red
    arr[:2, :, 3] = 255  # top opaque, bottom transparent
    Image.fromarray(arr, mode="RGBA").save(p)
    x = load_image(p)
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(x[0, :, 3, 0], torch.tensor([1.0, 1.0, 1.0]))


def test_exif_orientation_applied(tmp_path):
    p = tmp_path / "rot.jpg"
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :10] = 255  # left half white
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 CW on display
    img.save(p, exif=exif, quality=100)
    x = load_image(p)
    assert x.shape == (1, 3, 20, 10)  # portrait after applying orientation
    assert float(x[0, 0, :5].mean()) > 0.9 and float(x[0, 0, -5:].mean()) < 0.1


def test_missing_and_empty_and_directory(tmp_path):
    with pytest.raises(ImageLoadError, match="file not found"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageLoadError, match=r"empty.png: file is empty"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(ImageLoadError, match="is a directory"):
        load_image(tmp_path)


def test_non_image_and_corrupt(tmp_path):
    t = tmp_path / "notes.png"
    t.write_text("hello, not an image")
    with pytest.raises(ImageLoadError, match="not a recognised image format") as info:
        load_image(t)
    assert info.value.path == str(t)
    good = tmp_path / "good.png"
    Image.fromarray(_rgb(64, 64)).save(good)
    bad = tmp_path / "truncated.png"
    bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(ImageLoadError, match="corrupt or truncated"):
        load_image(bad)


def test_too_large_refused(tmp_path):
    p = tmp_path / "big.png"
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(p)
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(p, max_pixels=5000)


def test_save_roundtrip_and_range_check(tmp_path):
    x = torch.rand(1, 3, 6, 7)
    p = save_image(x, tmp_path / "out" / "y.png")
    y = load_image(p)
    assert (x - y).abs().max() <= 0.5 / 255 + 1e-6
    with pytest.raises(RangeError, match="from_model_range"):
        save_image(x * 2 - 1, tmp_path / "z.png")


def test_range_converters_and_mirror():
    x = torch.rand(2, 3, 4, 5)
    assert torch.allclose(from_model_range(to_model_range(x)), x)
    assert torch.equal(mirror_image(mirror_image(x)), x)
    assert torch.equal(mirror_image(x)[..., 0], x[..., -1])
