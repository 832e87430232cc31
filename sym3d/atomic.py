"""Atomic file writes: write to a temporary file next to the target, then rename over it.

A crash never leaves a half-written file under the final name. Temporary files get the normal
permissions of new files (the umask), unlike ``tempfile.mkstemp``'s 0600 which a rename would keep.
The data is flushed to disk (``fsync``) before the rename and the folder after it, so a power
loss cannot leave a renamed but empty file either.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "fsync_dir",
    "fsync_file",
    "fsync_tree",
]


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a written file's data to disk (``fsync``); the file is opened read-only."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk; a no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - platforms that cannot open folders (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def fsync_tree(root: str | os.PathLike) -> None:
    """``fsync`` every regular file and folder under ``root`` (not following links), then ``root``."""
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if os.path.isfile(path) and not os.path.islink(path):
                fsync_file(path)
        fsync_dir(folder)


def _create_temp(directory: Path, suffix: str) -> Path:
    """Create an empty, uniquely named hidden file in ``directory`` with the umask's permissions."""
    for _ in range(100):
        candidate = directory / f".tmp-{uuid.uuid4().hex[:12]}{suffix}"
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # pragma: no cover - astronomically unlikely
            continue
        os.close(fd)
        return candidate
    raise FileExistsError(f"could not create a temporary file in {directory}")  # pragma: no cover


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    The temporary file keeps ``path``'s suffix (writers that infer the format from the name
    still work). On an exception the temporary file is removed and ``path`` is left untouched.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _create_temp(p.parent, p.suffix if suffix is None else suffix)
    try:
        yield tmp_path
        fsync_file(tmp_path)
        os.replace(tmp_path, p)
        fsync_dir(p.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    p = Path(path)
    with atomic_path(p) as tmp:
        tmp.write_bytes(data)
    return p


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))
