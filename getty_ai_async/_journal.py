"""A SQLite journal of a fan-out run: what was sent, what came back, what is still pending.

Every state change is committed before the engine acts on it, so a crash at any point
leaves enough on disk to resume without paying twice: a POST is marked ``submitting``
(with the time) as its bytes start leaving, and ``pending`` (with the generation id) as
soon as the reply says it was accepted. One process owns the file for the run's
lifetime (an OS lock on the database file itself, so another name for the same file,
a symlink or a hard link, is the same journal): two runs on one journal would both pay.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

import anyio.to_thread

from .errors import JournalError, JournalLockedError

__all__ = ["SCHEMA_VERSION", "Journal", "JournalRecord", "RecordState"]

# How long to wait for a run of this process that holds the journal and is stopping.
_OWN_RUN_GRACE = 10.0

# The journals this process has open, by file identity (device, inode).
_open_here: dict[tuple[int, int], Journal] = {}

SCHEMA_VERSION = 2
"""1: getty-ai-async 0.1.0 (no version stored); 2: adds the send time of a POST."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outcomes (
    key TEXT PRIMARY KEY,
    idx INTEGER NOT NULL,
    request TEXT NOT NULL,
    state TEXT NOT NULL,
    generation_request_id TEXT,
    result TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL,
    sent_at REAL
);
CREATE INDEX IF NOT EXISTS outcomes_by_generation ON outcomes (generation_request_id)
"""


class RecordState(StrEnum):
    SUBMITTING = "submitting"
    """The POST started leaving: if still so on resume, it is looked up in the history."""
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    UNKNOWN = "unknown"
    """The POST may have created a generation the history does not show: not resubmitted."""


@dataclass(frozen=True, slots=True)
class JournalRecord:
    key: str
    index: int
    request: dict[str, Any]
    state: RecordState
    generation_request_id: str | None
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    attempts: int
    sent_at: float | None
    """Wall-clock time the last POST started leaving."""
    updated: float
    """Wall-clock time of the last change (journals of 0.1.0 have no `sent_at`)."""


class _FileLock:
    """An exclusive OS lock on the journal's database file.

    `flock` locks are independent of the POSIX record locks SQLite itself takes, and
    belong to the open file, whatever name it was opened by. The holder's pid goes to
    ``<file>.lock`` (named after the resolved path), only to be named in the error.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None
        self._pid_file = path.resolve().with_name(path.resolve().name + ".lock")

    def acquire(self) -> None:
        file = self.path.open("ab")
        try:
            if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
                import msvcrt

                msvcrt.locking(file.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            file.close()
            raise JournalLockedError(str(self.path), self._holder()) from None
        self._file = file
        with contextlib.suppress(OSError):
            self._pid_file.write_text(str(os.getpid()), encoding="ascii")

    def _holder(self) -> int | None:
        try:
            holder = self._pid_file.read_text(encoding="ascii").strip()
        except OSError:
            return None
        return int(holder) if holder.isdigit() else None

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._pid_file.write_text("", encoding="ascii")
            self._file.close()  # closing drops the lock
            self._file = None


class Journal:
    """One SQLite file per run; every call runs in a worker thread, off the event loop."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._file_lock = _FileLock(self.path)
        self.closing = False
        """Set by the run that owns it once it is stopping (it will close soon)."""

    async def open(self) -> None:
        """Take the file's lock and open it; `JournalLockedError` if another run has it.

        A run of this same process that is stopping is waited for (briefly); one that
        is still running is an error at once.
        """
        deadline = anyio.current_time() + _OWN_RUN_GRACE
        while True:
            try:
                await anyio.to_thread.run_sync(self._open)
                return
            except JournalLockedError as exc:
                identity = self._identity()
                holder = _open_here.get(identity) if identity is not None else None
                if holder is None or not holder.closing or anyio.current_time() >= deadline:
                    if holder is not None and not holder.closing:
                        exc.args = (
                            f"{exc.args[0]} (another run of this process still runs on it:"
                            " close that one first, e.g. with `async with run:`)",
                        )
                    raise
            await anyio.sleep(0.01)

    def _identity(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return (stat.st_dev, stat.st_ino)

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file_lock.acquire()
        except OSError as exc:
            raise JournalError(str(self.path), exc.strerror or str(exc)) from None
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            self._file_lock.release()
            raise JournalError(str(self.path), str(exc)) from None
        try:
            self._prepare(db)
        except BaseException:
            db.close()
            self._file_lock.release()
            raise
        self._db = db
        identity = self._identity()
        if identity is not None:
            _open_here[identity] = self

    def _prepare(self, db: sqlite3.Connection) -> None:
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise JournalError(
                    str(self.path),
                    f"written by a newer getty-ai-async (schema {version}, this one reads "
                    f"up to {SCHEMA_VERSION}); upgrade, or use another file",
                )
            # WAL + NORMAL survives a process crash (the failure we guard against) and
            # keeps commits cheap; only a power loss could drop the last transactions.
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            columns = {row[1] for row in db.execute("PRAGMA table_info(outcomes)")}
            if columns and "sent_at" not in columns:
                db.execute("ALTER TABLE outcomes ADD COLUMN sent_at REAL")  # 0.1.0's journal
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise JournalError(str(self.path), f"not a usable journal: {exc}") from None

    def close(self) -> None:
        """Close the file and drop its lock (safe to call twice, and from synchronous code)."""
        with self._lock:
            if self._db is not None:
                identity = self._identity()
                if identity is not None and _open_here.get(identity) is self:
                    del _open_here[identity]
                self._db.close()
                self._db = None
                self._file_lock.release()

    async def lookup(self, key: str) -> JournalRecord | None:
        return await anyio.to_thread.run_sync(self._lookup, key)

    def _lookup(self, key: str) -> JournalRecord | None:
        rows = self._run(
            "SELECT key, idx, request, state, generation_request_id, result, error, attempts,"
            " sent_at, updated FROM outcomes WHERE key = ?",
            (key,),
        )
        if not rows:
            return None
        row = rows[0]
        return JournalRecord(
            key=row[0],
            index=row[1],
            request=json.loads(row[2]),
            state=RecordState(row[3]),
            generation_request_id=row[4],
            result=json.loads(row[5]) if row[5] else None,
            error=json.loads(row[6]) if row[6] else None,
            attempts=row[7],
            sent_at=row[8],
            updated=row[9],
        )

    async def knows(self, generation_request_id: str) -> bool:
        """Whether some input of this journal has that generation."""
        rows = await anyio.to_thread.run_sync(
            self._run,
            "SELECT 1 FROM outcomes WHERE generation_request_id = ? LIMIT 1",
            (generation_request_id,),
        )
        return bool(rows)

    async def submitting(
        self, key: str, index: int, request: dict[str, Any], attempts: int
    ) -> None:
        """The POST for `key` starts leaving now."""
        await anyio.to_thread.run_sync(self._submitting, key, index, request, attempts)

    def _submitting(self, key: str, index: int, request: dict[str, Any], attempts: int) -> None:
        now = time.time()
        self._run(
            "INSERT INTO outcomes (key, idx, request, state, attempts, updated, sent_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(key) DO UPDATE SET state = excluded.state,"
            " attempts = excluded.attempts, updated = excluded.updated,"
            " sent_at = excluded.sent_at",
            (key, index, json.dumps(request), RecordState.SUBMITTING, attempts, now, now),
            expect_rows=1,
        )

    async def update(
        self,
        key: str,
        state: RecordState,
        *,
        generation_request_id: str | None = None,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        await anyio.to_thread.run_sync(
            self._update, key, state, generation_request_id, result, error
        )

    def _update(
        self,
        key: str,
        state: RecordState,
        generation_request_id: str | None,
        result: dict[str, Any] | None,
        error: dict[str, Any] | None,
    ) -> None:
        self._run(
            "UPDATE outcomes SET state = ?,"
            " generation_request_id = COALESCE(?, generation_request_id),"
            " result = ?, error = ?, updated = ? WHERE key = ?",
            (
                state,
                generation_request_id,
                json.dumps(result) if result is not None else None,
                json.dumps(error) if error is not None else None,
                time.time(),
                key,
            ),
            expect_rows=1,
        )

    async def forget(self, key: str) -> None:
        """Drop a record so its input counts as never sent."""
        await anyio.to_thread.run_sync(
            lambda: self._run("DELETE FROM outcomes WHERE key = ?", (key,))
        )

    def _run(
        self, sql: str, parameters: tuple[Any, ...], *, expect_rows: int | None = None
    ) -> list[Any]:
        with self._lock:
            if self._db is None:
                raise JournalError(str(self.path), "closed")
            try:
                cursor = self._db.execute(sql, parameters)
                rows = cursor.fetchall()
            except sqlite3.Error as exc:
                raise JournalError(str(self.path), str(exc)) from exc
            if expect_rows is not None and cursor.rowcount != expect_rows:
                raise JournalError(
                    str(self.path),
                    f"expected to change {expect_rows} row(s), changed {cursor.rowcount}",
                )
            return rows
