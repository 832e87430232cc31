"""Reading input files safely: regular files only, with a size limit.

Every file sym3d reads on a user's behalf (images, camera files, configs, directions, the files of
a result folder, checkpoints) goes through :func:`open_regular` or one of the readers built on it.
A FIFO, a device (``/dev/zero``), a socket or a directory is refused with a one-line
:class:`~sym3d.errors.InputFileError` instead of hanging or exhausting memory. Symbolic links are
followed; what they point to must be a regular file.

The check cannot race with the open: the file is opened non-blocking (so opening a FIFO never
waits for a writer), then the *open descriptor* is checked with ``fstat``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from sym3d.errors import InputFileError

__all__ = [
    "MAX_TEXT_BYTES",
    "open_regular",
    "check_regular_file",
    "read_bytes",
    "read_text",
]

MAX_TEXT_BYTES: int = 64 * 1024 * 1024
"""Default limit for text inputs (JSON, TOML): 64 MiB, far above any real camera file or config."""

_CHUNK = 1 << 20


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _refuse(path: Path, what: str, mode: int) -> InputFileError:
    return InputFileError(path, f"is {_kind(mode)}; {what} must be a regular file.")


def open_regular(
    path: str | os.PathLike, what: str = "the input", *, max_bytes: int | None = None
) -> BinaryIO:
    """Open ``path`` for binary reading if (after following links) it is a regular file.

    Args:
        path: the file.
        what: how the message names the file's role, e.g. ``"the camera file"``.
        max_bytes: refuse files larger than this many bytes (``None``: no limit).

    Returns:
        A binary file object positioned at the start (the caller closes it).

    Raises:
        InputFileError: missing, unreadable, not a regular file, or over ``max_bytes``.
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InputFileError(p, "file not found.") from None
    except IsADirectoryError:
        raise InputFileError(p, f"is a directory; {what} must be a regular file.") from None
    except PermissionError:
        raise InputFileError(
            p, "permission denied.", hint="check the file's permissions."
        ) from None
    except OSError as exc:
        raise InputFileError(p, f"cannot be opened ({exc.strerror or exc}).") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(p, what, st.st_mode)
        if max_bytes is not None and st.st_size > max_bytes:
            raise InputFileError(
                p, f"is {st.st_size:,} bytes; {what} may be at most {max_bytes:,} bytes."
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return open(fd, "rb", closefd=True)  # noqa: SIM115 - the caller closes it
    except BaseException:
        os.close(fd)
        raise


def check_regular_file(
    path: str | os.PathLike, what: str = "the input", *, max_bytes: int | None = None
) -> Path:
    """Raise :class:`InputFileError` unless ``path`` is a readable regular file; return it as a ``Path``."""
    open_regular(path, what, max_bytes=max_bytes).close()
    return Path(path)


def read_bytes(path: str | os.PathLike, what: str = "the input", *, max_bytes: int) -> bytes:
    """Read a whole regular file of at most ``max_bytes`` bytes.

    The limit is enforced on what is read as well as on the size ``fstat`` reports, so a file that
    grows while it is read cannot exceed it.
    """
    chunks: list[bytes] = []
    total = 0
    with open_regular(path, what, max_bytes=max_bytes) as f:
        # Read in bounded chunks: ``f.read(max_bytes + 1)`` would allocate the whole limit up front.
        while chunk := f.read(min(_CHUNK, max_bytes + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise InputFileError(
                    Path(path),
                    f"grew past {max_bytes:,} bytes while it was read; {what} may be at most that.",
                )
    return b"".join(chunks)


def read_text(
    path: str | os.PathLike, what: str = "the input", *, max_bytes: int = MAX_TEXT_BYTES
) -> str:
    """Read a regular UTF-8 text file of at most ``max_bytes`` bytes.

    Raises:
        InputFileError: as :func:`open_regular`, or the bytes are not UTF-8.
    """
    data = read_bytes(path, what, max_bytes=max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(
            Path(path), f"is not UTF-8 text (byte {exc.start}); {what} must be a text file."
        ) from None
