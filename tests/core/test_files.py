import os
import socket

import pytest

from sym3d.errors import ImageLoadError, InputFileError, UserInputError
from sym3d.files import check_regular_file, open_regular, read_bytes, read_text


def test_regular_file_is_read(tmp_path):
    p = tmp_path / "c.json"
    p.write_text('{"a": 1}')
    assert read_text(p, "the camera file") == '{"a": 1}'
    assert check_regular_file(p) == p


def test_symlink_to_regular_file_is_followed(tmp_path):
    p = tmp_path / "real.txt"
    p.write_text("hello")
    link = tmp_path / "link.txt"
    link.symlink_to(p)
    assert read_text(link) == "hello"


def test_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    with pytest.raises(
        InputFileError,
        match=r"pipe\.json: is a FIFO \(named pipe\); the camera file must be a regular file",
    ):
        read_text(fifo, "the camera file")


def test_link_to_device_is_refused(tmp_path):
    link = tmp_path / "history.json"
    link.symlink_to("/dev/zero")
    with pytest.raises(InputFileError, match="character device"):
        read_bytes(link, "history.json", max_bytes=1024)


def test_directory_socket_and_missing_are_refused(tmp_path):
    with pytest.raises(InputFileError, match="is a directory"):
        open_regular(tmp_path)
    with pytest.raises(InputFileError, match="file not found"):
        open_regular(tmp_path / "missing.toml")
    sock_path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock_path))
        with pytest.raises(InputFileError, match="socket"):
            open_regular(sock_path)


def test_size_limit(tmp_path):
    p = tmp_path / "big.toml"
    p.write_bytes(b"x" * 101)
    with pytest.raises(InputFileError, match="101 bytes; the config may be at most 100 bytes"):
        read_text(p, "the config", max_bytes=100)
    assert len(read_bytes(p, max_bytes=101)) == 101


def test_not_utf8(tmp_path):
    p = tmp_path / "bad.json"
    p.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InputFileError, match="not UTF-8"):
        read_text(p)


def test_error_types_are_user_errors():
    assert issubclass(InputFileError, UserInputError)
    assert issubclass(InputFileError, OSError)
    assert issubclass(ImageLoadError, InputFileError)


def test_read_bytes_does_not_allocate_the_limit(tmp_path):
    # A 4 GiB limit must not allocate 4 GiB for a 10-byte file.
    import subprocess
    import sys

    p = tmp_path / "small.bin"
    p.write_bytes(b"0123456789")
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30));"
        "from sym3d.files import read_bytes;"
        f"assert read_bytes({str(p)!r}, max_bytes=4 << 30) == b'0123456789'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
