"""The pending-generation cap: a lease belongs to a generation at the service.

It comes back at once when a POST created nothing, and when the service reports the
generation finished otherwise, whoever is still waiting (the client's poller watches).
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import httpx
import pytest
import respx

from getty_ai_async import AsyncGettyAI, errors

from ._helpers import GEN_ID, HISTORY_PATH, ClientFactory, finished, history_of, pending, url

POST_PATH = "/v3/ai/image-generations"
GET_PATH = f"/v3/ai/image-generations/{GEN_ID}"


async def test_slot_returned_after_400(client: AsyncGettyAI, router: respx.MockRouter) -> None:
    router.post(url(POST_PATH)).respond(400, json={"message": "bad"})
    with pytest.raises(errors.BadRequestError):
        await client.generations.create("fox")
    assert client.limiter.in_use == 0


async def test_slot_returned_after_429_retries_exhausted(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    router.post(url(POST_PATH)).respond(429)
    with pytest.raises(errors.RateLimitError):
        await client.generations.create("fox")
    assert client.limiter.in_use == 0
    assert client.limiter.rate_limited_count >= 1


async def until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait (on the event loop, without sleeping blindly) until `predicate` holds."""
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - a state of the limiter, no event to wait on
            await anyio.sleep(0.001)


async def test_lease_outlives_a_polling_timeout_until_the_generation_ends(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    router.post(url(POST_PATH)).respond(202, json=pending())
    poll = router.get(url(GET_PATH)).respond(202, json=pending())
    with pytest.raises(errors.GenerationTimeoutError):
        await client.generations.create("fox", timeout=0.02)
    # The service still has it pending: it still takes room in the account's cap.
    assert client.limiter.in_use == 1
    poll.respond(200, json=finished())
    await until(lambda: client.limiter.in_use == 0)


async def test_slot_returned_after_connection_error(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    router.post(url(POST_PATH)).mock(side_effect=httpx.ReadTimeout("slow"))
    router.get(url(HISTORY_PATH)).respond(200, json=history_of())
    with pytest.raises(errors.SubmissionUncertainError):
        await client.generations.create("fox")
    assert client.limiter.in_use == 0


async def test_slot_returned_after_error_while_polling(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    router.post(url(POST_PATH)).respond(202, json=pending())
    router.get(url(GET_PATH)).respond(410, json={"message": "expired"})
    with pytest.raises(errors.GoneError):
        await client.generations.create("fox")
    assert client.limiter.in_use == 0


async def test_cancelled_during_a_post_that_created_nothing_the_lease_returns(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(10)
        return httpx.Response(200, json=finished())  # pragma: no cover

    router.post(url(POST_PATH)).mock(side_effect=hang)
    history = router.get(url(HISTORY_PATH)).respond(200, json=history_of())
    with anyio.move_on_after(0.02) as scope:
        await client.generations.create("fox")
    assert scope.cancelled_caught
    # The POST had left: the history is checked in the background before the lease
    # goes back (it shows nothing here).
    await until(lambda: client.limiter.in_use == 0)
    assert history.called


async def test_cancelled_during_a_post_that_created_one_the_poller_follows_it(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(10)
        return httpx.Response(200, json=finished())  # pragma: no cover

    router.post(url(POST_PATH)).mock(side_effect=hang)
    created = {"generation_request_id": GEN_ID, "prompt": "fox"}
    router.get(url(HISTORY_PATH)).respond(200, json=history_of(created))
    poll = router.get(url(GET_PATH)).mock(
        side_effect=[respx.MockResponse(202, json=pending())] * 3
        + [respx.MockResponse(200, json=finished())]
    )
    with anyio.move_on_after(0.02):
        await client.generations.create("fox")
    # Still pending at the service: its lease stays, the poller follows it to the end.
    await until(lambda: poll.call_count >= 1)
    assert client.limiter.statistics().bound == 1
    await until(lambda: client.limiter.in_use == 0)
    assert poll.call_count == 4


async def test_lease_outlives_a_cancelled_wait_until_the_generation_ends(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    router.post(url(POST_PATH)).respond(202, json=pending())
    poll = router.get(url(GET_PATH)).respond(202, json=pending())
    with anyio.move_on_after(0.03) as scope:
        await client.generations.create("fox")
    assert scope.cancelled_caught
    assert poll.call_count >= 1
    assert client.limiter.in_use == 1
    poll.respond(200, json=finished())
    await until(lambda: client.limiter.in_use == 0)


async def test_slot_held_while_waiting(client: AsyncGettyAI, router: respx.MockRouter) -> None:
    in_use_seen: list[int] = []

    def poll(request: httpx.Request) -> httpx.Response:
        in_use_seen.append(client.limiter.in_use)
        if len(in_use_seen) < 3:
            return httpx.Response(202, json=pending())
        return httpx.Response(200, json=finished())

    router.post(url(POST_PATH)).respond(202, json=pending())
    router.get(url(GET_PATH)).mock(side_effect=poll)
    await client.generations.create("fox")
    assert in_use_seen == [1, 1, 1]
    assert client.limiter.in_use == 0


# ------------------------------------------------------------------ parked slots


@pytest.mark.parametrize(
    ("final", "error_class"),
    [
        (respx.MockResponse(200, json=finished()), None),
        (respx.MockResponse(404, json={"message": "unknown"}), errors.NotFoundError),
        (respx.MockResponse(410, json={"message": "expired"}), errors.GoneError),
    ],
    ids=["200", "404", "410"],
)
async def test_wait_false_lease_returns_when_the_poller_sees_the_end(
    router: respx.MockRouter,
    make_client: ClientFactory,
    final: respx.MockResponse,
    error_class: type[Exception] | None,
) -> None:
    client = make_client(not_found_grace=0)
    router.post(url(POST_PATH)).respond(202, json=pending())
    poll = router.get(url(GET_PATH)).mock(
        side_effect=[respx.MockResponse(202, json=pending()), final]
    )

    generation = await client.generations.create("fox", wait=False)
    assert generation.is_pending
    assert client.limiter.in_use == 1
    assert client.limiter.statistics().bound == 1

    # Nobody waits for it, yet the client's poller follows it to its end.
    await until(lambda: client.limiter.in_use == 0)
    assert poll.call_count == 2
    assert client.limiter.statistics().bound == 0


async def test_wait_false_slot_freed_by_wait(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    router.post(url(POST_PATH)).respond(202, json=pending())
    router.get(url(GET_PATH)).mock(
        side_effect=[
            respx.MockResponse(202, json=pending()),
            respx.MockResponse(200, json=finished()),
        ]
    )
    pending_generation = await client.generations.create("fox", wait=False)
    assert client.limiter.in_use == 1
    await client.generations.wait(pending_generation.generation_request_id)
    assert client.limiter.in_use == 0


async def test_wait_false_finished_at_once_holds_no_slot(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    router.post(url(POST_PATH)).respond(200, json=finished())
    generation = await client.generations.create("fox", wait=False)
    assert not generation.is_pending
    assert client.limiter.in_use == 0


async def test_parked_slot_counts_against_the_cap(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    client = make_client(max_pending=1)
    post = router.post(url(POST_PATH)).respond(202, json=pending())
    poll = router.get(url(GET_PATH)).respond(202, json=pending())

    await client.generations.create("first", wait=False)
    assert post.call_count == 1
    with anyio.move_on_after(0.05) as scope:
        await client.generations.create("second", wait=False)
    assert scope.cancelled_caught  # blocked on the cap: the first is still pending
    assert post.call_count == 1
    assert client.limiter.in_use == 1
    # Meanwhile the client's poller kept checking the first one.
    assert poll.call_count >= 1

    poll.respond(200, json=finished())  # the first finishes: the waiting submit sees it
    with anyio.fail_after(1):
        await client.generations.create("second", wait=False)
    assert post.call_count == 2


async def test_cap_bounds_concurrent_pending_generations(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    client = make_client(max_pending=2)
    outstanding: set[str] = set()
    peak = 0
    counter = 0

    def submit(request: httpx.Request) -> httpx.Response:
        nonlocal counter, peak
        counter += 1
        gen_id = f"gen-{counter}"
        outstanding.add(gen_id)
        peak = max(peak, len(outstanding))
        return httpx.Response(202, json=pending(gen_id))

    polls: dict[str, int] = {}

    def poll(request: httpx.Request) -> httpx.Response:
        gen_id = request.url.path.rsplit("/", 1)[1]
        polls[gen_id] = polls.get(gen_id, 0) + 1
        if polls[gen_id] < 3:
            return httpx.Response(202, json=pending(gen_id))
        outstanding.discard(gen_id)
        return httpx.Response(200, json=finished(gen_id))

    router.post(url(POST_PATH)).mock(side_effect=submit)
    router.get(url__regex=r"https://api\.test/v3/ai/image-generations/gen-\d+$").mock(
        side_effect=poll
    )

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(client.generations.create, f"prompt {i}")

    assert counter == 8
    assert peak == 2
    assert not outstanding
    assert client.limiter.in_use == 0
