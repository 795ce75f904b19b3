"""The in-process lease pool: fixed and auto limits, FIFO waits, expiry, room after a refusal."""

from __future__ import annotations

import anyio
import pytest

from getty_ai_async import Lease, Limiter, PendingLimiter


async def test_a_pending_limiter_is_a_limiter() -> None:
    assert isinstance(PendingLimiter(2), Limiter)


async def test_leases_past_the_limit_wait_first_come_first_served() -> None:
    limiter = PendingLimiter(1)
    first = await limiter.acquire()
    order: list[int] = []

    async def take(number: int) -> None:
        lease = await limiter.acquire()
        order.append(number)
        await limiter.release(lease, finished=True)

    async with anyio.create_task_group() as group:
        for number in range(3):
            group.start_soon(take, number)
            await anyio.sleep(0.001)
        assert limiter.statistics().waiting == 3
        await limiter.refused(first, pending_cap=False)
    assert order == [0, 1, 2]
    assert limiter.statistics().in_use == 0


async def test_a_cancelled_waiter_holds_nothing() -> None:
    limiter = PendingLimiter(1)
    held = await limiter.acquire()
    with anyio.move_on_after(0.01):
        await limiter.acquire()
    assert limiter.statistics().waiting == 0
    await limiter.release(held, finished=True)
    assert limiter.in_use == 0


async def test_a_bound_lease_counts_until_released_and_adopt_may_pass_the_limit() -> None:
    limiter = PendingLimiter(1)
    lease = await limiter.acquire()
    await limiter.bind(lease, "gen-1")
    adopted = await limiter.adopt("gen-2")  # already pending at the service
    assert (limiter.in_use, limiter.bound_count) == (2, 2)
    await limiter.release(lease, finished=True)
    await limiter.release(adopted, finished=True)
    await limiter.release(adopted, finished=True)  # twice is harmless
    assert (limiter.in_use, limiter.bound_count) == (0, 0)


async def test_leases_not_refreshed_expire_and_wake_a_waiter() -> None:
    limiter = PendingLimiter(1, lease_ttl=0.05)
    kept = await limiter.acquire()
    await limiter.bind(kept, "gen-1")
    with anyio.fail_after(1):
        other = await limiter.acquire()  # the first one's holder "died"
    assert limiter.statistics().expired == 1
    assert kept.released
    await limiter.refresh([other])
    assert other.expires_at > anyio.current_time()


async def test_room_after_a_refusal_wakes_one_waiter_per_generation_that_ended() -> None:
    limiter = PendingLimiter(4)
    leases = [await limiter.acquire() for _ in range(2)]
    for number, lease in enumerate(leases):
        await limiter.bind(lease, f"gen-{number}")
    woken: list[int] = []

    async def wait(number: int) -> None:
        await limiter.wait_for_room(5)
        woken.append(number)

    async with anyio.create_task_group() as group:
        for number in range(3):
            group.start_soon(wait, number)
        await anyio.sleep(0.01)
        await limiter.release(leases[0], finished=True)
        await anyio.sleep(0.01)
        assert woken == [0], "one generation ended: room for one, not for all"
        await limiter.release(leases[1], finished=True)
        await anyio.sleep(0.01)
        assert woken == [0, 1]
        group.cancel_scope.cancel()


async def finish(limiter: PendingLimiter, count: int, held: list[Lease]) -> None:
    """`count` generations end one by one, each while the limit is in use (`held`)."""
    for number in range(count):
        while len(held) < limiter.limit:
            lease = await limiter.acquire()
            await limiter.bind(lease, f"gen-{number}-{len(held)}")
            held.append(lease)
        await limiter.release(held.pop(0), finished=True)


async def test_auto_grows_only_while_its_limit_is_in_use() -> None:
    limiter = PendingLimiter("auto")
    for number in range(20):  # one at a time: the limit of 4 is never in use
        lease = await limiter.acquire()
        await limiter.bind(lease, f"gen-{number}")
        await limiter.release(lease, finished=True)
    assert limiter.limit == 4


async def test_auto_sets_the_ceiling_to_what_was_pending_at_a_refusal() -> None:
    limiter = PendingLimiter("auto")
    held: list[Lease] = []
    await finish(limiter, 20, held)  # slow start: +1 per generation ended at full use
    assert limiter.limit == 24
    while len(held) > 7:
        await limiter.release(held.pop(), finished=False)
    refused = await limiter.acquire()
    await limiter.refused(refused, pending_cap=True)
    assert limiter.limit == 7, "straight to the number pending, not a multiplicative cut"
    assert limiter.rate_limited_count == 1
    again = await limiter.acquire() if limiter.in_use < limiter.limit else None
    assert again is None, "the pool is full at the new limit"


async def test_auto_is_not_lowered_by_a_rate_429() -> None:
    limiter = PendingLimiter("auto")
    lease = await limiter.acquire()
    await limiter.refused(lease, pending_cap=False)
    assert limiter.limit == 4


async def test_auto_probes_above_the_ceiling_and_grows_fast_while_probes_succeed() -> None:
    limiter = PendingLimiter("auto")
    lease = await limiter.acquire()
    await limiter.bind(lease, "only")
    refused = await limiter.acquire()
    await limiter.refused(refused, pending_cap=True)
    assert limiter.limit == 1
    held = [lease]
    limits = [limiter.limit]
    for _ in range(20):
        await finish(limiter, 1, held)
        limits.append(limiter.limit)
    # A probe one above after two generation-times clean, then steps doubling while
    # no refusal comes (each after half a generation-time at the new limit).
    assert sorted(set(limits)) == [1, 2, 3, 5, 9, 17], limits


async def test_refusals_of_one_burst_teach_the_ceiling_once() -> None:
    limiter = PendingLimiter("auto")
    held: list[Lease] = []
    await finish(limiter, 4, held)
    refusals = [await limiter.acquire() for _ in range(limiter.limit - len(held))]
    for lease in refusals:
        await limiter.refused(lease, pending_cap=True)
    learned = limiter.limit
    assert learned == len(held)
    before = limiter._probe_after
    assert before == 2, "several refusals of one burst did not back the probing off"


@pytest.mark.parametrize("bad", [0, -1, True, "many", 1.5])
async def test_max_pending_must_be_a_positive_int_or_auto(bad: object) -> None:
    with pytest.raises(ValueError, match="max_pending"):
        PendingLimiter(bad)  # type: ignore[arg-type]
