"""A requests-per-second budget shared by every call of a client."""

from __future__ import annotations

import math

import anyio

__all__ = ["RateBudget"]

_SLOWDOWN = 0.7
_RECOVERY = 0.02
_FLOOR = 0.1


class RateBudget:
    """Paces requests to at most `rate` per second (GCRA: no bursts above `burst`).

    A 429 anywhere slows the pace by 30%; each paced request then wins back 2% of the
    gap to the configured rate, so the budget settles just under what the service allows.
    """

    def __init__(self, rate: float, *, burst: int = 1) -> None:
        if not 0 < rate < math.inf:
            raise ValueError(f"max_requests_per_second must be a positive number, got {rate!r}")
        self.rate = rate
        self.current_rate = rate
        self._burst = max(1, burst)
        # GCRA's theoretical arrival time of the next request.
        self._arrival = 0.0
        self.throttle_count = 0

    async def acquire(self) -> None:
        """Wait for this request's turn."""
        interval = 1.0 / self.current_rate
        now = anyio.current_time()
        arrival = max(self._arrival, now)
        self._arrival = arrival + interval
        self.current_rate += (self.rate - self.current_rate) * _RECOVERY
        allowed_at = arrival - interval * (self._burst - 1)
        if allowed_at > now:
            await anyio.sleep(allowed_at - now)

    def throttled(self) -> None:
        """The service answered 429: slow down."""
        self.throttle_count += 1
        self.current_rate = max(_FLOOR, self.current_rate * _SLOWDOWN)
