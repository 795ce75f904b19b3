"""The in-process lease pool: a fixed cap, or ``"auto"`` that learns the account's cap."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import anyio

from ._auto import AUTO_MAX, AUTO_START, AutoLimit
from ._lease import Lease, LimiterStatistics, RoomWaiters
from ._rate import RateBudget

if TYPE_CHECKING:
    from ._transport import RequestBudget

__all__ = ["DEFAULT_LEASE_TTL", "MaxPending", "PendingLimiter"]

MaxPending = int | Literal["auto"]

DEFAULT_LEASE_TTL = 90.0
"""A generation can stay pending about a minute; a lease outlives that unrefreshed."""


class _Waiter:
    __slots__ = ("event", "lease")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.lease: Lease | None = None


class PendingLimiter:
    """Leases on the pending cap, for one process (the default `AsyncGettyAI.limiter`).

    With an int, at most that many leases are out. With ``"auto"`` the limit starts at
    4 and grows by one per submit the service accepts while it holds most of the limit,
    until the first 429 of the pending cap; such a 429 sets the ceiling to the
    generations of ours pending at that moment. A
    429 with Retry-After (the request rate) never lowers it. After a stretch without
    refusals it probes one above the ceiling, and once a probe succeeds it grows
    quickly (doubling its steps) until the next refusal, so a cap raised mid-run is
    found in a few generation-times; refusals in a row halve it, so a lowered cap is
    found within one (the rules: `getty_ai_async._auto`).
    """

    def __init__(
        self,
        max_pending: MaxPending,
        *,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        ceiling: int = AUTO_MAX,
    ) -> None:
        self.adaptive = max_pending == "auto"
        if isinstance(max_pending, bool) or not (
            self.adaptive or (isinstance(max_pending, int) and max_pending >= 1)
        ):
            raise ValueError(f"max_pending must be a positive int or 'auto', got {max_pending!r}")
        if not lease_ttl > 0:
            raise ValueError(f"lease_ttl must be > 0 seconds, got {lease_ttl!r}")
        self._lease_ttl = lease_ttl
        self._auto = AutoLimit(maximum=ceiling) if self.adaptive else None
        self._limit = AUTO_START if self.adaptive else int(max_pending)
        self._leases: set[Lease] = set()
        self._bound = 0
        self._waiters: deque[_Waiter] = deque()
        self._room = RoomWaiters()
        self._next_expiry = math.inf
        self._refused = 0
        self._expired = 0

    # ----------------------------------------------------------------- reading

    @property
    def lease_ttl(self) -> float:
        return self._lease_ttl

    @property
    def limit(self) -> int:
        """The cap in force now (changes over time in auto mode)."""
        return self._limit

    @property
    def in_use(self) -> int:
        return len(self._leases)

    @property
    def bound_count(self) -> int:
        """Leases whose generation the service accepted and has not reported finished."""
        return self._bound

    @property
    def rate_limited_count(self) -> int:
        """Submits refused with a 429 of the pending cap."""
        return self._refused

    def statistics(self) -> LimiterStatistics:
        return LimiterStatistics(
            limit=self._limit,
            in_use=len(self._leases),
            bound=self._bound,
            waiting=len(self._waiters),
            refused=self._refused,
            expired=self._expired,
        )

    # --------------------------------------------------------------- lifecycle

    def attach(
        self, *, api_key: str, max_requests_per_second: float | None
    ) -> RequestBudget | None:
        # One process: the account needs no name, and the budget is this process's.
        return None if max_requests_per_second is None else RateBudget(max_requests_per_second)

    async def connect(self) -> None:
        """Nothing to reach: the leases live in this process's memory."""

    async def aclose(self) -> None:
        """Nothing to release: no connection and no background task of its own."""

    # ------------------------------------------------------------------ leases

    async def acquire(self) -> Lease:
        self._expire_due()
        if not self._waiters and len(self._leases) < self._limit:
            return self._take()
        waiter = _Waiter()
        self._waiters.append(waiter)
        try:
            while waiter.lease is None:
                # Wake up when a lease times out: nobody else would hand it back.
                with anyio.move_on_after(self._seconds_to_expiry()):
                    await waiter.event.wait()
                self._expire_due()
        except BaseException:
            if waiter.lease is not None:
                self._drop(waiter.lease)
            else:
                self._waiters.remove(waiter)
            raise
        return waiter.lease

    async def adopt(self, generation_request_id: str) -> Lease:
        lease = self._take()
        self._bind(lease, generation_request_id)
        return lease

    async def bind(self, lease: Lease, generation_request_id: str) -> None:
        if lease.bound:
            return
        if lease not in self._leases:
            # It expired while its POST was out (a very slow reply): the generation
            # exists all the same, so it counts again, even past the limit.
            lease.released = False
            lease.expires_at = anyio.current_time() + self._lease_ttl
            self._leases.add(lease)
        self._bind(lease, generation_request_id)
        if self._auto is not None:
            self._auto.accepted(self._bound, lease.epoch)
            self._set_limit(self._auto.limit)

    async def refused(self, lease: Lease, *, pending_cap: bool) -> None:
        if pending_cap:
            self._refused += 1
            if self._auto is not None and lease in self._leases:
                # The service refused while it held the generations of ours it had
                # accepted: the account's cap (what is left of it for us) is that many.
                self._auto.refused(self._bound, lease.epoch)
                self._set_limit(self._auto.limit)
        self._drop(lease)

    async def release(self, lease: Lease, *, finished: bool) -> None:
        if lease not in self._leases:
            return
        was_bound = lease.bound
        self._drop(lease, grant=False)
        if was_bound:
            self._room.wake()
            if finished and self._auto is not None:
                self._auto.finished(len(self._leases), self._bound)
                self._limit = max(self._auto.limit, 1)
        self._grant()

    async def refresh(self, leases: Sequence[Lease]) -> None:
        expires_at = anyio.current_time() + self._lease_ttl
        for lease in leases:
            lease.expires_at = expires_at

    async def wait_for_room(self, timeout: float) -> None:
        await self._room.wait(timeout)

    # ---------------------------------------------------------------- internals

    def _take(self) -> Lease:
        lease = Lease(anyio.current_time() + self._lease_ttl)
        if self._auto is not None:
            lease.epoch = self._auto.epoch
        self._leases.add(lease)
        self._next_expiry = min(self._next_expiry, lease.expires_at)
        return lease

    def _bind(self, lease: Lease, generation_request_id: str) -> None:
        lease.generation_request_id = generation_request_id
        self._bound += 1

    def _drop(self, lease: Lease, *, grant: bool = True) -> None:
        if lease in self._leases:
            self._leases.discard(lease)
            lease.released = True
            if lease.bound:
                self._bound -= 1
        if grant:
            self._grant()

    def _grant(self) -> None:
        while self._waiters and len(self._leases) < self._limit:
            waiter = self._waiters.popleft()
            waiter.lease = self._take()
            waiter.event.set()

    def _seconds_to_expiry(self) -> float:
        return max(0.0, self._next_expiry - anyio.current_time())

    def _expire_due(self) -> None:
        now = anyio.current_time()
        if now < self._next_expiry:
            return
        expired = [lease for lease in self._leases if lease.expires_at <= now]
        self._expired += len(expired)
        for lease in expired:
            self._drop(lease)
        self._next_expiry = min((lease.expires_at for lease in self._leases), default=math.inf)

    def _set_limit(self, value: int) -> None:
        self._limit = max(value, 1)
        self._grant()
