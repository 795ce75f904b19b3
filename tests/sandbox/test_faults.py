"""Injected faults: 5xx replies, dropped connections, latency and slow replies."""

from __future__ import annotations

import time

import anyio
import httpx
import pytest
from sandbox_helpers import FROZEN, Connect, generate

from getty_ai_async.sandbox import FaultConfig, Sandbox


async def test_error_rate_answers_5xx_before_processing(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=0)
    async with connect(sandbox) as client:
        sandbox.faults.error_rate = 1.0
        reply = await client.post("/v3/ai/image-generations", json={"prompt": "p"})
        assert reply.status_code == 503
        assert reply.json() == {"message": "Service Unavailable"}
        assert sandbox.stats.submissions == 0

        sandbox.faults.error_status = 500
        assert (await client.get("/v3/ai/generation-history")).status_code == 500

        sandbox.faults.error_rate = 0.0  # changed while running
        await generate(client)
    assert sandbox.stats.faults_injected["error"] == 2
    assert sandbox.stats.count("generate", 503) == 1


async def test_route_error_rates_override_the_global_rate(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=0, faults=FaultConfig(route_error_rates={"generate": 1.0}))
    async with connect(sandbox) as client:
        assert (
            await client.post("/v3/ai/image-generations", json={"prompt": "p"})
        ).status_code == 503
        assert (await client.get("/v3/ai/generation-history")).status_code == 200
        sandbox.faults.error_rate = 1.0
        sandbox.faults.route_error_rates["generate"] = 0.0
        await generate(client)
        assert (await client.get("/v3/ai/generation-history")).status_code == 503


async def test_faults_also_hit_token_and_cdn_routes(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=0)
    async with connect(sandbox) as client:
        url = (await generate(client))["results"][0]["url"]
        sandbox.faults.route_error_rates.update({"cdn": 1.0, "token": 1.0})
        assert (await client.get(url)).status_code == 503
        token = await client.post(
            sandbox.token_url,
            data={"grant_type": "client_credentials", "client_id": "k", "client_secret": "s"},
        )
        assert token.status_code == 503


async def _error_pattern(seed: int) -> list[int]:
    sandbox = Sandbox(seed=seed, require_token=False, faults=FaultConfig(error_rate=0.5))
    async with httpx.AsyncClient(
        transport=sandbox.transport(), base_url=sandbox.api_base_url, headers={"Api-Key": "k"}
    ) as client:
        return [(await client.get("/v3/ai/generation-history")).status_code for _ in range(30)]


async def test_faults_are_seeded() -> None:
    first = await _error_pattern(5)
    assert first == await _error_pattern(5)
    assert first != await _error_pattern(6)
    assert {200, 503} == set(first)


async def test_drop_before_processing_creates_nothing(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=0)
    async with connect(sandbox) as client:
        sandbox.faults.drop_rate = 1.0
        with pytest.raises(httpx.RemoteProtocolError, match="Server disconnected"):
            await client.post("/v3/ai/image-generations", json={"prompt": "p"})
        sandbox.faults.drop_rate = 0.0
        assert sandbox.stats.submissions == 0
        assert sandbox.stats.submissions_attempted == 1
        assert sandbox.stats.requests["generate", 0] == 1
        assert sandbox.stats.faults_injected["drop"] == 1
        history = (await client.get("/v3/ai/generation-history")).json()
        assert history["result_count"] == 0


async def test_drop_after_processing_leaves_the_generation_in_place(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=5.0, time_scale=FROZEN)
    async with connect(sandbox) as client:
        sandbox.faults.route_drop_rates["generate"] = 1.0
        sandbox.faults.drop_after_processing = True
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post("/v3/ai/image-generations", json={"prompt": "fate unknown"})
        # Only the generate route drops; the client can find what it paid for.
        history = (await client.get("/v3/ai/generation-history")).json()
        assert history["result_count"] == 1
        assert history["generations"][0]["prompt"] == "fate unknown"
        assert sandbox.stats.submissions == 1
        assert sandbox.stats.current_pending("key") == 1


async def test_drops_of_empty_replies_still_fail(connect: Connect) -> None:
    # A 202 download reply has no body; the drop must not look like a complete reply.
    sandbox = Sandbox(pending_seconds=0, download_pending_seconds=5.0)
    async with connect(sandbox) as client:
        generation_id = (await generate(client))["generation_request_id"]
        sandbox.faults.drop_rate = 1.0
        sandbox.faults.drop_after_processing = True
        with pytest.raises(httpx.RemoteProtocolError):
            await client.put(
                f"/v3/ai/image-generations/{generation_id}/images/0/download",
                json={"size_name": "1k"},
            )
        assert sandbox.stats.downloads == 1


async def test_latency_delays_replies(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=0, time_scale=0.001)
    async with connect(sandbox) as client:
        sandbox.faults.latency = (60.0, 80.0)  # 60-80 ms real
        started = time.monotonic()
        await client.get("/v3/ai/generation-history")
        assert time.monotonic() - started >= 0.06
        assert sandbox.stats.faults_injected["latency"] == 1


async def test_slow_replies_take_effect_before_the_client_gives_up(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=0, time_scale=0.001)
    async with connect(sandbox) as client:
        sandbox.faults.slow = True
        sandbox.faults.slow_seconds = 10_000.0  # 10 s real: the client gives up first
        with anyio.move_on_after(0.05) as scope:
            await client.post("/v3/ai/image-generations", json={"prompt": "p"})
        assert scope.cancelled_caught
        assert sandbox.stats.submissions == 1
        assert sandbox.stats.faults_injected["slow"] == 1

        sandbox.faults.slow_seconds = 30.0  # 30 ms real
        started = time.monotonic()
        await generate(client)
        assert time.monotonic() - started >= 0.03


def test_fault_config_is_checked() -> None:
    with pytest.raises(ValueError, match="unknown route"):
        FaultConfig(route_error_rates={"generations": 1.0})
    with pytest.raises(ValueError, match="drop_rate"):
        FaultConfig(drop_rate=1.5)
    with pytest.raises(ValueError, match="error_status"):
        FaultConfig(error_status=429)
    with pytest.raises(ValueError, match="latency"):
        FaultConfig(latency=(2.0, 1.0))
