"""The layout of an output folder and the rules that keep finished results safe.

``sym3d invert`` and ``sym3d batch`` write one result folder per image, named by its *key* (the
image's stem), directly inside the output folder ``OUT``::

    OUT/<key>/                 a finished result (only ever created by one atomic rename)
    OUT/.work/<key>/           the result being assembled, with its resumable checkpoint
    OUT/.work/<key>.lock       the per-result lock (flock; kept and reused, never deleted)
    OUT/.work/<key>.old-<id>   a replaced result, moved aside by ``--overwrite`` and then deleted
    OUT/manifest.sqlite        the batch manifest (``sym3d batch`` only)

Keys never start with ``.``, so a result can never be a work, lock or trash entry, and the
manifest's names are reserved. Whatever sym3d deletes it created itself in the same run.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from sym3d.errors import OutputWriteError, ResultBusyError, ResultNameError

__all__ = [
    "WORK_DIR",
    "RESERVED_KEYS",
    "MAX_KEY_BYTES",
    "check_key",
    "exclusive_lock",
    "result_lock",
    "work_dir",
    "trash_dir",
    "check_complete",
    "check_not_linked",
    "describe_failure",
]

WORK_DIR = ".work"
RESERVED_KEYS = frozenset(
    {"manifest.sqlite", "manifest.sqlite-wal", "manifest.sqlite-shm", "manifest.sqlite-journal"}
)
_TRASH_SUFFIX_BYTES = len(".old-") + 12
MAX_KEY_BYTES = 255 - _TRASH_SUFFIX_BYTES
"""Longest key in bytes: its trash entry ``<key>.old-<12 hex>`` must still fit a 255-byte name."""


def check_key(key: str, source: object = None) -> str:
    """``key`` if it can name a result folder directly inside the output folder.

    Args:
        key: the folder name (an image's stem).
        source: the image it comes from, named in the message.

    Raises:
        ResultNameError: empty, ``.``/``..``, hidden (``.x``: reserved for sym3d's work folders),
            a separator or NUL inside, a reserved name, not valid UTF-8, or too long.
    """
    where = f"{_printable(str(source))}: " if source is not None else ""
    fix = "rename the image (its name without the extension names the result folder)."
    if key in ("", ".", ".."):
        raise ResultNameError(
            f"{where}the result folder name would be {key!r}, which is not a folder name.", hint=fix
        )
    if key.startswith("."):
        raise ResultNameError(
            f"{where}result folder names may not start with '.' ({key!r}): sym3d keeps its work folders there.",
            hint=fix,
        )
    if any(c in key for c in ("/", "\\", "\0")):
        raise ResultNameError(
            f"{where}the result folder name {key!r} contains a path separator or NUL.", hint=fix
        )
    if key in RESERVED_KEYS:
        raise ResultNameError(f"{where}{key!r} is reserved for the batch manifest.", hint=fix)
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise ResultNameError(
            f"{where}the file name is not valid UTF-8 ('{_printable(key)}').", hint=fix
        ) from None
    if size > MAX_KEY_BYTES:
        raise ResultNameError(
            f"{where}the result folder name is {size} bytes long; at most {MAX_KEY_BYTES} fit.",
            hint=fix,
        )
    return key


def _printable(text: str) -> str:
    """``text`` with undecodable file-name bytes (surrogate escapes) shown as backslash escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def work_dir(out: Path) -> Path:
    """Where the result ``out`` (``OUT/<key>``) is assembled: ``OUT/.work/<key>``."""
    return out.parent / WORK_DIR / out.name


def trash_dir(out: Path) -> Path:
    """A fresh, unique name to move the old result ``out`` aside to (``OUT/.work/<key>.old-<id>``)."""
    return out.parent / WORK_DIR / f"{out.name}.old-{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def exclusive_lock(lock_file: Path, busy: str, hint: str) -> Iterator[None]:
    """Hold an advisory ``flock`` on ``lock_file`` (created if missing, kept afterwards).

    The lock is released when the process ends, however it ends. A no-op where ``fcntl`` is
    missing (Windows).

    Raises:
        ResultBusyError: another process (or another open of the file) holds it; ``busy`` and
            ``hint`` are the message.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(
        lock_file,
        os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0),
        0o666,
    )
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ResultBusyError(busy, hint=hint) from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def result_lock(out: Path) -> contextlib.AbstractContextManager[None]:
    """The lock of the result ``out``; every writer of ``out`` (invert, batch workers) holds it."""
    return exclusive_lock(
        out.parent / WORK_DIR / f"{out.name}.lock",
        f"{out}: another sym3d run (`sym3d invert` or `sym3d batch`) is writing this result now.",
        "wait for it to finish, or choose another --out.",
    )


def check_complete(folder: Path, expected: Iterable[str | os.PathLike]) -> None:
    """Raise unless every ``expected`` file (relative to ``folder``) is a regular file there.

    Raises:
        OutputWriteError: the missing files are named (something removed them meanwhile).
    """
    missing = sorted({str(f) for f in expected if not _regular(folder / f)})
    if missing:
        raise OutputWriteError(
            f"{folder}: the result is incomplete before its final rename (missing {', '.join(missing)}); "
            "something else changed this folder while it was written.",
            hint="make sure no other program writes there, then run the same command again.",
        )


def _regular(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def check_not_linked(path: Path, below: Path) -> None:
    """Refuse to write into ``path`` when it or a folder between ``below`` and it is a symbolic link.

    Writing through a link would put the files wherever the link points.

    Raises:
        OutputWriteError: the link is named.
    """
    path, below = Path(path), Path(below)
    try:
        parts = path.relative_to(below).parts
    except ValueError:
        parts = (path.name,)
        below = path.parent
    current = below
    for part in parts:
        current = current / part
        if current.is_symlink():
            raise OutputWriteError(
                f"{current}: is a symbolic link; sym3d never writes through links (it would write to {os.readlink(current)!r}).",
                hint="remove the link, or pass another --out.",
            )


def describe_failure(
    exc: BaseException, what: object, traceback_at: str = "--debug shows the traceback"
) -> str:
    """One line for the failure of ``what`` (an image): what went wrong and the fix.

    sym3d's own errors already say both; operating-system failures (disk full, name too long,
    permission) and memory exhaustion get their fix; anything else is named as unexpected, with
    ``traceback_at`` saying where its traceback is.
    """
    from sym3d.errors import Sym3DError

    if isinstance(exc, Sym3DError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return f"{what}: out of memory. Fix: close other programs, or use fewer --workers or a smaller --mesh-resolution."
    if isinstance(exc, OSError):
        name = exc.filename or what
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"{name}: the disk is full. Fix: free disk space, then run the same command again (finished results are kept)."
        if exc.errno == errno.ENAMETOOLONG:
            return f"{name}: the file name is too long for the file system. Fix: rename the image to a shorter name."
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return f"{name}: not allowed to write there ({exc.strerror}). Fix: choose a writable --out."
        return f"{name}: {exc.strerror or exc} ({type(exc).__name__}). Fix: check the disk and the output folder, then run again."
    return (
        f"{what}: unexpected {type(exc).__name__}: {exc}. "
        f"This is a bug; please report it ({traceback_at})."
    )
