"""The per-account QPS limit (token bucket) and its Retry-After header."""

from __future__ import annotations

import httpx
import pytest
from sandbox_helpers import FROZEN, Connect, generate

from getty_ai_async.sandbox import Sandbox


async def _history(client: httpx.AsyncClient) -> httpx.Response:
    return await client.get("/v3/ai/generation-history")


async def test_qps_limit_answers_429_with_retry_after(connect: Connect) -> None:
    sandbox = Sandbox(qps=2.0, time_scale=FROZEN)
    async with connect(sandbox) as client:
        assert (await _history(client)).status_code == 200
        assert (await _history(client)).status_code == 200
        refused = await _history(client)
        assert refused.status_code == 429
        assert refused.content == b'{"message":"Too Many Requests"}'
        # One simulated second, sent in real seconds.
        assert refused.headers["retry-after"] == str(int(FROZEN))

        sandbox.advance(0.5)  # one token back at 2 per second
        assert (await _history(client)).status_code == 200
        assert (await _history(client)).status_code == 429
    assert sandbox.stats.rate_limited_qps == 2
    assert sandbox.stats.count("history", 429) == 2


async def test_qps_limit_is_per_account_and_skips_token_and_cdn(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=0, qps=1.0, time_scale=FROZEN)
    async with connect(sandbox) as client, connect(sandbox, key="other") as other:
        url = (await generate(client))["results"][0]["url"]
        assert (await _history(client)).status_code == 429
        assert (await _history(other)).status_code == 200
        for _ in range(3):
            assert (await client.get(url)).status_code == 200
        async with connect(sandbox):  # another token for "key": not rate limited
            pass


async def test_qps_burst(connect: Connect) -> None:
    sandbox = Sandbox(qps=0.5, qps_burst=4, time_scale=FROZEN)
    async with connect(sandbox) as client:
        statuses = [(await _history(client)).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]


@pytest.mark.parametrize(
    ("retry_after", "time_scale", "header"),
    [
        (1.0, 1.0, "1"),
        (2.5, 1.0, "2.5"),
        (1.0, 0.25, "0.25"),
        (3.0, 0.01, "0.03"),
        (None, 1.0, None),
    ],
)
async def test_retry_after_is_configurable_and_scaled(
    connect: Connect, retry_after: float | None, time_scale: float, header: str | None
) -> None:
    # A slow refill, so that no token comes back between the two calls at any time_scale.
    sandbox = Sandbox(qps=0.001, retry_after=retry_after, time_scale=time_scale, token_ttl=1e9)
    async with connect(sandbox) as client:
        await _history(client)
        refused = await _history(client)
    assert refused.status_code == 429
    assert refused.headers.get("retry-after") == header
