"""`RedisLimiter` on fakeredis (Lua included): the lease interface shared by workers.

Each "worker" is a `RedisLimiter` with a client of its own on one fake server, as
processes on different machines would be.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import fakeredis
import pytest

from getty_ai_async import AsyncGettyAI, Lease, Limiter, RedisLimiter, errors
from getty_ai_async._redis import RedisRateBudget, account_hash

from .auto_scenarios import SCENARIOS

KEY = "key-PUBLIC-1234"
Workers = Callable[..., RedisLimiter]


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
async def workers(server: fakeredis.FakeServer) -> AsyncIterator[Workers]:
    """``workers(**options)``: a new worker's limiter on the shared fake server."""
    made: list[RedisLimiter] = []

    def make(**options: Any) -> RedisLimiter:
        defaults: dict[str, Any] = {"api_key": KEY, "max_pending": 2, "recheck_interval": 0.05}
        limiter = RedisLimiter(
            redis=fakeredis.FakeAsyncRedis(server=server), **(defaults | options)
        )
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.aclose()


async def until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - state kept in Redis, no local event
            await anyio.sleep(0.005)


# ------------------------------------------------------------------ the interface


async def test_a_redis_limiter_is_a_limiter(workers: Workers) -> None:
    assert isinstance(workers(), Limiter)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_auto_mode_runs_the_same_rules_in_lua(name: str, workers: Workers) -> None:
    await SCENARIOS[name](workers(max_pending="auto", lease_ttl=600))


async def test_leases_past_the_limit_are_served_in_arrival_order_across_workers(
    workers: Workers,
) -> None:
    first, second, third = workers(max_pending=1), workers(max_pending=1), workers(max_pending=1)
    held = await first.acquire()
    order: list[str] = []

    async def take(name: str, limiter: RedisLimiter) -> None:
        lease = await limiter.acquire()
        order.append(name)
        await limiter.bind(lease, f"gen-{name}")
        await limiter.release(lease, finished=True)

    async with anyio.create_task_group() as group:
        for name, limiter in (("a", second), ("b", third), ("c", second), ("d", first)):
            group.start_soon(take, name, limiter)
            await anyio.sleep(0.05)  # one round trip puts it in the queue
        assert (await first.account_limits()).waiting == 4
        await first.refused(held, pending_cap=False)
    assert order == ["a", "b", "c", "d"]
    assert (await first.account_limits()).in_use == 0


async def test_a_grant_costs_the_waiter_no_round_trip(workers: Workers) -> None:
    holder, waiter = workers(max_pending=1), workers(max_pending=1, recheck_interval=30)
    held = await holder.acquire()
    await holder.bind(held, "gen-1")
    async with anyio.create_task_group() as group:
        got: list[Lease] = []

        async def take() -> None:
            got.append(await waiter.acquire())

        group.start_soon(take)
        await until(lambda: holder.statistics().waiting == 0 and waiter.round_trips["batch"] == 1)
        await anyio.sleep(0.05)
        await holder.release(held, finished=True)
        with anyio.fail_after(2):  # far sooner than the 30 s re-check: the grant was pushed
            while not got:  # noqa: ASYNC110
                await anyio.sleep(0.005)
    assert waiter.round_trips["batch"] == 1
    assert waiter.round_trips["sync"] <= 1


async def test_a_slot_freed_for_a_waiter_of_the_same_worker_comes_with_the_reply(
    workers: Workers,
) -> None:
    limiter = workers(max_pending=1, recheck_interval=30)
    held = await limiter.acquire()
    await limiter.bind(held, "gen-1")
    async with anyio.create_task_group() as group:
        got: list[Lease] = []

        async def take() -> None:
            got.append(await limiter.acquire())

        group.start_soon(take)
        await until(lambda: limiter.statistics().waiting == 1)
        assert limiter._listener is not None
        limiter._listener.cancel()  # no publish can reach this worker now
        await limiter._listener.wait()
        await limiter.release(held, finished=True)
        with anyio.fail_after(5):  # the re-check is 30 s away: only the reply can grant it
            while not got:  # noqa: ASYNC110
                await anyio.sleep(0.005)
        await limiter.release(got[0], finished=False)


async def test_a_cancelled_waiter_holds_nothing(workers: Workers) -> None:
    limiter = workers(max_pending=1)
    held = await limiter.acquire()
    with anyio.move_on_after(0.05):
        await limiter.acquire()
    limits = await limiter.account_limits()
    assert (limits.waiting, limits.in_use) == (0, 1)
    await limiter.release(held, finished=True)
    assert (await limiter.account_limits()).in_use == 0


async def test_a_bound_lease_counts_until_released_and_is_refreshed_in_one_call(
    workers: Workers,
) -> None:
    limiter = workers(max_pending=8)
    leases = [await limiter.acquire() for _ in range(5)]
    for number, lease in enumerate(leases):
        await limiter.bind(lease, f"gen-{number}")
    before = limiter.round_trips["sync"]
    await limiter.refresh(leases)
    assert limiter.round_trips["sync"] == before + 1, "one round trip for every lease"
    limits = await limiter.account_limits()
    assert (limits.in_use, limits.bound, limits.claims) == (5, 5, 0)
    for lease in leases:
        await limiter.release(lease, finished=True)
        await limiter.release(lease, finished=True)  # twice is harmless
    assert (await limiter.account_limits()).in_use == 0


async def test_a_generation_costs_three_round_trips(workers: Workers) -> None:
    limiter = workers(max_pending=4, recheck_interval=30)  # plus one sync per interval
    await limiter.connect()
    before = sum(limiter.round_trips.values())
    for number in range(10):
        lease = await limiter.acquire()
        await limiter.bind(lease, f"gen-{number}")
        await limiter.release(lease, finished=True)
    assert sum(limiter.round_trips.values()) - before == 30


async def test_lease_operations_made_together_go_to_redis_in_a_few_calls(
    workers: Workers,
) -> None:
    limiter = workers(max_pending=8, recheck_interval=30)
    await limiter.connect()
    before = sum(limiter.round_trips.values())
    leases: list[Lease] = []

    async def take() -> None:
        leases.append(await limiter.acquire())

    async with anyio.create_task_group() as group:
        for _ in range(8):
            group.start_soon(take)
    async with anyio.create_task_group() as group:
        for number, lease in enumerate(leases):
            group.start_soon(limiter.bind, lease, f"gen-{number}")
    async with anyio.create_task_group() as group:
        for lease in leases:
            group.start_soon(partial(limiter.release, finished=True), lease)
    limits = await limiter.account_limits()
    assert (limits.in_use, limits.bound) == (0, 0)
    # One call per group of operations made together (the stats read aside), not 24.
    assert sum(limiter.round_trips.values()) - before - 1 <= 6


class _SlowRedis:
    """`_eval` patched: while `held` is set, every call waits for `released`."""

    def __init__(self, limiter: RedisLimiter, monkeypatch: pytest.MonkeyPatch) -> None:
        self.real = limiter._eval
        self.held = False
        self.released = anyio.Event()
        monkeypatch.setattr(limiter, "_eval", self._eval)

    async def _eval(self, name: str, *args: Any) -> Any:
        if self.held:
            await self.released.wait()
        return await self.real(name, *args)


async def test_a_slot_freed_goes_to_our_waiter_at_once_when_it_is_first_in_line(
    workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter, other = workers(max_pending=1), workers(max_pending=1)
    held = await limiter.acquire()
    await limiter.bind(held, "gen-1")
    got: list[Lease] = []
    async with anyio.create_task_group() as group:

        async def take() -> None:
            got.append(await limiter.acquire())

        group.start_soon(take)
        await until(lambda: limiter.statistics().waiting == 1)
        slow = _SlowRedis(limiter, monkeypatch)
        slow.held = True  # Redis slow from now on: the release does not come back
        group.start_soon(partial(limiter.release, finished=True), held)
        await until(lambda: bool(got))  # granted without waiting for Redis
        slow.released.set()
    limits = await other.account_limits()
    assert (limits.in_use, limits.claims, limits.waiting) == (1, 1, 0), "the count held"


async def test_a_slot_freed_goes_through_the_queue_when_another_workers_waiter_is_first(
    workers: Workers,
) -> None:
    first, second = workers(max_pending=1), workers(max_pending=1)
    held = await first.acquire()
    await first.bind(held, "gen-1")
    order: list[str] = []

    async def take(name: str, limiter: RedisLimiter) -> None:
        lease = await limiter.acquire()
        order.append(name)
        await limiter.release(lease, finished=False)

    async with anyio.create_task_group() as group:
        group.start_soon(take, "second's", second)
        await until(lambda: second.statistics().waiting == 1)
        group.start_soon(take, "first's", first)
        await until(lambda: first.statistics().waiting == 2)
        await first.release(held, finished=True)
    assert order == ["second's", "first's"]


async def test_a_batch_redis_refuses_fails_its_callers_and_waiters(
    workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis.exceptions

    limiter = workers(max_pending=1)
    await limiter.connect()

    async def refusing(name: str, *args: Any) -> Any:
        raise redis.exceptions.ResponseError("ERR something in the script")

    monkeypatch.setattr(limiter, "_eval", refusing)
    with anyio.fail_after(2), pytest.raises(redis.exceptions.ResponseError):
        await limiter.acquire()
    assert not limiter._waiters


async def test_a_cap_lowered_by_another_worker_is_passed_by_one_hand_over_at_most(
    workers: Workers,
) -> None:
    old, new = workers(max_pending=4, recheck_interval=30), workers(max_pending=2)
    held = [await old.acquire() for _ in range(4)]
    for number, lease in enumerate(held):
        await old.bind(lease, f"gen-{number}")
    async with anyio.create_task_group() as group:
        for _ in range(4):  # the old worker's next submissions, queued, first in line
            group.start_soon(old.acquire)
        await until(lambda: old.statistics().waiting == 4)
        group.start_soon(new.acquire)  # a worker told max_pending=2 starts
        await until(lambda: new.statistics().waiting == 5)
        async with anyio.create_task_group() as releases:
            for lease in held:  # every generation ends at one poll: one reply's view
                releases.start_soon(partial(old.release, finished=True), lease)
        limits = await new.account_limits()
        assert limits.limit == 2
        assert limits.in_use <= 2, "one hand-over, then Redis decides with the new cap"
        group.cancel_scope.cancel()


async def test_a_lease_that_expired_in_redis_is_not_handed_over(workers: Workers) -> None:
    stalled, other = workers(max_pending=2, lease_ttl=0.5), workers(max_pending=2)
    held = await stalled.acquire()
    await stalled.bind(held, "gen-stalled")
    await anyio.sleep(0.7)  # no refresh for longer than lease_ttl: Redis reclaims it
    for number in range(2):  # and the slot goes to another worker
        await other.bind(await other.acquire(), f"gen-other-{number}")
    async with anyio.create_task_group() as group:
        group.start_soon(stalled.acquire)
        await until(lambda: stalled.statistics().waiting == 1)
        await stalled.release(held, finished=True)
        limits = await other.account_limits()
        assert (limits.in_use, limits.waiting) == (2, 1), "the waiter still waits"
        group.cancel_scope.cancel()


async def test_a_waiter_redis_has_not_queued_yet_takes_no_slot_ahead_of_others(
    workers: Workers,
) -> None:
    first, second = workers(max_pending=1, recheck_interval=30), workers(max_pending=1)
    held = await first.acquire()
    await first.bind(held, "gen-1")  # first's last reply: nobody waits
    order: list[str] = []

    async def take(name: str, limiter: RedisLimiter) -> None:
        lease = await limiter.acquire()
        order.append(name)
        await limiter.release(lease, finished=False)

    async with anyio.create_task_group() as group:
        group.start_soon(take, "second's", second)
        await until(lambda: second.statistics().waiting == 1)
        group.start_soon(take, "first's", first)
        await anyio.lowlevel.checkpoint()  # queued here, not in Redis yet
        await first.release(held, finished=True)
    assert order == ["second's", "first's"]


async def test_a_waiter_granted_by_a_publish_makes_no_other_waiter_of_ours_first(
    workers: Workers,
) -> None:
    # Queue: ours, theirs, ours. Their release grants our first (by pub/sub); our last
    # reply still showed ours first, but the one now first is theirs.
    ours, theirs = workers(max_pending=2, recheck_interval=30), workers(max_pending=2)
    our_lease, their_lease = await ours.acquire(), await theirs.acquire()
    await ours.bind(our_lease, "gen-ours")
    await theirs.bind(their_lease, "gen-theirs")
    order: list[str] = []

    async def take(name: str, limiter: RedisLimiter) -> None:
        await limiter.acquire()
        order.append(name)

    async with anyio.create_task_group() as group:
        group.start_soon(take, "ours 1", ours)
        await until(lambda: ours.statistics().waiting == 1)
        group.start_soon(take, "theirs", theirs)
        await until(lambda: theirs.statistics().waiting == 2)
        group.start_soon(take, "ours 2", ours)
        await until(lambda: ours.statistics().waiting == 3)
        await theirs.release(their_lease, finished=True)
        await until(lambda: order == ["ours 1"])
        await ours.release(our_lease, finished=True)
        await until(lambda: len(order) == 2)
        group.cancel_scope.cancel()
    assert order == ["ours 1", "theirs"]


async def test_a_hand_over_redis_refuses_is_told_again(
    workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis.exceptions

    limiter, other = workers(max_pending=1, lease_ttl=600), workers(max_pending=1)
    held = await limiter.acquire()
    await limiter.bind(held, "gen-1")
    real_eval = limiter._eval
    busy = [False]

    async def refusing(name: str, *args: Any) -> Any:
        if busy[0] and name == "batch":
            raise redis.exceptions.ResponseError("BUSY Redis is busy running a script")
        return await real_eval(name, *args)

    monkeypatch.setattr(limiter, "_eval", refusing)
    got: list[Lease] = []
    async with anyio.create_task_group() as group:

        async def take() -> None:
            got.append(await limiter.acquire())

        group.start_soon(take)
        await until(lambda: limiter.statistics().waiting == 1)
        busy[0] = True
        with pytest.raises(redis.exceptions.ResponseError):
            await limiter.release(held, finished=True)
        busy[0] = False
    await limiter.bind(got[0], "gen-2")
    await until(lambda: not limiter._released)
    limits = await other.account_limits()
    assert (limits.in_use, limits.bound) == (1, 1), "gen-1 released, gen-2 counted once"


async def test_closing_lets_releases_on_their_way_reach_a_slow_redis(
    workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter, other = workers(max_pending=2), workers(max_pending=2)
    held = [await limiter.acquire() for _ in range(2)]
    for number, lease in enumerate(held):
        await limiter.bind(lease, f"gen-{number}")
    slow = _SlowRedis(limiter, monkeypatch)
    slow.held = True
    async with anyio.create_task_group() as group:
        for lease in held:
            group.start_soon(partial(limiter.release, finished=True), lease)
        await anyio.sleep(0.05)
        group.start_soon(limiter.aclose)
        await anyio.sleep(1.5)  # Redis answers after more than a second
        slow.released.set()
    assert (await other.account_limits()).in_use == 0


async def test_a_slot_passed_on_while_redis_goes_away_is_told_later(
    workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis.exceptions

    limiter, other = workers(max_pending=1, max_outage=5), workers(max_pending=1)
    held = await limiter.acquire()
    await limiter.bind(held, "gen-1")
    real_eval = limiter._eval
    away = [False]

    async def lost(name: str, *args: Any) -> Any:
        if away[0]:
            raise redis.exceptions.ConnectionError("Connection reset by peer")
        return await real_eval(name, *args)

    monkeypatch.setattr(limiter, "_eval", lost)
    got: list[Lease] = []
    async with anyio.create_task_group() as group:

        async def take() -> None:
            got.append(await limiter.acquire())

        group.start_soon(take)
        await until(lambda: limiter.statistics().waiting == 1)
        away[0] = True
        await limiter.release(held, finished=True)
    assert got, "the waiter took the slot"
    assert "gen-1" in limiter._released, "the release is kept to tell Redis later"
    away[0] = False
    await until(lambda: not limiter._released)
    limits = await other.account_limits()
    assert (limits.in_use, limits.bound, limits.claims) == (1, 0, 1)


async def test_adopting_takes_over_a_dead_workers_lease_instead_of_counting_it_twice(
    workers: Workers,
) -> None:
    dead, restarted = workers(max_pending=4), workers(max_pending=4)
    lease = await dead.acquire()
    await dead.bind(lease, "gen-1")
    adopted = await restarted.adopt("gen-1")  # the restarted worker resumes its journal
    limits = await restarted.account_limits()
    assert (limits.in_use, limits.bound) == (1, 1)
    await restarted.release(adopted, finished=True)
    assert (await restarted.account_limits()).in_use == 0


async def test_a_dead_workers_leases_expire_and_wake_a_waiter(workers: Workers) -> None:
    dead = workers(max_pending=1, lease_ttl=0.3)
    alive = workers(max_pending=1, lease_ttl=0.3)
    lease = await dead.acquire()
    await dead.bind(lease, "gen-1")
    # `dead` never refreshes again (its process was killed)
    with anyio.fail_after(3):
        taken = await alive.acquire()
    limits = await alive.account_limits()
    assert limits.expired == 1
    assert limits.in_use == 1
    await alive.release(taken, finished=False)


async def test_a_lease_that_expired_while_its_post_was_out_counts_again_once_bound(
    workers: Workers, server: fakeredis.FakeServer
) -> None:
    stalled, other = workers(max_pending=1), workers(max_pending=1)
    slow = await stalled.acquire()
    # Its worker stalled past the lease's life: Redis dropped it, and gave the slot away.
    redis = fakeredis.FakeAsyncRedis(server=server)
    await redis.zrem(f"getty-ai:{{{account_hash(KEY)}}}:leases", slow.token)
    with anyio.fail_after(3):
        taken = await other.acquire()
    await stalled.bind(slow, "gen-slow")  # the service accepted it all the same
    await other.bind(taken, "gen-other")
    limits = await other.account_limits()
    assert (limits.in_use, limits.bound) == (2, 2), "both generations take room"
    await stalled.release(slow, finished=True)
    await other.release(taken, finished=True)
    assert (await other.account_limits()).in_use == 0


async def test_an_unbound_lease_lives_while_its_worker_does(workers: Workers) -> None:
    # Unbound, it lives 0.75 s (15 re-checks) unless its worker re-checks; a loaded
    # machine may stall the worker's event loop up to 0.7 s without losing it.
    holder = workers(max_pending=1, lease_ttl=1.0, recheck_interval=0.05)
    other = workers(max_pending=1, lease_ttl=1.0, recheck_interval=0.05)
    lease = await holder.acquire()  # a POST that takes its time
    with anyio.move_on_after(2.0):
        await other.acquire()
        pytest.fail("the lease of a live worker expired")
    await holder.refused(lease, pending_cap=False)


async def test_a_dead_waiter_leaves_the_queue(
    workers: Workers, server: fakeredis.FakeServer
) -> None:
    holder, alive = workers(max_pending=1), workers(max_pending=1)
    held = await holder.acquire()
    await holder.bind(held, "gen-1")
    # A worker that died while waiting: first in the queue, its heartbeat long expired.
    fake = fakeredis.FakeAsyncRedis(server=server)
    await fake.zadd(holder._keys[2], {"dead-worker:1": 0})
    await fake.zadd(holder._keys[3], {"dead-worker:1": 1})
    async with anyio.create_task_group() as group:
        got: list[Lease] = []

        async def take() -> None:
            got.append(await alive.acquire())

        group.start_soon(take)
        await anyio.sleep(0.05)
        await holder.release(held, finished=True)
    assert len(got) == 1
    assert (await alive.account_limits()).waiting == 0


async def test_a_slot_granted_to_a_waiter_that_just_died_comes_back_soon(
    workers: Workers, server: fakeredis.FakeServer
) -> None:
    holder = workers(max_pending=1, lease_ttl=600)
    alive = workers(max_pending=1, lease_ttl=600)
    held = await holder.acquire()
    await holder.bind(held, "gen-1")
    # A worker killed while waiting, first in the queue, its heartbeat still fresh.
    fake = fakeredis.FakeAsyncRedis(server=server)
    await fake.zadd(holder._keys[2], {"dead-worker:1": 0})
    await fake.zadd(holder._keys[3], {"dead-worker:1": time.time() * 1000 + 60_000})
    async with anyio.create_task_group() as group:
        got: list[Lease] = []

        async def take() -> None:
            got.append(await alive.acquire())

        group.start_soon(take)
        await anyio.sleep(0.05)
        await holder.release(held, finished=True)  # the slot goes to the dead waiter
        with anyio.fail_after(60):  # it comes back long before a lease would expire
            while not got:  # noqa: ASYNC110
                await anyio.sleep(0.01)
    # What expired is the dead waiter's slot (the short waiter expiry), not a lease.
    assert (await alive.account_limits()).expired == 1


async def test_a_generation_ending_wakes_one_refused_submit_per_worker(workers: Workers) -> None:
    first, second = workers(max_pending=4), workers(max_pending=4)
    leases = [await first.acquire() for _ in range(2)]
    for number, lease in enumerate(leases):
        await first.bind(lease, f"gen-{number}")
    woken: list[str] = []

    async def wait(name: str, limiter: RedisLimiter) -> None:
        await limiter.wait_for_room(5)
        woken.append(name)

    async with anyio.create_task_group() as group:
        for name, limiter in (("a1", first), ("a2", first), ("b1", second)):
            group.start_soon(wait, name, limiter)
        await anyio.sleep(0.05)
        await first.release(leases[0], finished=True)
        await until(lambda: len(woken) == 2)
        assert sorted(woken) == ["a1", "b1"], "one per worker, not all of them"
        await first.release(leases[1], finished=True)
        await until(lambda: len(woken) == 3)


# ------------------------------------------------------------------- the account


async def test_keys_are_named_after_a_hash_of_the_key_and_the_prefix(
    workers: Workers, server: fakeredis.FakeServer
) -> None:
    limiter = workers(prefix="team-a")
    lease = await limiter.acquire()
    await limiter.bind(lease, "gen-1")
    keys = [key.decode() for key in await fakeredis.FakeAsyncRedis(server=server).keys()]
    assert keys
    assert all(key.startswith(f"team-a:{{{account_hash(KEY)}}}:") for key in keys), keys
    assert not any(KEY in key for key in keys)


async def test_two_accounts_do_not_share_a_cap(workers: Workers) -> None:
    mine, theirs = workers(max_pending=1), workers(max_pending=1, api_key="another-key")
    await mine.acquire()
    with anyio.fail_after(1):
        await theirs.acquire()


async def test_a_limiter_serves_one_account(workers: Workers) -> None:
    limiter = workers()
    with pytest.raises(ValueError, match="another account"):
        limiter.attach(api_key="someone-else", max_requests_per_second=None)


async def test_the_learned_ceiling_is_shared(workers: Workers) -> None:
    first = workers(max_pending="auto")
    leases = [await first.acquire() for _ in range(4)]
    for number, lease in enumerate(leases[:3]):
        await first.bind(lease, f"gen-{number}")
    await first.refused(leases[3], pending_cap=True)  # the cap is full at 3
    assert first.limit == 3
    await first.release(leases[0], finished=False)
    second = workers(max_pending="auto")
    await second.connect()
    lease = await second.acquire()
    assert second.limit == 3, "a new worker starts at the ceiling the first one learned"
    limits = await second.account_limits()
    assert (limits.mode, limits.ceiling, limits.refused) == ("auto", 3, 1)
    await second.refused(lease, pending_cap=False)


# ------------------------------------------------- workers that disagree on the cap


async def queued(limiter: RedisLimiter, got: list[Lease]) -> None:
    got.append(await limiter.acquire())


async def test_workers_given_different_caps_all_keep_to_the_lowest(
    workers: Workers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "getty_ai_async.redis")
    low, high = workers(max_pending=1), workers(max_pending=2)
    held = await low.acquire()
    await low.bind(held, "gen-1")
    got: list[Lease] = []
    async with anyio.create_task_group() as group:
        group.start_soon(queued, high, got)
        # One lease is out: with its own cap of 2, `high` would take a second one.
        await until(lambda: (high.statistics().waiting, high.limit) == (1, 1))
        await low.release(held, finished=True)
    await high.release(got[0], finished=False)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "max_pending=2" in warnings[0]
    assert f"worker {low.worker}" in warnings[0]
    assert "max_pending=1" in warnings[0]
    assert "same max_pending" in warnings[0]
    limits = await high.account_limits()
    assert (limits.mode, limits.limit) == ("1", 1)
    assert limits.workers == {low.worker: "1", high.worker: "2"}


async def test_a_worker_started_with_a_lower_cap_lowers_it_for_those_running(
    workers: Workers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "getty_ai_async.redis")
    high, low = workers(max_pending=2), workers(max_pending=1)
    held = await high.acquire()
    got: list[Lease] = []
    async with anyio.create_task_group() as group:
        group.start_soon(queued, low, got)
        await until(lambda: low.statistics().waiting == 1)
        group.start_soon(queued, high, got)  # the cap is 1 now, for `high` too
        await until(lambda: (high.statistics().waiting, high.limit) == (2, 1))
        await high.refused(held, pending_cap=False)
        await until(lambda: len(got) == 1)
        await low.refused(got[0], pending_cap=False)
    assert [lease.token.startswith(low.worker) for lease in got] == [True, False]
    await high.refused(got[1], pending_cap=False)
    assert any(
        f"worker {low.worker}" in record.getMessage() and record.name == "getty_ai_async.redis"
        for record in caplog.records
    )


async def test_a_worker_that_closes_takes_its_lower_cap_along(workers: Workers) -> None:
    low, high = workers(max_pending=1), workers(max_pending=3)
    lease = await low.acquire()
    await low.release(lease, finished=False)
    await low.aclose()  # its cap would otherwise count for its lease_ttl (90 s)
    held = [await high.acquire() for _ in range(3)]
    assert high.limit == 3
    assert (await high.account_limits()).workers == {high.worker: "3"}
    for lease in held:
        await high.release(lease, finished=False)


async def test_a_closed_worker_stays_gone_when_its_waiters_give_up_after(
    workers: Workers,
) -> None:
    holder, low = workers(max_pending=3), workers(max_pending=1)
    held = await holder.acquire()

    async def wait() -> None:
        with pytest.raises(RuntimeError, match="closed"):
            await low.acquire()

    async with anyio.create_task_group() as group:
        group.start_soon(wait)
        await until(lambda: low.statistics().waiting == 1)
        await low.aclose()  # the waiter takes its place out of the queue afterwards
    limits = await holder.account_limits()
    assert (limits.workers, limits.waiting) == ({holder.worker: "3"}, 0)
    await holder.release(held, finished=False)


async def test_a_killed_workers_lower_cap_lapses_with_its_lease_ttl(workers: Workers) -> None:
    killed, high = workers(max_pending=1, lease_ttl=0.3), workers(max_pending=3)
    lease = await killed.acquire()
    await killed.release(lease, finished=False)
    # `killed` never calls Redis again: its cap counts until 0.3 s after its last call.
    with anyio.fail_after(3):
        held = [await high.acquire() for _ in range(3)]
    assert high.limit == 3
    for lease in held:
        await high.release(lease, finished=False)


async def test_while_a_worker_with_a_fixed_cap_is_live_auto_ones_keep_to_it(
    workers: Workers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "getty_ai_async.redis")
    fixed, auto = workers(max_pending=1), workers(max_pending="auto")
    held = await fixed.acquire()
    await fixed.bind(held, "gen-1")
    got: list[Lease] = []
    async with anyio.create_task_group() as group:
        group.start_soon(queued, auto, got)
        await until(lambda: (auto.statistics().waiting, auto.limit) == (1, 1))
        await fixed.release(held, finished=True)
    await auto.refused(got[0], pending_cap=True)  # learns nothing under a fixed cap
    limits = await auto.account_limits()
    assert (limits.mode, limits.limit, limits.ceiling) == ("1", 1, None)
    assert "max_pending='auto'" in caplog.text
    assert "max_pending=1" in caplog.text
    await fixed.aclose()
    lease = await auto.acquire()
    assert (await auto.account_limits()).mode == "auto"
    await auto.release(lease, finished=False)


# ----------------------------------------------------------------- Redis trouble


def test_the_password_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    limiter = RedisLimiter("rediss://worker:s3cr3t-pw@redis.example:6380/2?ssl_cert_reqs=none")
    assert "s3cr3t" not in repr(limiter)
    assert limiter.url == "rediss://worker:***@redis.example:6380/2"


def test_urls_are_checked() -> None:
    with pytest.raises(ValueError, match="not a Redis URL"):
        RedisLimiter("http://:pw@example.com")
    with pytest.raises(ValueError, match="GETTY_REDIS_URL"):
        RedisLimiter()
    with pytest.raises(ValueError, match="max_pending"):
        RedisLimiter("redis://localhost", max_pending=0)
    with pytest.raises(ValueError, match=r"not a valid Redis URL: redis://:\*\*\*@h:x/0") as bad:
        RedisLimiter("redis://:pw@h:x/0")
    assert "pw" not in str(bad.value)


def test_a_rediss_url_makes_a_tls_client() -> None:
    import redis.asyncio

    limiter = RedisLimiter("rediss://:pw@localhost:6380/0", api_key=KEY)
    client = limiter._redis()
    assert isinstance(client, redis.asyncio.Redis)
    assert client.connection_pool.connection_class is redis.asyncio.SSLConnection


@pytest.mark.parametrize("name", ["socket_timeout", "socket_connect_timeout"])
@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "5"])
def test_the_socket_timeouts_are_positive_finite_seconds(name: str, bad: Any) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be"):
        RedisLimiter("redis://localhost", api_key=KEY, **{name: bad})


def test_the_socket_timeouts_go_to_the_client_made_from_the_url() -> None:
    options = RedisLimiter("redis://localhost", api_key=KEY)._redis().connection_pool
    assert options.connection_kwargs["socket_timeout"] == 10.0
    assert options.connection_kwargs["socket_connect_timeout"] == 5.0
    limiter = RedisLimiter(
        "redis://localhost", api_key=KEY, socket_timeout=0.5, socket_connect_timeout=0.25
    )
    options = limiter._redis().connection_pool
    assert options.connection_kwargs["socket_timeout"] == 0.5
    assert options.connection_kwargs["socket_connect_timeout"] == 0.25
    with pytest.raises(ValueError, match=r"socket_timeout .* the redis client you pass"):
        RedisLimiter(redis=fakeredis.FakeAsyncRedis(), socket_timeout=0.5)


async def test_a_redis_that_never_answers_is_unavailable_after_socket_timeout() -> None:
    async def silent(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await anyio.sleep_forever()  # takes the connection, never replies

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as group:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 - anyio, not Django
        limiter = RedisLimiter(f"redis://127.0.0.1:{port}/0", api_key=KEY, socket_timeout=0.1)
        group.start_soon(listener.serve, silent)
        with anyio.fail_after(5), pytest.raises(errors.LimiterUnavailableError, match="Timeout"):
            await limiter.connect()  # the default socket timeout would wait 10 s
        group.cancel_scope.cancel()
    await limiter.aclose()


async def test_unreachable_at_start_is_a_clear_error(caplog: pytest.LogCaptureFixture) -> None:
    limiter = RedisLimiter("redis://:hunter2@127.0.0.1:1/0", api_key=KEY)
    with pytest.raises(errors.LimiterUnavailableError) as caught:
        await limiter.acquire()
    message = str(caught.value)
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in message
    assert "hunter2" not in message + caplog.text
    await limiter.aclose()


async def test_lost_mid_run_new_leases_wait_then_a_clear_error(
    workers: Workers, server: fakeredis.FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "getty_ai_async.redis")
    limiter = workers(max_pending=4, max_outage=0.3)
    bound = await limiter.acquire()
    await limiter.bind(bound, "gen-1")
    server.connected = False
    started = anyio.current_time()
    with pytest.raises(errors.LimiterUnavailableError, match="unreachable for"):
        await limiter.acquire()
    assert anyio.current_time() - started >= 0.3, "it waited and retried first"
    await limiter.release(bound, finished=True)  # no error: kept to tell Redis later
    assert "unreachable" in caplog.text
    server.connected = True
    await until(lambda: not limiter._released)
    assert (await limiter.account_limits()).in_use == 0


async def test_a_pause_shorter_than_max_outage_goes_unnoticed(
    workers: Workers, server: fakeredis.FakeServer
) -> None:
    limiter = workers(max_pending=4, max_outage=5)
    await limiter.connect()
    server.connected = False
    async with anyio.create_task_group() as group:
        got: list[Lease] = []

        async def take() -> None:
            got.append(await limiter.acquire())

        group.start_soon(take)
        await anyio.sleep(0.3)
        assert not got
        server.connected = True
    assert len(got) == 1


async def test_a_restarted_empty_redis_gets_every_lease_back(
    workers: Workers, server: fakeredis.FakeServer
) -> None:
    limiter = workers(max_pending=8)
    leases = [await limiter.acquire() for _ in range(3)]
    for number, lease in enumerate(leases[:2]):
        await limiter.bind(lease, f"gen-{number}")
    await fakeredis.FakeAsyncRedis(server=server).flushall()  # restarted without its data
    other = workers(max_pending=8)
    await other.connect()
    lease = await limiter.acquire()  # Redis answers "fresh": the worker re-registers
    await until(lambda: not limiter._needs_sync)
    limits = await other.account_limits()
    assert (limits.bound, limits.claims) == (2, 2)
    await limiter.refused(lease, pending_cap=False)


# --------------------------------------------------------------- shared budget


async def test_the_request_budget_is_shared_by_every_worker(workers: Workers) -> None:
    budgets = [
        workers().attach(api_key=KEY, max_requests_per_second=20),
        workers().attach(api_key=KEY, max_requests_per_second=20),
    ]
    assert all(isinstance(budget, RedisRateBudget) for budget in budgets)
    started = anyio.current_time()
    async with anyio.create_task_group() as group:
        for budget in budgets:
            for _ in range(5):
                assert budget is not None
                group.start_soon(budget.acquire)
    # 10 requests at 20/s between them: the last one goes out about 0.45 s after the first.
    assert anyio.current_time() - started >= 0.4


async def test_a_429_anywhere_slows_the_shared_budget(workers: Workers) -> None:
    first, second = (
        workers().attach(api_key=KEY, max_requests_per_second=50),
        workers().attach(api_key=KEY, max_requests_per_second=50),
    )
    assert first is not None
    assert second is not None
    await first.acquire()
    first.throttled()
    first.throttled()
    await first.acquire()  # carries the two 429s to Redis
    started = anyio.current_time()
    for _ in range(4):
        await second.acquire()
    # 50/s slowed twice by 30%: about 24.5/s, so four turns take about 0.16 s, not 0.08.
    assert anyio.current_time() - started >= 0.12


# --------------------------------------------------------------- in the client


async def test_the_client_uses_it_for_the_cap_and_the_budget(server: fakeredis.FakeServer) -> None:
    limiter = RedisLimiter(redis=fakeredis.FakeAsyncRedis(server=server), max_pending=3)
    async with AsyncGettyAI.sandbox(
        limiter=limiter,
        pending_seconds=0.5,
        time_scale=0.02,
        pending_limit=3,
        poll_interval=0.005,
        max_requests_per_second=1000,
    ) as client:
        assert isinstance(client._transport.budget, RedisRateBudget)
        outcomes = [outcome async for outcome in client.generate_many(f"p{i}" for i in range(20))]
        assert all(outcome.ok for outcome in outcomes)
        assert client.simulator is not None
        assert client.simulator.stats.peak_pending <= 3
        assert client.simulator.stats.rate_limited_pending == 0
        assert "RedisLimiter" in repr(client)


def test_getty_redis_url_gives_every_client_a_redis_limiter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GETTY_REDIS_URL", "redis://:pw@127.0.0.1:1/0")
    client = AsyncGettyAI(api_key=KEY, max_pending=5)
    limiter = client.limiter
    assert isinstance(limiter, RedisLimiter)
    assert limiter.limit == 5
    assert "pw" not in repr(limiter)


async def test_a_client_whose_redis_is_down_fails_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GETTY_REDIS_URL", "redis://127.0.0.1:1/0")
    with pytest.raises(errors.LimiterUnavailableError, match=re.escape("127.0.0.1:1")):
        async with AsyncGettyAI(api_key=KEY):
            pass


def test_under_trio_it_says_it_needs_asyncio() -> None:
    trio = pytest.importorskip("trio")
    limiter = RedisLimiter(redis=fakeredis.FakeAsyncRedis(), api_key=KEY)

    async def connect() -> None:
        with pytest.raises(RuntimeError, match="asyncio"):
            await limiter.connect()

    trio.run(connect)


async def test_a_redis_that_cannot_take_writes_for_a_moment_is_an_outage_not_an_error(
    workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A failover can leave a worker on a demoted primary for a few seconds (READONLY).
    import redis.exceptions

    limiter = workers(max_pending=1, max_outage=5)
    held = await limiter.acquire()
    await limiter.bind(held, "gen-1")
    real_eval = limiter._eval
    read_only = [True]

    async def refusing_writes(name: str, *args: Any) -> Any:
        if read_only[0]:
            raise redis.exceptions.ReadOnlyError("You can't write against a read only replica.")
        return await real_eval(name, *args)

    monkeypatch.setattr(limiter, "_eval", refusing_writes)
    await limiter.release(held, finished=True)  # no error: kept to tell Redis later
    got: list[Lease] = []
    async with anyio.create_task_group() as group:

        async def take() -> None:
            got.append(await limiter.acquire())

        group.start_soon(take)
        await anyio.sleep(0.3)
        assert not got, "it waits instead of failing"
        read_only[0] = False
    assert len(got) == 1
    await until(lambda: not limiter._released)
    assert (await limiter.account_limits()).in_use == 1, "the release was told, not lost"


async def test_a_waiter_survives_a_stall_of_its_event_loop(workers: Workers) -> None:
    # Redis drops a place in the queue nobody refreshed for its TTL (2 s here); a worker
    # whose loop was blocked that long must queue again, not wait forever.
    holder = workers(max_pending=1, recheck_interval=0.2)
    waiter = workers(max_pending=1, recheck_interval=0.2)
    held = await holder.acquire()
    got: list[Lease] = []
    async with anyio.create_task_group() as group:

        async def take() -> None:
            got.append(await waiter.acquire())

        group.start_soon(take)
        await until(lambda: bool(waiter._waiters))
        await anyio.sleep(0.3)
        time.sleep(2.5)  # noqa: ASYNC251 - the point: the whole event loop is blocked
        await anyio.sleep(0.5)
        await holder.release(held, finished=True)
        with anyio.fail_after(5):
            await until(lambda: bool(got), timeout=5)
    assert len(got) == 1


async def test_cancelling_a_wait_does_not_wait_for_a_redis_that_hangs(
    workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = workers(max_pending=1)
    waiter = workers(max_pending=1)
    await holder.acquire()
    real_eval = waiter._eval

    async def hanging_cancel(name: str, *args: Any) -> Any:
        if name == "batch" and args[0] == "c":
            await anyio.sleep(30)  # a frozen server: no answer until the socket timeout
        return await real_eval(name, *args)

    monkeypatch.setattr(waiter, "_eval", hanging_cancel)
    with anyio.fail_after(5):  # the cancel gives up on Redis after about a second
        with anyio.move_on_after(0.2):
            await waiter.acquire()
    assert not waiter._waiters
