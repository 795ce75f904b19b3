"""A SQLite journal of a fan-out run: what was sent, what came back, what is still pending.

Every state change is committed before the engine acts on it, so a crash at any point
leaves enough on disk to resume without paying twice: a POST is marked ``submitting``
before it is sent and ``pending`` (with the generation id) as soon as it returns.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import anyio.to_thread

__all__ = ["Journal", "JournalRecord", "RecordState"]

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
    updated REAL NOT NULL
)
"""


class RecordState(StrEnum):
    SUBMITTING = "submitting"
    """Marked before the POST: if still so on resume, the POST's fate is unknown."""
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    UNKNOWN = "unknown"
    """The POST may have reached the service but no reply came: never resubmitted."""


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


class Journal:
    """One SQLite file per run; every call runs in a worker thread, off the event loop."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    async def open(self) -> None:
        await anyio.to_thread.run_sync(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        # WAL + NORMAL survives a process crash (the failure we guard against) and keeps
        # commits cheap; only a power loss could drop the last transactions.
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(_SCHEMA)
        self._db = db

    def close(self) -> None:
        """Close the file (safe to call twice, and from synchronous code)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    async def lookup(self, key: str) -> JournalRecord | None:
        return await anyio.to_thread.run_sync(self._lookup, key)

    def _lookup(self, key: str) -> JournalRecord | None:
        rows = self._run(
            "SELECT key, idx, request, state, generation_request_id, result, error, attempts"
            " FROM outcomes WHERE key = ?",
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
        )

    async def submitting(
        self, key: str, index: int, request: dict[str, Any], attempts: int
    ) -> None:
        await anyio.to_thread.run_sync(self._submitting, key, index, request, attempts)

    def _submitting(self, key: str, index: int, request: dict[str, Any], attempts: int) -> None:
        self._run(
            "INSERT INTO outcomes (key, idx, request, state, attempts, updated)"
            " VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(key) DO UPDATE SET state = excluded.state,"
            " attempts = excluded.attempts, updated = excluded.updated",
            (key, index, json.dumps(request), RecordState.SUBMITTING, attempts, time.time()),
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
        )

    async def forget(self, key: str) -> None:
        """Drop a record so its input is submitted again (only for runs that retry failures)."""
        await anyio.to_thread.run_sync(self._run, "DELETE FROM outcomes WHERE key = ?", (key,))

    def _run(self, sql: str, parameters: tuple[Any, ...]) -> list[Any]:
        with self._lock:
            if self._db is None:
                raise RuntimeError(f"journal {self.path} is closed")
            return self._db.execute(sql, parameters).fetchall()
