"""Scenarios of ``max_pending="auto"``, run against every limiter backend.

Each takes a fresh auto-mode limiter (in-process, or Redis on fakeredis) and plays an
account: generations are submitted (acquire + bind), finish (release), or are refused
with a 429 of the pending cap. The limiter is the only thing that knows the rules.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from getty_ai_async import Lease, Limiter

Scenario = Callable[[Limiter], Awaitable[None]]

SCENARIOS: dict[str, Scenario] = {}


def scenario(function: Scenario) -> Scenario:
    SCENARIOS[function.__name__] = function
    return function


class Account:
    """The generations of one account pending at the service, as the limiter sees them.

    With a `cap`, the service refuses a submit while that many are pending (a 429 of the
    pending cap); without one, it accepts every submit.
    """

    def __init__(self, limiter: Limiter, *, cap: int | None = None) -> None:
        self.limiter = limiter
        self.cap = cap
        self.pending: list[Lease] = []
        self.number = 0

    @property
    def limit(self) -> int:
        return self.limiter.statistics().limit

    async def submit(self) -> Lease | None:
        """A submit: accepted (its lease), or refused at the cap (None)."""
        lease = await self.limiter.acquire()
        if self.cap is not None and len(self.pending) >= self.cap:
            await self.limiter.refused(lease, pending_cap=True)
            return None
        self.number += 1
        await self.limiter.bind(lease, f"gen-{self.number}")
        self.pending.append(lease)
        return lease

    async def submit_many(self, count: int) -> None:
        """Submits one after the other, each accepted."""
        for _ in range(count):
            assert await self.submit() is not None

    async def fill(self) -> None:
        """Submit until the limit is reached, or the service refuses one."""
        while len(self.pending) < self.limit:
            if await self.submit() is None:
                return

    async def finish(self, count: int = 1) -> None:
        """The oldest generations end, and each freed slot is filled again at once."""
        for _ in range(count):
            await self.limiter.release(self.pending.pop(0), finished=True)
            await self.fill()

    async def end(self, count: int = 1, *, finished: bool = True) -> None:
        """The oldest generations end (or are given up), and nothing is submitted."""
        for _ in range(count):
            await self.limiter.release(self.pending.pop(0), finished=finished)

    async def adopt(self, count: int) -> None:
        """Generations resumed from a journal: pending, and no news about the cap."""
        for number in range(count):
            self.pending.append(await self.limiter.adopt(f"resumed-{number}"))

    async def refuse(self, lease: Lease | None = None, *, pending_cap: bool = True) -> None:
        """A submit (under `lease`, else a new one) gets a 429."""
        if lease is None:
            lease = await self.limiter.acquire()
        await self.limiter.refused(lease, pending_cap=pending_cap)


@scenario
async def slow_start_grows_on_each_submit_the_service_accepts(limiter: Limiter) -> None:
    account = Account(limiter)
    limits = []
    for _ in range(10):
        await account.submit()
        limits.append(account.limit)
    # One more per acceptance once the service holds three quarters of the limit: no
    # need to wait a generation-time for one to finish.
    assert limits == [4, 4, 5, 6, 7, 8, 9, 10, 11, 12], limits


@scenario
async def slow_start_grows_on_what_the_service_holds_not_on_posts_in_flight(
    limiter: Limiter,
) -> None:
    account = Account(limiter)
    await account.submit_many(2)
    in_flight = [await limiter.acquire() for _ in range(2)]  # two POSTs not answered yet
    await account.end(2)  # 2 of a limit of 4 ended and none is held: nothing proves more
    assert account.limit == 4
    for lease in in_flight:
        await limiter.refused(lease, pending_cap=False)


@scenario
async def slow_start_finds_the_cap_within_a_generation_time_with_one_refusal(
    limiter: Limiter,
) -> None:
    account = Account(limiter, cap=32)
    await account.fill()  # no generation has finished yet
    assert account.limit == 32
    assert len(account.pending) == 32
    assert limiter.statistics().refused == 1


@scenario
async def an_unused_limit_does_not_grow(limiter: Limiter) -> None:
    account = Account(limiter)
    for _ in range(20):  # one generation at a time: the limit of 4 is never used
        await account.submit()
        await account.end()
    assert account.limit == 4


@scenario
async def a_refusal_sets_the_ceiling_to_what_is_pending(limiter: Limiter) -> None:
    account = Account(limiter)
    await account.submit_many(22)
    assert account.limit == 24
    await account.end(15, finished=False)  # the cap dropped to 7, and the rest were given up
    await account.refuse()
    assert account.limit == 7, "straight to the number pending, not a multiplicative cut"
    assert limiter.statistics().refused == 1


@scenario
async def a_rate_429_never_lowers_the_limit(limiter: Limiter) -> None:
    account = Account(limiter)
    await account.refuse(pending_cap=False)
    assert account.limit == 4
    assert limiter.statistics().refused == 0


@scenario
async def a_refusal_is_never_above_the_refused_limit(limiter: Limiter) -> None:
    account = Account(limiter)
    await account.submit_many(6)
    await account.adopt(1)
    assert account.limit == 8
    lease = await limiter.acquire()
    await account.adopt(1)  # 8 pending
    await account.refuse(lease)  # refused with 8 of ours pending under a limit of 8: <= 7
    assert account.limit == 7


@scenario
async def a_stale_refusal_teaches_nothing(limiter: Limiter) -> None:
    account = Account(limiter)
    await account.submit_many(10)
    assert account.limit == 12
    early = await limiter.acquire()
    late = await limiter.acquire()
    await account.refuse(early)  # both were in flight when the cap was hit
    assert account.limit == 10
    await account.refuse(late)  # taken before that change: the same event seen again
    assert account.limit == 10


@scenario
async def posts_in_flight_at_a_refusal_and_accepted_raise_the_ceiling(limiter: Limiter) -> None:
    account = Account(limiter)
    await account.submit_many(10)
    assert account.limit == 12
    await account.end(finished=False)
    refused, *in_flight = [await limiter.acquire() for _ in range(3)]
    await account.refuse(refused)  # 9 accepted so far: ceiling 9
    assert account.limit == 9
    limits = []
    for number, lease in enumerate(in_flight):  # the other two were pending too
        await limiter.bind(lease, f"late-{number}")
        account.pending.append(lease)
        limits.append(account.limit)
    assert limits == [10, 11], "never up to the 12 that was refused"


@scenario
async def refusals_in_a_row_cut_deeper_and_deeper(limiter: Limiter) -> None:
    account = Account(limiter)
    await account.submit_many(30)
    await account.adopt(2)
    assert (account.limit, len(account.pending)) == (32, 32)
    limits = []
    while len(account.pending) > 8:  # the cap was cut to 8: each slot freed is refused
        await account.end(finished=False)
        if len(account.pending) < account.limit:
            await account.refuse()
            limits.append(account.limit)
    assert limits == [31, 29, 25, 17, 8], "cut by 0, 1, 3, 7... below what is pending"
    assert limiter.statistics().refused == 5
    await account.end(finished=False)
    await account.submit()  # accepted at 8: the streak ends
    await account.end(finished=False)
    await account.refuse()
    assert account.limit == 7, "the first of a new streak: one below the limit"


async def _ceiling_of_seven(limiter: Limiter) -> Account:
    account = Account(limiter, cap=7)
    await account.fill()  # refused with 7 pending
    assert account.limit == 7
    assert len(account.pending) == 7
    return account


@scenario
async def probes_after_a_clean_stretch_and_grows_fast_while_they_succeed(limiter: Limiter) -> None:
    account = await _ceiling_of_seven(limiter)
    await account.finish(2 * 7 - 1)
    assert account.limit == 7, "no probe before two generation-times without a refusal"
    account.cap = None  # raised meanwhile
    await account.end()  # the 14th completion: a probe one above
    limits = [account.limit]
    await account.fill()  # the service takes 8 of ours
    for _ in range(2):  # and holds them for a quarter of a generation-time
        await account.end()
        await account.submit()
        limits.append(account.limit)
    for _ in range(18):  # then each accepted submit that fills the limit doubles the step
        await account.submit()
        limits.append(account.limit)
    assert sorted(set(limits)) == [8, 9, 11, 15, 23, 39], limits


@scenario
async def a_probe_finding_the_same_ceiling_waits_longer_next_time(limiter: Limiter) -> None:
    account = await _ceiling_of_seven(limiter)

    async def completions_until_probe() -> int:
        count = 0
        while account.limit == 7:
            await account.end()
            await account.submit()
            count += 1
        return count

    waits = []
    for _ in range(3):
        waits.append(await completions_until_probe())
        await account.refuse()  # the probe is refused: the same ceiling
        assert account.limit == 7
    assert waits == [14, 28, 28], "2, then 4 generation-times (at most)"
