"""Per-account limits: the pending-generation cap and the request rate (token bucket)."""

from __future__ import annotations

import heapq

__all__ = ["PendingTracker", "RateLimiter"]


class PendingTracker:
    """Ready times of each account's pending generations, in a min-heap.

    Entries leave the heap once their ready time has passed, so counting costs
    O(log n) per finished generation and memory is proportional to what is pending.
    """

    def __init__(self) -> None:
        self._heaps: dict[str, list[int]] = {}

    def count(self, account: str, now_ms: int) -> int:
        """Pending generations of ``account`` at ``now_ms`` (drops finished entries)."""
        heap = self._heaps.get(account)
        if heap is None:
            return 0
        while heap and heap[0] <= now_ms:
            heapq.heappop(heap)
        return len(heap)

    def add(self, account: str, ready_ms: int) -> None:
        """Track one more pending generation of ``account``."""
        heapq.heappush(self._heaps.setdefault(account, []), ready_ms)

    def peek(self, account: str | None, now_ms: int) -> int:
        """Like ``count`` but read-only (safe from another thread); all accounts when None."""
        heaps = list(self._heaps.values()) if account is None else [self._heaps.get(account, [])]
        return sum(1 for heap in heaps for ready in list(heap) if ready > now_ms)


class RateLimiter:
    """A token bucket per account, refilled at ``rate`` tokens per simulated second."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}

    def acquire(self, account: str, now: float, rate: float, burst: int) -> bool:
        """Take one token for ``account``; False when the bucket is empty."""
        tokens, last = self._buckets.get(account, (float(burst), now))
        tokens = min(float(burst), tokens + (now - last) * rate)
        if tokens < 1.0:
            self._buckets[account] = (tokens, now)
            return False
        self._buckets[account] = (tokens - 1.0, now)
        return True
