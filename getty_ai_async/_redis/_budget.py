"""The request budget every worker of an account draws from, kept in Redis (GCRA in Lua)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

from .._rate import RateBudget
from ..errors import LimiterUnavailableError

if TYPE_CHECKING:
    from ._limiter import RedisLimiter

__all__ = ["RedisRateBudget"]

log = logging.getLogger("getty_ai_async.redis")


class RedisRateBudget:
    """`max_requests_per_second` for every request of every worker of the account.

    Each request takes its turn with one Lua call (Redis's clock; the answer is how long
    to wait, so workers' clocks never matter). A 429 seen by any worker slows the
    shared pace by 30% (sent with that worker's next call, at no extra round trip);
    each request wins back 2%. While Redis cannot be reached, this worker paces itself
    alone at the full rate (polls of accepted generations must go on).
    """

    def __init__(self, limiter: RedisLimiter, rate: float, *, burst: int = 1) -> None:
        # What paces this worker while Redis is away; it also checks `rate`.
        self._local = RateBudget(rate, burst=burst)
        self.rate = rate
        self._limiter = limiter
        self._burst = max(1, burst)
        self._throttles = 0
        self.throttle_count = 0
        self._alone = False

    async def acquire(self) -> None:
        """Wait for this request's turn in the account's budget."""
        limiter = self._limiter
        throttles, self._throttles = self._throttles, 0
        unavailable: tuple[type[BaseException], ...] = (
            LimiterUnavailableError,
            *limiter._connection_errors(),
        )
        try:
            await limiter._ensure()
            wait_ms = float(await limiter._eval("qps", self.rate, self._burst, throttles))
        except unavailable as exc:
            self._throttles += throttles
            if not self._alone:
                self._alone = True
                log.warning("shared request budget unavailable (%s): pacing this worker alone", exc)
            await self._local.acquire()
            return
        self._alone = False
        if wait_ms > 0:
            await anyio.sleep(wait_ms / 1000)

    def throttled(self) -> None:
        """The service answered 429: slow the account's pace down."""
        self.throttle_count += 1
        self._throttles += 1
        self._local.throttled()
