"""The pending-generation cap: fixed, or adaptive (AIMD) when the account's cap is unknown."""

from __future__ import annotations

import inspect
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import anyio

__all__ = ["MaxPending", "PendingLimiter", "Slot"]

MaxPending = int | Literal["auto"]
Listener = Callable[["Slot"], None]

_AUTO_START = 4
_AUTO_CEILING = 512
_PROBE_ROUNDS = 4
_SLOW_START_EXIT = 0.7
# A slot parked by `create(wait=False)` is given back after this long even if nobody
# polls it: the service finishes generations within about a minute.
_PARKED_TTL = 120.0


class Slot:
    """One unit of the pending cap; identity matters, the object is the borrower."""

    __slots__ = ("accepted", "epoch", "parked", "released")

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.accepted = False
        self.parked = False
        self.released = False


@dataclass(frozen=True, slots=True)
class LimiterStatistics:
    """A snapshot for progress displays."""

    limit: int
    in_use: int
    waiting: int
    parked: int


class PendingLimiter:
    """Caps generations that are submitted and not yet finished.

    A slot is taken before the POST and returned when the generation ends in any way.
    With ``max_pending="auto"`` the limit starts low and grows by one per success until
    the first 429 (slow start: it doubles every round), then by one every few rounds. A
    429 on a submit sets it to the number of generations the service had accepted from
    us and not yet seen finish (30% lower on leaving slow start), once per round: submits
    already in flight when it shrank don't count again.
    """

    def __init__(self, max_pending: MaxPending, *, ceiling: int = _AUTO_CEILING) -> None:
        self.adaptive = max_pending == "auto"
        if isinstance(max_pending, bool) or not (
            self.adaptive or (isinstance(max_pending, int) and max_pending >= 1)
        ):
            raise ValueError(f"max_pending must be a positive int or 'auto', got {max_pending!r}")
        start = _AUTO_START if max_pending == "auto" else int(max_pending)
        self._ceiling = max(ceiling, start)
        self._limit = float(start)
        self._threshold = float(self._ceiling)
        self._epoch = 0
        self._limiter = anyio.CapacityLimiter(start)
        self._parked: dict[str, tuple[Slot, float]] = {}
        self._listeners: list[Callable[[], Listener | None]] = []
        self._accepted = 0
        self.rate_limited_count = 0

    @property
    def limit(self) -> int:
        """The current cap (changes over time in auto mode)."""
        return int(self._limiter.total_tokens)

    @property
    def in_use(self) -> int:
        return int(self._limiter.borrowed_tokens)

    @property
    def accepted_count(self) -> int:
        """Slots whose generation the service accepted and we have not seen end."""
        return self._accepted

    def statistics(self) -> LimiterStatistics:
        stats = self._limiter.statistics()
        return LimiterStatistics(
            limit=self.limit,
            in_use=stats.borrowed_tokens,
            waiting=stats.tasks_waiting,
            parked=len(self._parked),
        )

    async def acquire(self) -> Slot:
        """Wait for a free slot."""
        while True:
            self._expire_parked()
            slot = Slot(self._epoch)
            # Wake up when a parked slot times out: nobody else would release it.
            with anyio.move_on_after(self.seconds_to_parked_expiry()):
                await self._limiter.acquire_on_behalf_of(slot)
                # The round is the one in force when the slot is granted, not when the
                # wait began: a 429 on it must count even if the cap shrank meanwhile.
                slot.epoch = self._epoch
                return slot

    def try_acquire(self) -> Slot | None:
        """A free slot now, or None."""
        self._expire_parked()
        slot = Slot(self._epoch)
        try:
            self._limiter.acquire_on_behalf_of_nowait(slot)
        except anyio.WouldBlock:
            return None
        return slot

    def subscribe(self, callback: Listener) -> None:
        """Call ``callback(slot)`` whenever a slot is released.

        A bound method is held weakly, so an object that forgets to unsubscribe is
        still freed; any other callable is held until `unsubscribe`.
        """
        if inspect.ismethod(callback):
            self._listeners.append(weakref.WeakMethod(callback))
        else:
            self._listeners.append(lambda: callback)

    def unsubscribe(self, callback: Listener) -> None:
        self._listeners = [ref for ref in self._listeners if ref() not in (None, callback)]

    def release(self, slot: Slot) -> None:
        """Give a slot back; releasing twice is harmless."""
        if not slot.released:
            slot.released = True
            if slot.accepted:
                self._accepted -= 1
            self._limiter.release_on_behalf_of(slot)
            for listener in list(self._listeners):
                callback = listener()
                if callback is not None:
                    callback(slot)

    def park(self, slot: Slot, generation_request_id: str) -> None:
        """Keep `slot` busy after the call returns, until `finished(id)` or a timeout."""
        slot.parked = True
        self._parked[generation_request_id] = (slot, anyio.current_time() + _PARKED_TTL)

    def next_parked(self) -> str | None:
        """The parked generation to check next (round robin), or None if none is parked."""
        for generation_request_id in self._parked:
            self._parked[generation_request_id] = self._parked.pop(generation_request_id)
            return generation_request_id
        return None

    def is_parked(self, generation_request_id: str) -> bool:
        return generation_request_id in self._parked

    @property
    def parked_count(self) -> int:
        return len(self._parked)

    def seconds_to_parked_expiry(self) -> float:
        """Until the first parked slot times out (infinity when none is parked)."""
        if not self._parked:
            return math.inf
        first = min(expires for _, expires in self._parked.values())
        return max(0.0, first - anyio.current_time())

    def finished(self, generation_request_id: str) -> None:
        """The generation ended (result, 404, 410): free its parked slot if any."""
        parked = self._parked.pop(generation_request_id, None)
        if parked is not None:
            self.release(parked[0])

    def accepted(self, slot: Slot) -> None:
        """The service accepted the generation holding `slot` (its POST got 200/202)."""
        if not slot.accepted and not slot.released:
            slot.accepted = True
            self._accepted += 1

    def succeeded(self) -> None:
        """A generation finished: in auto mode, grow the limit."""
        if not self.adaptive:
            return
        # Past the first 429, probe one slot higher every few rounds only: each probe
        # that finds the cap costs a 429.
        slow_start = self._limit < self._threshold
        step = 1.0 if slow_start else 1.0 / (self._limit * _PROBE_ROUNDS)
        self._set_limit(self._limit + step)

    def rate_limited(self, slot: Slot) -> None:
        """A submit holding `slot` got 429: in auto mode, shrink once per round.

        The service refused while it held the generations it had accepted from us and
        we have not seen finish, so the account's cap (what is left of it for us) is at
        most that many: go straight there. Submits still in flight don't count.
        """
        self.rate_limited_count += 1
        if not self.adaptive or slot.epoch < self._epoch:
            return
        self._epoch += 1
        estimate = float(min(self._accepted, self.in_use - 1))
        if self._threshold >= self._ceiling:
            # Leaving slow start: `accepted` still counts generations that finished
            # during the burst but are not polled yet, so it overshoots; cut harder.
            estimate = min(estimate, self._limit * _SLOW_START_EXIT)
        self._threshold = max(1.0, estimate)
        self._set_limit(self._threshold)

    def _set_limit(self, value: float) -> None:
        self._limit = min(max(value, 1.0), float(self._ceiling))
        tokens = math.floor(self._limit)
        if tokens != self._limiter.total_tokens:
            self._limiter.total_tokens = tokens

    def _expire_parked(self) -> None:
        if not self._parked:
            return
        now = anyio.current_time()
        for generation_request_id, (_, expires) in list(self._parked.items()):
            if expires <= now:
                self.finished(generation_request_id)
