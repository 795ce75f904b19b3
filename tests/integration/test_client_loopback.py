"""The client over real loopback sockets: uvicorn serving the sandbox on 127.0.0.1.

A normal `AsyncGettyAI` (plain http is allowed for a loopback host) talks to the sandbox
through the whole network stack. The sandbox hands out image URLs on
``http://localhost:PORT``: the same server under another host name, so the client must
treat it as a foreign CDN and send it no credentials. Each test stops its server and
checks that the socket is gone. Every test runs over both transports a client picks
under asyncio: aiohttp's (the default) and httpx's own.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from getty_ai_async import AsyncGettyAI, GenerationOutcome, RetryPolicy, errors
from getty_ai_async._aiohttp import AiohttpTransport
from getty_ai_async.sandbox import FaultConfig, Sandbox, run_in_thread, serve

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy from the environment would take loopback traffic off the machine's stack."""
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True, params=["aiohttp", "httpx"])
def http_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    backend: str = request.param
    monkeypatch.setenv("GETTY_HTTP_BACKEND", backend)
    return backend


def client_for(base_url: str, token_url: str, policy: RetryPolicy, **options: Any) -> AsyncGettyAI:
    return AsyncGettyAI(
        api_key="loopback-key",
        api_secret="loopback-secret",
        base_url=base_url,
        token_url=token_url,
        poll_interval=0.005,
        wait_timeout=10.0,
        retry_policy=policy,
        **options,
    )


@contextlib.asynccontextmanager
async def served(sandbox: Sandbox) -> AsyncIterator[str]:
    """Serve `sandbox` with uvicorn in this event loop (port 0: a free one); its base URL."""
    async with anyio.create_task_group() as tg:
        base_url: str = await tg.start(serve, sandbox, "127.0.0.1", 0)
        try:
            yield base_url
        finally:
            tg.cancel_scope.cancel()


async def assert_stopped(base_url: str, token_url: str, policy: RetryPolicy) -> None:
    """Nothing listens at `base_url` any more: connecting fails before anything is sent."""
    no_retries = dataclasses.replace(policy, max_retries=0)
    async with client_for(base_url, token_url, no_retries) as client:
        with pytest.raises(errors.APIConnectionError) as caught:
            await client.history.page()
    assert not caught.value.may_have_been_sent


def png_signature(path: Path) -> bytes:
    return path.read_bytes()[:8]


def resolved(path: Path) -> Path:
    return path.resolve()


async def test_generate_save_and_generate_many_over_loopback(
    tmp_path: Path, fast_retries: RetryPolicy, http_backend: str
) -> None:
    sandbox = Sandbox(
        seed=3, pending_seconds=2, download_pending_seconds=1, time_scale=0.01, pending_limit=6
    )
    prompts = [f"loopback prompt {i}" for i in range(20)]

    async with served(sandbox) as base_url:
        token_url = f"{base_url}/oauth2/token"
        cdn_base_url = sandbox.cdn_base_url
        async with client_for(base_url, token_url, fast_retries, max_pending=6) as client:
            transport = client._http._transport
            generation = await client.generate("a fox over TCP", aspect_ratio="16:9")
            path = await client.downloads.save(
                generation.generation_request_id, 0, tmp_path, size_name="1k"
            )
            outcomes: list[GenerationOutcome] = []
            async for outcome in client.generate_many(prompts):
                outcomes.append(outcome)

    expected = AiohttpTransport if http_backend == "aiohttp" else httpx.AsyncHTTPTransport
    assert isinstance(transport, expected)
    assert base_url.startswith("http://127.0.0.1:")
    assert cdn_base_url == base_url.replace("127.0.0.1", "localhost")
    assert len(generation.images) == 4
    assert all(image.url and image.url.startswith(cdn_base_url) for image in generation.images)
    assert png_signature(path) == PNG_SIGNATURE
    assert path.parent == resolved(tmp_path)
    assert sorted(o.index for o in outcomes) == list(range(20))
    assert all(o.ok and o.generation is not None for o in outcomes)
    assert {o.request.prompt for o in outcomes if o.request is not None} == set(prompts)
    assert len({o.generation_request_id for o in outcomes}) == 20
    stats = sandbox.stats
    assert stats.submissions == stats.submissions_attempted == 21
    assert stats.rate_limited_pending == 0, "max_pending matches the account's cap"
    assert 1 < stats.peak_pending <= 6
    assert stats.token_requests == 1
    assert stats.cdn_requests == 1
    assert stats.cdn_requests_with_credentials == 0
    assert sandbox.api_base_url == Sandbox.IN_PROCESS_BASE_URL, "URLs restored after serving"
    await assert_stopped(base_url, token_url, fast_retries)


async def test_drop_after_processing_over_a_socket_is_adopted_from_history_not_replayed(
    fast_retries: RetryPolicy,
) -> None:
    faults = FaultConfig(route_drop_rates={"generate": 1.0}, drop_after_processing=True)
    sandbox = Sandbox(seed=5, pending_seconds=1, time_scale=0.01, faults=faults)

    # run_in_thread: uvicorn on its own thread and event loop, stopped when the block ends.
    with run_in_thread(sandbox, port=0) as server:
        async with client_for(server.base_url, server.token_url, fast_retries) as client:
            generation = await client.generate("a costly fox")
            submissions = sandbox.stats.submissions
            attempted = sandbox.stats.submissions_attempted
            in_use = client.limiter.in_use

    # The reply was lost after the service acted: the generation was found in the
    # history (no second POST, no second charge) and waited for like any other.
    assert (submissions, attempted) == (1, 1), "created once, sent once: no silent replay"
    assert len(generation.images) == 4
    assert in_use == 0
    await assert_stopped(server.base_url, server.token_url, fast_retries)


async def test_drop_before_processing_over_a_socket_is_uncertain_after_a_history_check(
    fast_retries: RetryPolicy,
) -> None:
    faults = FaultConfig(route_drop_rates={"generate": 1.0}, drop_after_processing=False)
    sandbox = Sandbox(seed=5, pending_seconds=1, time_scale=0.01, faults=faults)

    with run_in_thread(sandbox, port=0) as server:
        async with client_for(
            server.base_url, server.token_url, fast_retries, history_grace=0.01
        ) as client:
            with pytest.raises(errors.SubmissionUncertainError) as caught:
                await client.generate("a costly fox")
            in_use = client.limiter.in_use

    assert caught.value.history_checked
    cause = caught.value.__cause__
    assert isinstance(cause, errors.APIConnectionError)
    assert cause.may_have_been_sent, "its bytes left: only the history can tell"
    assert sandbox.stats.submissions_attempted == 1
    assert sandbox.stats.submissions == 0
    assert in_use == 0
    await assert_stopped(server.base_url, server.token_url, fast_retries)


async def test_read_timeout_on_a_generation_post_is_not_replayed(
    fast_retries: RetryPolicy,
) -> None:
    # Once slow, the sandbox holds each reply 0.2 s after acting on the request; the
    # client gives up reading after 0.05 s.
    sandbox = Sandbox(
        seed=9, pending_seconds=0, time_scale=0.01, faults=FaultConfig(slow_seconds=20)
    )

    async with served(sandbox) as base_url:
        token_url = f"{base_url}/oauth2/token"
        async with client_for(
            base_url, token_url, fast_retries, timeout=0.05, history_grace=1.0
        ) as client:
            await client.history.page()  # the token fetched and a connection open

            async def slow_for_the_post_only() -> None:
                sandbox.faults.slow = True
                while not sandbox.stats.submissions_attempted:  # noqa: ASYNC110 - no event
                    await anyio.sleep(0.001)
                sandbox.faults.slow = False

            with anyio.fail_after(5):
                async with anyio.create_task_group() as group:
                    group.start_soon(slow_for_the_post_only)
                    await anyio.lowlevel.checkpoint()
                    generation = await client.generations.create("a fox in no hurry", wait=False)
            items = [item async for item in client.history.list()]
            await client.generations.wait(generation.generation_request_id)
            in_use = client.limiter.in_use

    # The reply never came in time: the generation was found in the history instead.
    assert generation.generation_request_id == items[0].generation_request_id
    assert sandbox.stats.submissions_attempted == 1
    assert sandbox.stats.submissions == 1
    assert [item.prompt for item in items] == ["a fox in no hurry"]
    assert in_use == 0
    await assert_stopped(base_url, token_url, fast_retries)
