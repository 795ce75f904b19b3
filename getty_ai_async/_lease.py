"""The lease interface every pending-cap backend implements (in-process, Redis, ...).

A lease is one unit of the account's cap on generations pending at once. It belongs to
a generation at the service, not to the call that watches it:

1. `acquire` before a POST (waits for room, first come first served);
2. `refused` when the POST created nothing (429, 4xx, never sent): the lease returns at
   once, and a 429 of the pending cap teaches an adaptive limit where the cap is;
3. `bind` when the service accepted the POST (the lease now stands for that id), or
   `adopt` for a generation already pending (resumed from a journal);
4. `refresh` while it is pending (a backend shared by processes expires the leases of
   a holder that stopped refreshing: a killed worker's slots come back by themselves);
5. `release` when the service reports the generation finished, or its lease deadline
   passed, whoever is still listening.

A client calls `attach` once when it is made (the account it works for and the request
budget to draw from), `connect` in its ``async with`` (a shared backend that cannot be
reached fails there, clearly) and `aclose` when it closes.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import anyio

if TYPE_CHECKING:
    from ._transport import RequestBudget

__all__ = ["Lease", "Limiter", "LimiterStatistics", "RoomWaiters"]

_tokens = itertools.count(1)


class Lease:
    """One unit of the pending cap; the object's identity is the holder."""

    __slots__ = ("epoch", "expires_at", "generation_request_id", "released", "token")

    def __init__(self, expires_at: float, token: str | None = None) -> None:
        self.token = token or str(next(_tokens))
        """A name for the lease that backends shared by processes can store."""
        self.generation_request_id: str | None = None
        """The generation it stands for, once the service accepted the POST."""
        self.expires_at = expires_at
        self.released = False
        self.epoch = 0
        """The version of an adaptive limit when the lease was taken: a refusal of a lease
        taken before the limit last changed tells nothing new."""

    @property
    def bound(self) -> bool:
        return self.generation_request_id is not None

    def __repr__(self) -> str:
        return f"Lease({self.token!r}, generation_request_id={self.generation_request_id!r})"


@dataclass(frozen=True, slots=True)
class LimiterStatistics:
    """A snapshot of a limiter, for progress displays and tests."""

    limit: int
    """The cap in force (in ``"auto"`` mode, the learned one)."""
    in_use: int
    """Leases held: POSTs under way plus generations pending at the service."""
    bound: int
    """Leases bound to a generation the service accepted and has not reported finished."""
    waiting: int
    """Callers waiting for a lease."""
    refused: int = 0
    """Submits refused with 429 for the pending cap."""
    expired: int = 0
    """Leases reclaimed because their holder stopped refreshing them."""


@runtime_checkable
class Limiter(Protocol):
    """What `AsyncGettyAI(limiter=...)` accepts: a pool of leases on the pending cap.

    The methods below are the Protocol's signatures (a docstring each, no body):
    `PendingLimiter` (in process) and `RedisLimiter` (shared) implement them.
    """

    @property
    def lease_ttl(self) -> float:
        """Seconds a lease lives without a `refresh`."""

    async def acquire(self) -> Lease:
        """Wait for room, then take a lease (cancellable; nothing is held if cancelled)."""

    async def adopt(self, generation_request_id: str) -> Lease:
        """A bound lease for a generation already pending, taken even past the limit."""

    async def bind(self, lease: Lease, generation_request_id: str) -> None:
        """The service accepted the POST made under `lease`."""

    async def refused(self, lease: Lease, *, pending_cap: bool) -> None:
        """The POST made under `lease` created nothing; `pending_cap` for a cap 429."""

    async def release(self, lease: Lease, *, finished: bool) -> None:
        """The generation ended (`finished`: the service reported it), or was given up."""

    async def refresh(self, leases: Sequence[Lease]) -> None:
        """Keep `leases` alive: their generations are still pending."""

    async def wait_for_room(self, timeout: float) -> None:
        """Return when a bound lease is released (a generation ended), or after `timeout`."""

    def statistics(self) -> LimiterStatistics:
        """A snapshot for progress displays (a shared backend's last known figures)."""

    def attach(
        self, *, api_key: str, max_requests_per_second: float | None
    ) -> RequestBudget | None:
        """Called by the client that uses this limiter: the account's API key (a shared
        backend names its keys after a hash of it) and the client's request-rate budget;
        returns the budget every request draws from (None: no budget)."""

    async def connect(self) -> None:
        """Make sure the backend can be used (`LimiterUnavailableError` if not)."""

    async def aclose(self) -> None:
        """Release connections and background tasks (the client's `aclose` calls it)."""


class RoomWaiters:
    """Refused submits waiting for a generation to end (`Limiter.wait_for_room`).

    One ended generation wakes one waiter, not all: waking every one would send them
    into the same 429 again.
    """

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: deque[anyio.Event] = deque()

    async def wait(self, timeout: float) -> None:
        """Return when `wake` picks this waiter, or after `timeout`."""
        room = anyio.Event()
        self._waiting.append(room)
        try:
            with anyio.move_on_after(timeout):
                await room.wait()
        finally:
            if not room.is_set():
                self._waiting.remove(room)

    def wake(self, count: int = 1) -> None:
        """`count` generations ended: room for as many waiters, oldest first."""
        for _ in range(min(count, len(self._waiting))):
            self._waiting.popleft().set()
