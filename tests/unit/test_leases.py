"""The in-process lease pool: fixed and auto limits, FIFO waits, expiry, room after a refusal."""

from __future__ import annotations

import anyio
import pytest

from getty_ai_async import Limiter, PendingLimiter
from getty_ai_async._auto import probe_wait

from .auto_scenarios import SCENARIOS


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


async def test_a_lease_that_expired_while_its_post_was_out_counts_again_once_bound() -> None:
    limiter = PendingLimiter(1, lease_ttl=0.05)
    slow = await limiter.acquire()  # its POST takes longer than the lease lives
    with anyio.fail_after(1):
        other = await limiter.acquire()
    assert slow.released
    await limiter.bind(slow, "gen-slow")  # the service accepted it all the same
    await limiter.bind(other, "gen-other")
    assert (limiter.in_use, limiter.bound_count) == (2, 2), "both generations take room"
    await limiter.release(slow, finished=True)
    await limiter.release(other, finished=True)
    assert limiter.in_use == 0


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


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_auto_mode(name: str) -> None:
    await SCENARIOS[name](PendingLimiter("auto"))


@pytest.mark.parametrize("bad", [0, -1, True, "many", 1.5])
async def test_max_pending_must_be_a_positive_int_or_auto(bad: object) -> None:
    with pytest.raises(ValueError, match="max_pending"):
        PendingLimiter(bad)  # type: ignore[arg-type]


def test_probes_wait_longer_in_generation_times_as_the_cap_grows() -> None:
    # A refused probe costs one 429: a larger cap has more submissions per
    # generation-time, so it can afford a probe less often per generation-time.
    assert [probe_wait(7), probe_wait(7, 2), probe_wait(7, 4)] == [2, 4, 4]
    assert [probe_wait(16), probe_wait(16, 4), probe_wait(16, 8), probe_wait(16, 12)] == [
        4,
        8,
        12,
        12,
    ]
    assert [probe_wait(32), probe_wait(32, 8), probe_wait(32, 16)] == [8, 16, 16]
