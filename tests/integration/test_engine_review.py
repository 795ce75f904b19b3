"""Regressions found by an adversarial review of the engine's second design."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from lease_helpers import collect, journal_states, leases_back

from getty_ai_async import AsyncGettyAI, errors
from getty_ai_async._journal import Journal
from getty_ai_async.sandbox import Sandbox

QUICK: dict[str, Any] = {"poll_interval": 0.01, "history_grace": 0.05}


class Delay(httpx.AsyncBaseTransport):
    """Holds the replies of generation POSTs `seconds` (after the service acted)."""

    def __init__(self, sandbox: Sandbox, seconds: float) -> None:
        self.inner = sandbox.transport()
        self.seconds = seconds

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and request.url.path == "/v3/ai/image-generations":
            await anyio.sleep(self.seconds)
        return response


def client_on(
    sandbox: Sandbox, transport: httpx.AsyncBaseTransport, **options: Any
) -> AsyncGettyAI:
    return AsyncGettyAI(
        api_key="k",
        api_secret="s",
        base_url=sandbox.api_base_url,
        token_url=sandbox.token_url,
        transport=transport,
        **(QUICK | options),
    )


async def test_aclose_keeps_the_id_of_a_post_answered_while_closing(tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    sandbox = Sandbox(pending_seconds=0.2, images_per_generation=1)
    async with client_on(sandbox, Delay(sandbox, 0.2)) as client:
        run = client.generate_many(["only"], journal=journal)
        async with run:
            with anyio.fail_after(2):
                while not sandbox.stats.submissions:  # noqa: ASYNC110 - a count
                    await anyio.sleep(0.005)
        # aclose() returned: the POST that was out was answered, and its id recorded.
        assert journal_states(journal) == {"pending": 1}
        again = await collect(client.generate_many(["only"], journal=journal))
    assert [o.ok for o in again] == [True]
    assert sandbox.stats.submissions == 1


async def test_a_lost_post_never_adopts_its_twins_generation() -> None:
    sandbox = Sandbox(pending_seconds=0.05, images_per_generation=1)
    inner = sandbox.transport()
    posts = 0

    class LoseFirstDelaySecond(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            nonlocal posts
            if request.method == "POST" and request.url.path == "/v3/ai/image-generations":
                posts += 1
                if posts == 1:
                    raise httpx.RemoteProtocolError("dropped before the service acted")
                response = await inner.handle_async_request(request)
                await anyio.sleep(0.3)  # the twin's reply comes after the lookup began
                return response
            return await inner.handle_async_request(request)

    async with client_on(sandbox, LoseFirstDelaySecond(), max_pending=2) as client:
        outcomes = await collect(client.generate_many(["same prompt", "same prompt"]))
    ids = [o.generation_request_id for o in outcomes if o.ok]
    uncertain = [o for o in outcomes if isinstance(o.error, errors.SubmissionUncertainError)]
    assert len(ids) == len(set(ids)) == 1, "one generation, reported once"
    assert len(uncertain) == 1
    assert sandbox.stats.submissions == 1


async def test_stopping_while_waiting_to_retry_a_429_leaves_the_input_unsent(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "run.sqlite"
    sandbox = Sandbox(pending_seconds=0.05, qps=1, qps_burst=1, retry_after=5.0)
    async with AsyncGettyAI.sandbox(sandbox, max_pending=4, **QUICK) as client:
        await client.history.page()  # spends the one request the bucket holds
        run = client.generate_many([f"p{i}" for i in range(4)], journal=journal)
        async with run:
            with anyio.fail_after(3):
                while sandbox.stats.rate_limited_qps < 4:  # noqa: ASYNC110 - a count
                    await anyio.sleep(0.005)
    # All four were refused and were waiting for their Retry-After: never sent for good.
    assert "submitting" not in journal_states(journal)


async def test_an_input_error_midrun_stops_cleanly_and_keeps_every_id(tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    sandbox = Sandbox(pending_seconds=0.2, images_per_generation=1)

    def source() -> Iterator[str]:
        yield from ("a", "b", "c")
        raise OSError("the input file went away")

    async with client_on(sandbox, Delay(sandbox, 0.1), max_pending=4) as client:
        with pytest.raises(OSError, match="went away"):
            await collect(client.generate_many(source(), journal=journal))
        states = journal_states(journal)
        await leases_back(client)
    assert states.get("submitting", 0) == 0, states
    assert sum(states.values()) == sandbox.stats.submissions == 3


async def test_client_aclose_ends_calls_waiting_for_a_lease_and_refuses_new_ones() -> None:
    sandbox = Sandbox(pending_seconds=30, images_per_generation=1)
    http = httpx.AsyncClient(transport=sandbox.transport())
    client = AsyncGettyAI(
        api_key="k",
        api_secret="s",
        base_url=sandbox.api_base_url,
        token_url=sandbox.token_url,
        http_client=http,
        max_pending=1,
        **QUICK,
    )
    first = await client.generations.create("first", wait=False)
    failures: list[BaseException] = []

    async def blocked() -> None:
        try:
            await client.generations.create("second", wait=False)
        except errors.ClientClosedError as exc:
            failures.append(exc)

    async with anyio.create_task_group() as group:
        group.start_soon(blocked)
        await anyio.sleep(0.05)
        with anyio.fail_after(2):
            await client.aclose()
    with pytest.raises(errors.ClientClosedError):
        await client.generations.create("after close")
    with pytest.raises(errors.ClientClosedError) as caught:
        await client.generations.wait(first.generation_request_id)
    await http.aclose()
    assert len(failures) == 1
    assert caught.value.generation_request_id == first.generation_request_id
    assert sandbox.stats.submissions_attempted == 1, "nothing sent after the close"


async def test_the_journal_lock_follows_the_file_not_its_name(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    first = Journal(path)
    await first.open()
    try:
        (tmp_path / "link.sqlite").symlink_to(path)
        os.link(path, tmp_path / "hard.sqlite")
        for other in ("link.sqlite", "hard.sqlite"):
            with pytest.raises(errors.JournalLockedError) as caught:
                await Journal(tmp_path / other).open()
            assert "another run of this process" in str(caught.value)
    finally:
        first.close()


async def test_a_transient_404_on_a_resumed_generation_is_not_final(tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    sandbox = Sandbox(pending_seconds=0.3, images_per_generation=1)
    async with AsyncGettyAI.sandbox(sandbox, **QUICK) as client:
        run = client.generate_many(["resumed"], journal=journal)
        async with run:
            while run.stats.pending < 1:  # noqa: ASYNC110 - a counter, no event
                await anyio.sleep(0.005)
    inner = sandbox.transport()
    not_found = 1

    class OneNotFound(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            nonlocal not_found
            if not_found and request.method == "GET" and "/image-generations/" in request.url.path:
                not_found -= 1
                return httpx.Response(404, json={"message": "not found (yet)"})
            return await inner.handle_async_request(request)

    async with client_on(sandbox, OneNotFound()) as client:
        outcomes = await collect(client.generate_many(["resumed"], journal=journal))
    assert [o.ok for o in outcomes] == [True]
    assert journal_states(journal) == {"done": 1}


async def test_a_line_added_in_front_re_pays_nothing(tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    sandbox = Sandbox(pending_seconds=0.02, images_per_generation=1)
    async with AsyncGettyAI.sandbox(sandbox, **QUICK) as client:
        await collect(client.generate_many(["a", "b", "b"], journal=journal))
        again = await collect(client.generate_many(["new", "a", "b", "b"], journal=journal))
    assert sandbox.stats.submissions == 4
    assert sorted(o.replayed for o in again) == [False, True, True, True]


async def test_a_live_run_holding_the_journal_is_a_clear_error_at_once(tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    async with AsyncGettyAI.sandbox(pending_seconds=30, **QUICK) as client:
        held = client.generate_many(["a"], journal=journal)
        async with held:
            while held.stats.pending < 1:  # noqa: ASYNC110 - a counter, no event
                await anyio.sleep(0.005)
            with anyio.fail_after(2), pytest.raises(errors.JournalLockedError) as caught:
                await collect(client.generate_many(["a"], journal=journal))
    assert "close that one first" in str(caught.value)


async def test_the_poller_task_ends_with_the_last_generation() -> None:
    async with AsyncGettyAI.sandbox(pending_seconds=0.05, **QUICK) as client:
        await client.generate("a fox")
        with anyio.fail_after(1):
            while client._poller._task is not None:  # noqa: ASYNC110 - a state
                await anyio.sleep(0.005)


async def test_aclose_honours_the_callers_deadline_on_a_hung_post(tmp_path: Path) -> None:
    sandbox = Sandbox(pending_seconds=0.05, images_per_generation=1)
    async with client_on(sandbox, Delay(sandbox, 30)) as client:
        run = client.generate_many(["hung"], journal=tmp_path / "run.sqlite")
        async with anyio.create_task_group() as group:
            group.start_soon(collect, run)
            while not sandbox.stats.submissions:  # noqa: ASYNC110 - a count
                await anyio.sleep(0.005)
            started = anyio.current_time()
            with anyio.move_on_after(0.3):
                await run.aclose()
            group.cancel_scope.cancel()
        assert anyio.current_time() - started < 2


async def test_a_malformed_reply_once_is_ridden_out() -> None:
    sandbox = Sandbox(pending_seconds=0.05, images_per_generation=1)
    inner = sandbox.transport()
    garbled = 1

    class GarbleOnce(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            nonlocal garbled
            response = await inner.handle_async_request(request)
            if request.method == "GET" and "/image-generations/" in request.url.path and garbled:
                garbled -= 1
                return httpx.Response(200, content=b"<html>a proxy hiccup</html>")
            return response

    async with client_on(sandbox, GarbleOnce()) as client:
        generation = await client.generate("a fox")
        assert generation.images
        assert client.limiter.statistics().in_use == 0
