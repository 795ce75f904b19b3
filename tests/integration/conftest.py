"""Fixtures for the integration tests: real clients against the sandbox, never the network."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from getty_ai_async import AsyncGettyAI, RetryPolicy

SandboxClientFactory = Callable[..., AsyncGettyAI]
"""``make(**options)``: `AsyncGettyAI.sandbox(**options)` over test-friendly defaults."""


@pytest.fixture(autouse=True)
def _no_getty_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials or URLs in the developer's environment must not leak into the tests."""
    for name in ("GETTY_API_KEY", "GETTY_API_SECRET", "GETTY_BASE_URL", "GETTY_TOKEN_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fast_retries() -> RetryPolicy:
    """The default retry rules with millisecond waits."""
    return RetryPolicy(
        max_retries=6,
        wait_initial=0.001,
        wait_max=0.005,
        wait_jitter=0.001,
        rate_limit_wait=0.02,
        max_retry_after=0.5,
        max_retry_time=10.0,
    )


@pytest.fixture
async def make_sandbox_client(fast_retries: RetryPolicy) -> AsyncIterator[SandboxClientFactory]:
    """Clients wired to a fresh seeded in-process sandbox each; all closed at teardown.

    Defaults: seed 7, ``time_scale=0.01`` (one simulated second lasts 10 ms),
    ``poll_interval=0.002``, a 5 s polling deadline and `fast_retries`. Any keyword
    overrides them (sandbox fields go to the sandbox, the rest to the client).
    """
    made: list[AsyncGettyAI] = []

    def make(**options: Any) -> AsyncGettyAI:
        defaults: dict[str, Any] = {
            "seed": 7,
            "time_scale": 0.01,
            "poll_interval": 0.002,
            "wait_timeout": 5.0,
            "retry_policy": fast_retries,
            "history_grace": 0.05,
        }
        client = AsyncGettyAI.sandbox(**(defaults | options))
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()
