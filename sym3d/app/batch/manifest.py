"""The batch manifest: one SQLite row per image, written by the coordinator only.

``<OUT>/manifest.sqlite`` (WAL journal, one writer): table ``images`` holds each image's status
(``pending``, ``running``, ``done``, ``failed``), attempts, error, timings, worker and metrics;
table ``events`` is an append-only log of what happened (per image: added, started, done, failed,
lost, requeued, found, removed; per run: run_started, worker_ready (one generator load each),
run_finished, run_interrupted, run_failed); table ``meta`` the schema version and the settings of the last run.

Workers never touch it, so killing a worker cannot corrupt it; every status change is one
transaction, so killing the coordinator leaves the last committed state. :meth:`Manifest.sync`
reconciles it with the disk on every start: a finished result folder is ``done`` whatever the
manifest says, and ``running`` rows of a crashed run go back to ``pending``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from sym3d.errors import OutputWriteError, UserInputError

__all__ = ["MANIFEST_NAME", "SCHEMA_VERSION", "STATUSES", "ImageRow", "Manifest", "SyncReport"]

MANIFEST_NAME = "manifest.sqlite"
SCHEMA_VERSION = 1
STATUSES = ("pending", "running", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    key         TEXT PRIMARY KEY,
    path        TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    error_type  TEXT,
    detail      TEXT,
    seconds     REAL,
    worker      TEXT,
    metrics     TEXT,
    notes       TEXT,
    created_at  REAL NOT NULL,
    started_at  REAL,
    finished_at REAL,
    updated_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS images_status ON images (status);
CREATE TABLE IF NOT EXISTS events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    time   REAL NOT NULL,
    key    TEXT,
    event  TEXT NOT NULL,
    worker TEXT,
    detail TEXT
);
"""


@attrs.frozen(kw_only=True)
class ImageRow:
    """One row of ``images`` (``metrics`` decoded from JSON)."""

    key: str
    path: str
    status: str
    attempts: int
    error: str | None
    error_type: str | None
    detail: str | None
    seconds: float | None
    worker: str | None
    metrics: Mapping[str, Any]
    notes: tuple[str, ...]
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float


@attrs.frozen(kw_only=True)
class SyncReport:
    """What :meth:`Manifest.sync` changed: keys found finished on disk, reset from running, retried, given up."""

    found_done: tuple[str, ...] = ()
    reset_running: tuple[str, ...] = ()
    retried: tuple[str, ...] = ()
    exhausted: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()


def _write_error(path: Path, exc: sqlite3.OperationalError) -> OutputWriteError:
    """One line for a manifest that cannot be written."""
    full = "full" in str(exc).lower()
    what = "the disk is full" if full else f"it cannot be written ({exc})"
    return OutputWriteError(
        f"{path}: the batch manifest was not updated: {what}. Finished results are kept and the "
        "manifest holds its last consistent state.",
        hint=("free disk space" if full else "check the folder's disk and permissions")
        + ", then run the same command again to continue.",
    )


def _row(r: sqlite3.Row) -> ImageRow:
    data = dict(r)
    data["metrics"] = json.loads(data["metrics"]) if data["metrics"] else {}
    data["notes"] = tuple(json.loads(data["notes"])) if data["notes"] else ()
    return ImageRow(**data)


class Manifest:
    """The SQLite manifest of one output folder (see the module docstring).

    Args:
        path: the database file (usually ``<OUT>/manifest.sqlite``).
        readonly: open an existing manifest for reading (``--summary``); nothing is created.

    Raises:
        UserInputError: ``readonly`` and the file does not exist, or it is not a sym3d manifest.
    """

    def __init__(self, path: str | os.PathLike, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly and not self.path.is_file():
            raise UserInputError(
                f"{self.path}: no batch manifest here.",
                hint="pass the --out folder of a `sym3d batch` run.",
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # readers too open read-write: a WAL database needs its -shm file, which mode=ro cannot create
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            if not readonly:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                with self._tx():
                    for statement in filter(str.strip, _SCHEMA.split(";")):
                        self._db.execute(statement)
                    self._db.execute(
                        "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                        (str(SCHEMA_VERSION),),
                    )
            self._db.row_factory = sqlite3.Row
            version = self.meta("schema_version")
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise UserInputError(f"{self.path}: not a sym3d batch manifest ({exc}).") from None
        if version is None or int(version) > SCHEMA_VERSION:
            raise UserInputError(
                f"{self.path}: manifest schema {version!r}; this sym3d reads schema {SCHEMA_VERSION}.",
                hint="upgrade sym3d.",
            )

    # -- plumbing -------------------------------------------------------------------------

    def _tx(self) -> Any:
        """A write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``; rolled back on an exception).

        A database that cannot be written (full disk, read-only folder) raises
        :class:`~sym3d.errors.OutputWriteError`; the transaction is rolled back, so the manifest
        keeps its last committed state.
        """
        db, path = self._db, self.path

        def rollback() -> None:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")

        class _Tx:
            def __enter__(self) -> sqlite3.Connection:
                try:
                    db.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    raise _write_error(path, exc) from None
                return db

            def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
                if exc_type is not None:
                    rollback()
                    if isinstance(exc, sqlite3.OperationalError):
                        raise _write_error(path, exc) from None
                    return
                try:
                    db.execute("COMMIT")
                except sqlite3.OperationalError as exc:
                    rollback()
                    raise _write_error(path, exc) from None

        return _Tx()

    def close(self) -> None:
        """Close the database (checkpoints the WAL)."""
        self._db.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- meta -----------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        """A value of the ``meta`` table."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, values: Mapping[str, Any]) -> None:
        """Store ``meta`` values (non-strings as JSON)."""
        with self._tx() as db:
            for k, v in values.items():
                db.execute(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                    (k, v if isinstance(v, str) else json.dumps(v, sort_keys=True)),
                )

    # -- reading --------------------------------------------------------------------------

    def rows(self, status: str | Sequence[str] | None = None) -> list[ImageRow]:
        """Rows (ordered by key), optionally only those with ``status``."""
        if status is None:
            cur = self._db.execute("SELECT * FROM images ORDER BY key")
        else:
            wanted = [status] if isinstance(status, str) else list(status)
            cur = self._db.execute(
                f"SELECT * FROM images WHERE status IN ({','.join('?' * len(wanted))}) ORDER BY key",
                wanted,
            )
        return [_row(r) for r in cur.fetchall()]

    def row(self, key: str) -> ImageRow | None:
        """The row of ``key``."""
        r = self._db.execute("SELECT * FROM images WHERE key = ?", (key,)).fetchone()
        return None if r is None else _row(r)

    def counts(self) -> dict[str, int]:
        """Rows per status (every status present, 0 if none)."""
        counts = dict.fromkeys(STATUSES, 0)
        for status, n in self._db.execute("SELECT status, COUNT(*) FROM images GROUP BY status"):
            counts[status] = n
        return counts

    def events(self, key: str | None = None) -> list[dict[str, Any]]:
        """The event log (oldest first), optionally of one key."""
        cur = self._db.execute(
            "SELECT * FROM events" + (" WHERE key = ?" if key else "") + " ORDER BY id",
            (key,) if key else (),
        )
        return [dict(r) for r in cur.fetchall()]

    # -- writing (coordinator only) -------------------------------------------------------

    def _event(
        self,
        db: sqlite3.Connection,
        key: str | None,
        event: str,
        worker: str | None = None,
        detail: Any = None,
    ) -> None:
        text = (
            None
            if detail is None
            else (detail if isinstance(detail, str) else json.dumps(detail, default=str))
        )
        db.execute(
            "INSERT INTO events (time, key, event, worker, detail) VALUES (?, ?, ?, ?, ?)",
            (time.time(), key, event, worker, text),
        )

    def log(
        self, event: str, detail: Any = None, *, key: str | None = None, worker: str | None = None
    ) -> None:
        """Append a batch-level event (``run_started``, ``worker_ready``, ``run_interrupted``, ...)."""
        with self._tx() as db:
            self._event(db, key, event, worker, detail)

    def sync(
        self,
        images: Mapping[str, str],
        out_dir: str | os.PathLike,
        *,
        max_attempts: int,
        retry_failed: bool = False,
        finished: Any = None,
    ) -> SyncReport:
        """Reconcile with the input folder and the disk before a run.

        Args:
            images: key -> image path of the images in the input folder.
            out_dir: the batch's output folder (``<out_dir>/<key>`` is a finished result).
            max_attempts: failed images with fewer attempts go back to ``pending``.
            retry_failed: also retry failed images that reached ``max_attempts`` (attempts restart at 0).
            finished: ``finished(folder) -> (seconds, metrics)`` for results found on disk.

        Returns:
            What changed (for the run's log).
        """
        out = Path(out_dir)
        now = time.time()
        found, reset, retried, exhausted, removed, added = [], [], [], [], [], []
        with self._tx() as db:
            existing = {r["key"]: r for r in db.execute("SELECT key, status, attempts FROM images")}
            for key, path in images.items():
                if key not in existing:
                    db.execute(
                        "INSERT INTO images (key, path, status, created_at, updated_at) VALUES (?, ?, 'pending', ?, ?)",
                        (key, str(path), now, now),
                    )
                    self._event(db, key, "added")
                    added.append(key)
                    status, attempts = "pending", 0
                else:
                    status, attempts = existing[key]["status"], existing[key]["attempts"]
                    db.execute("UPDATE images SET path = ? WHERE key = ?", (str(path), key))
                if (out / key).is_dir():
                    if status != "done":
                        seconds, metrics = finished(out / key) if finished else (None, {})
                        db.execute(
                            "UPDATE images SET status = 'done', error = NULL, error_type = NULL, detail = NULL, seconds = COALESCE(?, seconds), "
                            "metrics = ?, finished_at = ?, updated_at = ? WHERE key = ?",
                            (seconds, json.dumps(metrics), now, now, key),
                        )
                        self._event(db, key, "found", detail="a finished result folder is on disk")
                        found.append(key)
                    continue
                if status == "done":  # the folder was removed: do it again
                    db.execute(
                        "UPDATE images SET status = 'pending', updated_at = ? WHERE key = ?",
                        (now, key),
                    )
                    self._event(db, key, "requeued", detail="result folder missing")
                    retried.append(key)
                elif status == "running":
                    db.execute(
                        "UPDATE images SET status = 'pending', worker = NULL, updated_at = ? WHERE key = ?",
                        (now, key),
                    )
                    self._event(
                        db, key, "requeued", detail="was running when a previous run stopped"
                    )
                    reset.append(key)
                elif status == "failed":
                    if retry_failed:
                        db.execute(
                            "UPDATE images SET status = 'pending', attempts = 0, updated_at = ? WHERE key = ?",
                            (now, key),
                        )
                        self._event(db, key, "requeued", detail="--retry-failed")
                        retried.append(key)
                    elif attempts < max_attempts:
                        db.execute(
                            "UPDATE images SET status = 'pending', updated_at = ? WHERE key = ?",
                            (now, key),
                        )
                        self._event(
                            db,
                            key,
                            "requeued",
                            detail=f"failed attempt {attempts} of {max_attempts}",
                        )
                        retried.append(key)
                    else:
                        exhausted.append(key)
            for key in set(existing) - set(images):
                if existing[key]["status"] != "done" and not (out / key).is_dir():
                    db.execute("DELETE FROM images WHERE key = ?", (key,))
                    self._event(db, key, "removed", detail="no longer in the input folder")
                    removed.append(key)
        return SyncReport(
            found_done=tuple(found),
            reset_running=tuple(reset),
            retried=tuple(retried),
            exhausted=tuple(exhausted),
            removed=tuple(removed),
            added=tuple(added),
        )

    def mark_running(self, key: str, worker: str, attempt: int) -> None:
        """The image was handed to ``worker``."""
        now = time.time()
        with self._tx() as db:
            db.execute(
                "UPDATE images SET status = 'running', worker = ?, started_at = ?, updated_at = ? WHERE key = ?",
                (worker, now, now, key),
            )
            self._event(db, key, "started", worker, {"attempt": attempt})

    def mark_done(
        self,
        key: str,
        *,
        seconds: float | None,
        metrics: Mapping[str, Any],
        worker: str | None,
        notes: Iterable[str] = (),
        event: str = "done",
        detail: Any = None,
    ) -> None:
        """The image's final folder exists; the attempt is counted."""
        now = time.time()
        with self._tx() as db:
            db.execute(
                "UPDATE images SET status = 'done', attempts = attempts + 1, error = NULL, error_type = NULL, detail = NULL, seconds = ?, worker = ?, "
                "metrics = ?, notes = ?, finished_at = ?, updated_at = ? WHERE key = ?",
                (
                    seconds,
                    worker,
                    json.dumps(dict(metrics), default=str),
                    json.dumps(list(notes)),
                    now,
                    now,
                    key,
                ),
            )
            self._event(
                db, key, event, worker, detail if detail is not None else {"seconds": seconds}
            )

    def mark_failed(
        self,
        key: str,
        *,
        error: str,
        error_type: str | None,
        worker: str | None,
        seconds: float | None = None,
        detail: str | None = None,
        count_attempt: bool = True,
    ) -> None:
        """The image failed with ``error`` (attempt counted unless ``count_attempt`` is false)."""
        now = time.time()
        with self._tx() as db:
            db.execute(
                "UPDATE images SET status = 'failed', attempts = attempts + ?, error = ?, error_type = ?, detail = ?, seconds = ?, worker = ?, "
                "finished_at = ?, updated_at = ? WHERE key = ?",
                (
                    1 if count_attempt else 0,
                    error,
                    error_type,
                    detail,
                    seconds,
                    worker,
                    now,
                    now,
                    key,
                ),
            )
            self._event(db, key, "failed", worker, {"error": error, "error_type": error_type})

    def mark_lost(self, key: str, *, reason: str, worker: str | None, requeue: bool) -> int:
        """The worker died with the image: the attempt is counted; back to ``pending`` or ``failed``.

        Returns:
            The image's attempts so far.
        """
        now = time.time()
        with self._tx() as db:
            db.execute(
                "UPDATE images SET attempts = attempts + 1, updated_at = ? WHERE key = ?",
                (now, key),
            )
            (attempts,) = db.execute("SELECT attempts FROM images WHERE key = ?", (key,)).fetchone()
            self._event(db, key, "lost", worker, {"reason": reason, "attempt": attempts})
            if requeue:
                db.execute(
                    "UPDATE images SET status = 'pending', worker = NULL WHERE key = ?", (key,)
                )
                self._event(db, key, "requeued", detail="worker lost")
            else:
                message = f"the worker died on each of {attempts} attempts (last: {reason})"
                db.execute(
                    "UPDATE images SET status = 'failed', error = ?, error_type = 'WorkerLost', finished_at = ? WHERE key = ?",
                    (message, now, key),
                )
                self._event(
                    db, key, "failed", worker, {"error": message, "error_type": "WorkerLost"}
                )
        return int(attempts)

    def mark_pending(self, keys: Iterable[str], *, reason: str) -> None:
        """Put images back to ``pending`` without counting an attempt (an interrupt)."""
        now = time.time()
        with self._tx() as db:
            for key in keys:
                db.execute(
                    "UPDATE images SET status = 'pending', worker = NULL, updated_at = ? WHERE key = ? AND status = 'running'",
                    (now, key),
                )
                self._event(db, key, "requeued", detail=reason)

    def running_keys(self) -> list[str]:
        """Keys whose status is ``running``."""
        return [
            r[0]
            for r in self._db.execute(
                "SELECT key FROM images WHERE status = 'running' ORDER BY key"
            )
        ]

    def iter_metrics(self) -> Iterator[Mapping[str, Any]]:
        """Metrics of the finished images."""
        for (text,) in self._db.execute("SELECT metrics FROM images WHERE status = 'done'"):
            yield json.loads(text) if text else {}
