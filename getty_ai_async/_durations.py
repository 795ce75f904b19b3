"""How long generations take, learned as they finish: a bounded, streaming estimate.

A histogram over log-spaced buckets (about 3.7% wide, from 10 ms to 1,000 s) holds the
durations seen so far, newer ones weighing more (a weight that grows 1% per sample
instead of decaying every bucket): memory is fixed whatever the number of generations,
an update is O(1), and the estimate follows the service when it speeds up or slows down.
"""

from __future__ import annotations

import math

__all__ = ["DurationEstimate"]

_LOW = 0.01
_PER_DECADE = 64
_DECADES = 5
_BUCKETS = _PER_DECADE * _DECADES
_GROWTH = 1.01
# Once weights grow this large, scale everything down (keeps floats in range).
_RESCALE_AT = 1e12
_MIN_SAMPLES = 5


def _bucket(seconds: float) -> int:
    if seconds <= _LOW:
        return 0
    return min(_BUCKETS - 1, int(math.log10(seconds / _LOW) * _PER_DECADE))


def _upper_edge(bucket: int) -> float:
    return float(_LOW * 10 ** ((bucket + 1) / _PER_DECADE))


class DurationEstimate:
    """Quantiles of recent durations of one kind of work (seconds)."""

    __slots__ = ("_counts", "_total", "_weight", "samples")

    def __init__(self) -> None:
        self._counts = [0.0] * _BUCKETS
        self._total = 0.0
        self._weight = 1.0
        self.samples = 0

    def add(self, seconds: float) -> None:
        """Record one finished piece of work that took `seconds`."""
        self._counts[_bucket(seconds)] += self._weight
        self._total += self._weight
        self._weight *= _GROWTH
        self.samples += 1
        if self._weight > _RESCALE_AT:
            self._counts = [count / self._weight for count in self._counts]
            self._total /= self._weight
            self._weight = 1.0

    def quantile(self, q: float) -> float | None:
        """The `q` quantile (0-1), or None until a few samples were seen."""
        if self.samples < _MIN_SAMPLES:
            return None
        target = q * self._total
        running = 0.0
        for bucket, count in enumerate(self._counts):
            running += count
            if running >= target and count:
                return _upper_edge(bucket - 1) if bucket else _LOW
        return _upper_edge(_BUCKETS - 1)
