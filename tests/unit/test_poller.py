"""The client's one poller: 404s right after acceptance, ids nobody waits for, closing."""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable

import anyio
import httpx
import pytest
import respx

from getty_ai_async import AsyncGettyAI, errors

from ._helpers import API, GEN_ID, ClientFactory, finished, pending, url

POST_PATH = "/v3/ai/image-generations"
GET_PATH = f"/v3/ai/image-generations/{GEN_ID}"


async def test_a_404_right_after_acceptance_is_the_service_catching_up(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    router.post(url(POST_PATH)).respond(202, json=pending())
    poll = router.get(url(GET_PATH)).mock(
        side_effect=[
            respx.MockResponse(404, json={"message": "not found"}),
            respx.MockResponse(404, json={"message": "not found"}),
            respx.MockResponse(200, json=finished()),
        ]
    )
    client = make_client(not_found_grace=5.0)
    generation = await client.generations.create("fox")
    assert generation.generation_request_id == GEN_ID
    assert poll.call_count == 3
    assert client.limiter.in_use == 0


async def test_a_404_past_the_grace_is_final(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    router.post(url(POST_PATH)).respond(202, json=pending())
    router.get(url(GET_PATH)).respond(404, json={"message": "not found"})
    client = make_client(not_found_grace=0.02)
    with pytest.raises(errors.NotFoundError):
        await client.generations.create("fox")
    assert client.limiter.in_use == 0


async def test_a_404_for_an_id_this_client_never_saw_accepted_is_final_at_once(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    poll = router.get(url(GET_PATH)).respond(404, json={"message": "not found"})
    client = make_client(not_found_grace=60)
    with anyio.fail_after(1), pytest.raises(errors.NotFoundError):
        await client.generations.wait(GEN_ID)
    assert poll.call_count == 1


async def test_nobody_waiting_the_poller_still_follows_a_generation_to_its_end(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    router.post(url(POST_PATH)).respond(202, json=pending())
    poll = router.get(url(GET_PATH)).mock(
        side_effect=[respx.MockResponse(202, json=pending())] * 3
        + [respx.MockResponse(200, json=finished())]
    )
    client = make_client()
    await client.generations.create("fox", wait=False)
    with anyio.fail_after(2):
        while client.limiter.in_use:  # noqa: ASYNC110 - a count, no event
            await anyio.sleep(0.001)
    assert poll.call_count == 4


async def test_closing_the_client_stops_polling_and_ends_waits(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    router.post(url(POST_PATH)).respond(202, json=pending())
    poll = router.get(url(GET_PATH)).respond(202, json=pending())
    client = make_client()
    await client.generations.create("fox", wait=False)
    failures: list[BaseException] = []

    async def wait() -> None:
        try:
            await client.generations.wait(GEN_ID)
        except errors.GettyAIError as exc:
            failures.append(exc)

    async with anyio.create_task_group() as group:
        group.start_soon(wait)
        await anyio.sleep(0.02)
        await client.aclose()
    polls = poll.call_count
    await anyio.sleep(0.02)
    assert poll.call_count == polls
    assert len(failures) == 1
    assert "closed" in str(failures[0])


async def test_posts_settled_wakes_when_the_last_post_of_its_body_is_answered(
    make_client: ClientFactory,
) -> None:
    poller = make_client()._poller
    poller.post_leaving("body-a")
    poller.post_leaving("body-a")
    poller.post_answered("body-a")  # nobody waits yet
    woke = anyio.Event()

    async def settle() -> None:
        await poller.posts_settled("body-a", timeout=5)
        woke.set()

    with anyio.fail_after(2):
        async with anyio.create_task_group() as group:
            group.start_soon(settle)
            await anyio.wait_all_tasks_blocked()
            assert not woke.is_set()
            poller.post_answered("body-a")
            await woke.wait()
    await poller.posts_settled("body-a", timeout=5)  # none out: at once


Answer = httpx.Response | Awaitable[httpx.Response]


def numbered_generations(router: respx.MockRouter, poll: Callable[[str], Answer]) -> None:
    """POSTs accept gen-0000, gen-0001, ... in turn; a GET of one is `poll(its id)`."""
    ids = iter(f"gen-{i:04d}" for i in range(100))
    router.post(url(POST_PATH)).mock(
        side_effect=lambda request: httpx.Response(202, json=pending(next(ids)))
    )

    async def answer(request: httpx.Request) -> httpx.Response:
        reply = poll(request.url.path.rsplit("/", 1)[1])
        return await reply if inspect.isawaitable(reply) else reply

    router.get(url__regex=rf"{API}/v3/ai/image-generations/gen-\d+").mock(side_effect=answer)


async def ten_samples(client: AsyncGettyAI) -> None:
    """Create gen-0000 to gen-0009: the first samples of their kind, nothing learned yet."""
    for i in range(10):
        await client.generations.create(f"sample {i}", wait=False)


def still_pending(gen_id: str) -> httpx.Response:
    return httpx.Response(202, json=pending(gen_id))


async def test_a_generation_waiting_for_samples_that_never_teach_is_still_polled(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    polls: dict[str, int] = {}
    done_after: dict[str, float] = {}

    def poll(gen_id: str) -> httpx.Response:
        polls[gen_id] = polls.get(gen_id, 0) + 1
        if anyio.current_time() >= done_after.get(gen_id, math.inf):
            return httpx.Response(200, json=finished(gen_id))
        return still_pending(gen_id)  # the first ten never finish

    numbered_generations(router, poll)
    client = make_client(poll_interval=0.005, max_pending=20)
    await ten_samples(client)
    done_after["gen-0010"] = anyio.current_time() + 0.2
    with anyio.fail_after(5):
        generation = await client.generations.create("the eleventh")
    assert generation.generation_request_id == "gen-0010"
    # Nothing learned: it was polled all the same, but not every 5 ms (40 polls) as the
    # samples were: after 20 ms, then each time its age doubled.
    assert 2 <= polls["gen-0010"] <= 10


async def test_a_generation_waiting_for_samples_has_one_poll_out_at_most(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    # The samples teach while the waiting one's first poll is still out (a slow reply):
    # re-aiming it then must not send a second poll beside that one.
    started = anyio.current_time()
    out: dict[str, int] = {}
    most: dict[str, int] = {}

    async def poll(gen_id: str) -> httpx.Response:
        out[gen_id] = out.get(gen_id, 0) + 1
        most[gen_id] = max(most.get(gen_id, 0), out[gen_id])
        try:
            if gen_id == "gen-0010":
                await anyio.sleep(0.3)
            if anyio.current_time() - started < 0.1:
                return still_pending(gen_id)
            return httpx.Response(200, json=finished(gen_id))
        finally:
            out[gen_id] -= 1

    numbered_generations(router, poll)
    client = make_client(poll_interval=0.01, max_pending=20)
    await ten_samples(client)
    with anyio.fail_after(5):
        await client.generations.create("the eleventh")
    assert most["gen-0010"] == 1


async def test_waiting_for_samples_never_holds_a_lease_past_its_timeout(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    numbered_generations(router, still_pending)  # nothing ever finishes: no sample teaches
    client = make_client(poll_interval=0.02, max_pending=20, lease_timeout=0.35)
    await ten_samples(client)
    await client.generations.create("waits for the samples", wait=False)
    accepted = anyio.current_time()
    with anyio.fail_after(5):
        while client.limiter.in_use:  # noqa: ASYNC110 - a count, no event
            await anyio.sleep(0.005)
    # Its polls came at ages 0.08, 0.16, 0.32 s; the next doubling (0.64 s) would have
    # held the lease almost twice its 0.35 s.
    assert anyio.current_time() - accepted < 0.5


async def test_a_shorter_interval_asked_for_re_times_a_generation_waiting_for_samples(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    def poll(gen_id: str) -> httpx.Response:
        if gen_id == "gen-0010":
            return httpx.Response(200, json=finished(gen_id))
        return still_pending(gen_id)  # the samples never finish

    numbered_generations(router, poll)
    client = make_client(poll_interval=0.2, max_pending=20)
    await ten_samples(client)
    started = anyio.current_time()
    fast = client.with_options(poll_interval=0.005)
    with anyio.fail_after(5):
        await fast.generations.create("the eleventh")
    # First polled after 4 of the caller's intervals (20 ms), not of the client's (0.8 s).
    assert anyio.current_time() - started < 0.4
