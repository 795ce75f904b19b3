"""Waiting for the leases of a client to come back (they follow generations, not calls)."""

from __future__ import annotations

import anyio

from getty_ai_async import AsyncGettyAI


async def leases_back(client: AsyncGettyAI, timeout: float = 5.0) -> None:
    """Return once every lease of `client` is back: the service finished what it had."""
    with anyio.fail_after(timeout):
        while client.limiter.statistics().in_use:  # noqa: ASYNC110 - a count, no event
            await anyio.sleep(0.005)
