"""Fixtures for the unit tests: a respx router (no network) and a client factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx
import stamina.instrumentation

from getty_ai_async import AsyncGettyAI, _transport

from ._helpers import TOKEN_URL, ClientFactory, client_options, token_json


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GETTY_API_KEY", "GETTY_API_SECRET", "GETTY_BASE_URL", "GETTY_TOKEN_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    """Every HTTP request must match a route; the token endpoint is pre-mocked as "token"."""
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as mock:
        mock.post(TOKEN_URL, name="token").respond(200, json=token_json())
        yield mock


@pytest.fixture
async def make_client(router: respx.MockRouter) -> AsyncIterator[ClientFactory]:
    """Build clients with test-friendly defaults; all are closed at teardown.

    Unless the test brings its own `http_client`, requests go to `router` through an
    `httpx.MockTransport` (same routing and call records as respx's patching, without
    building an SSL context per client, which would dominate the suite's run time).
    """
    made: list[AsyncGettyAI] = []

    def factory(**overrides: Any) -> AsyncGettyAI:
        options = client_options(**overrides)
        if "http_client" not in options:
            options.setdefault("transport", httpx.MockTransport(router.async_handler))
        client = AsyncGettyAI(**options)
        made.append(client)
        return client

    yield factory
    for client in made:
        await client.aclose()


@pytest.fixture
async def client(router: respx.MockRouter, make_client: ClientFactory) -> AsyncGettyAI:
    return make_client()


@pytest.fixture
def retry_waits() -> Iterator[list[float]]:
    """The `wait_for` of every retry stamina schedules while the test runs."""
    waits: list[float] = []
    previous = stamina.instrumentation.get_on_retry_hooks()
    stamina.instrumentation.set_on_retry_hooks([lambda details: waits.append(details.wait_for)])
    yield waits
    stamina.instrumentation.set_on_retry_hooks(previous)


@pytest.fixture(autouse=True)
def _small_retry_after_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry-After values under the floor wait 1-2 ms here instead of 0.1-0.2 s."""
    monkeypatch.setattr(_transport, "RETRY_AFTER_FLOOR", 0.001)
