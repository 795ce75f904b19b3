"""The journal file: one owner at a time, a schema version, writes that are checked."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

import pytest

from getty_ai_async import errors
from getty_ai_async._journal import SCHEMA_VERSION, Journal, RecordState


async def test_a_second_opener_is_refused_with_the_file_and_the_holders_pid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "run.sqlite"
    first = Journal(path)
    await first.open()
    monkeypatch.setattr("getty_ai_async._journal._OWN_RUN_GRACE", 0.05)
    with pytest.raises(errors.JournalLockedError) as caught:
        await Journal(path).open()
    assert caught.value.pid == os.getpid()
    assert str(path) in str(caught.value)
    first.close()
    second = Journal(path)
    await second.open()  # the lock went with the close
    second.close()


async def test_a_journal_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(errors.JournalError, match="newer"):
        await Journal(path).open()
    again = Journal(path)  # the failed open left no lock behind
    with pytest.raises(errors.JournalError, match="newer"):
        await again.open()


async def test_a_journal_of_0_1_0_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(
            "CREATE TABLE outcomes (key TEXT PRIMARY KEY, idx INTEGER NOT NULL,"
            " request TEXT NOT NULL, state TEXT NOT NULL, generation_request_id TEXT,"
            " result TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0,"
            " updated REAL NOT NULL)"
        )
        db.execute(
            "INSERT INTO outcomes VALUES ('k', 0, '{}', 'pending', 'gen-1', NULL, NULL, 1, 0)"
        )
        db.commit()
    journal = Journal(path)
    await journal.open()
    record = await journal.lookup("k")
    journal.close()
    assert record is not None
    assert record.generation_request_id == "gen-1"
    assert record.sent_at is None
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_an_update_that_changes_no_row_is_an_error(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "run.sqlite")
    await journal.open()
    try:
        with pytest.raises(errors.JournalError, match="changed 0"):
            await journal.update("never-sent", RecordState.DONE, result={})
        await journal.submitting("k", 0, {"prompt": "p"}, 1)
        await journal.update("k", RecordState.PENDING, generation_request_id="gen-1")
        record = await journal.lookup("k")
        assert record is not None
        assert record.state is RecordState.PENDING
        assert record.sent_at is not None
    finally:
        journal.close()


async def test_a_file_that_is_not_a_journal_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(errors.JournalError, match=str(path)):
        await Journal(path).open()
