"""Fixtures for the sandbox tests: sandboxes and authenticated in-process clients."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from sandbox_helpers import Connect

from getty_ai_async.sandbox import Sandbox

SECRET = "secret"


@contextlib.asynccontextmanager
async def _connect(
    sandbox: Sandbox, key: str = "key", secret: str = SECRET, *, token: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=sandbox.transport(), base_url=sandbox.api_base_url
    ) as client:
        client.headers["Api-Key"] = key
        if token:
            reply = await client.post(
                sandbox.token_url,
                data={
                    "grant_type": "client_credentials",
                    "client_id": key,
                    "client_secret": secret,
                },
            )
            reply.raise_for_status()
            client.headers["Authorization"] = f"Bearer {reply.json()['access_token']}"
        yield client


@pytest.fixture
def connect() -> Connect:
    """``async with connect(sandbox, key=...) as client``: an authenticated client."""
    return _connect


@pytest.fixture
def sandbox() -> Sandbox:
    """A sandbox whose generations and downloads finish at once."""
    return Sandbox(pending_seconds=0, download_pending_seconds=0)


@pytest.fixture
async def client(sandbox: Sandbox, connect: Connect) -> AsyncIterator[httpx.AsyncClient]:
    """An authenticated client of ``sandbox``."""
    async with connect(sandbox) as client:
        yield client
