"""Helpers of the engine tests: leases coming back, journal states, collecting a run."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from getty_ai_async import AsyncGettyAI, GenerationOutcome


async def leases_back(client: AsyncGettyAI, timeout: float = 5.0) -> None:
    """Return once every lease of `client` is back: the service finished what it had."""
    with anyio.fail_after(timeout):
        while client.limiter.statistics().in_use:  # noqa: ASYNC110 - a count, no event
            await anyio.sleep(0.005)


def journal_states(path: Path) -> dict[str, int]:
    """How many inputs a journal holds in each state."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT state, count(*) FROM outcomes GROUP BY state").fetchall()
    return dict(rows)


async def collect(run: AsyncIterator[GenerationOutcome]) -> list[GenerationOutcome]:
    return [outcome async for outcome in run]
