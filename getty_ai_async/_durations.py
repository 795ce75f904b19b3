"""How long generations take, learned as they finish, and when to poll a new one first.

A histogram over log-spaced buckets (about 3.7% wide, from 10 ms to 1,000 s) holds the
durations seen so far, newer ones weighing more (a weight that grows 1% per sample
instead of decaying every bucket): memory is fixed whatever the number of generations,
an update is O(1), and the estimate follows the service when it speeds up or slows down.
"""

from __future__ import annotations

import math
import random

__all__ = ["DurationEstimate", "PollTiming"]

_LOW = 0.01
_PER_DECADE = 64
_DECADES = 5
_BUCKETS = _PER_DECADE * _DECADES
_GROWTH = 1.01
# Once weights grow this large, scale everything down (keeps floats in range).
_RESCALE_AT = 1e12
_MIN_SAMPLES = 5
# The first poll of a generation comes when this share of its kind would have been seen
# finished by a poll.
_FIRST_POLL_QUANTILE = 0.1
# One generation in this many is polled from a random point to keep learning (see
# `PollTiming`); the others are polled when the estimate says they will be ready.
_SAMPLE_EVERY = 8
# Before anything is learned, this many samples are polled from acceptance; generations
# started meanwhile wait for what they teach (`PollTiming.first_poll`).
_FIRST_SAMPLES = 2 * _MIN_SAMPLES


def _bucket(seconds: float) -> int:
    if seconds <= _LOW:
        return 0
    return min(_BUCKETS - 1, int(math.log10(seconds / _LOW) * _PER_DECADE))


class DurationEstimate:
    """Quantiles of recent durations of one kind of work (seconds)."""

    __slots__ = ("_counts", "_highest", "_lowest", "_quantiles", "_total", "_weight", "samples")

    def __init__(self) -> None:
        self._counts = [0.0] * _BUCKETS
        # The extremes seen in each bucket: a quantile is read between them rather than
        # between the bucket's edges, so a sharp edge (nothing is seen finished before
        # it took its time) is not smeared across the bucket it falls in.
        self._lowest = [math.inf] * _BUCKETS
        self._highest = [-math.inf] * _BUCKETS
        self._total = 0.0
        self._weight = 1.0
        self._quantiles: dict[float, float | None] = {}
        self.samples = 0

    def add(self, seconds: float) -> None:
        """Record one finished piece of work that took `seconds`."""
        if not 0.0 <= seconds < math.inf:
            return  # a clock gone wrong, not a duration
        bucket = _bucket(seconds)
        self._counts[bucket] += self._weight
        self._lowest[bucket] = min(self._lowest[bucket], seconds)
        self._highest[bucket] = max(self._highest[bucket], seconds)
        self._total += self._weight
        self._weight *= _GROWTH
        self.samples += 1
        self._quantiles.clear()
        if self._weight > _RESCALE_AT:
            self._counts = [count / self._weight for count in self._counts]
            self._total /= self._weight
            self._weight = 1.0

    def quantile(self, q: float) -> float | None:
        """The `q` quantile (0-1), or None until a few samples were seen."""
        if q not in self._quantiles:  # asked once per poll: a scan of the buckets per add
            self._quantiles[q] = self._scan(q)
        return self._quantiles[q]

    def _scan(self, q: float) -> float | None:
        if self.samples < _MIN_SAMPLES:
            return None
        target = q * self._total
        running = 0.0
        highest = 0.0
        for bucket, count in enumerate(self._counts):
            if not count:
                continue
            if running + count >= target:
                # Spread evenly within the bucket: its width (3.7%) is a large share of
                # the spread of durations that hardly vary.
                low, highest = self._lowest[bucket], self._highest[bucket]
                return low + (highest - low) * (target - running) / count
            running += count
            highest = self._highest[bucket]
        return highest  # rounding left the target a hair above the total


class PollTiming:
    """When to poll a new generation of one kind first, learned from earlier ones.

    Polls of one generation are an interval apart, so what is left to choose is the
    first one. Aimed where a tenth of recent generations had already been seen finished,
    it usually finds this one done or one interval short of done, instead of at a random
    point of the interval as polling from acceptance does: fewer polls and less time
    between finishing and being seen.

    Until a few have finished there is nothing to aim with. A handful of samples are then
    polled every interval from acceptance; the others wait (`first_poll` says None) and
    are aimed once those have taught enough, rather than each polled every interval:
    a first batch of many generations started together would cost as many polls as the
    next few hundred.

    Learning needs polls that are not aimed: a generation whose polls fall at a random
    phase is seen finished a uniform share of an interval after it finished. When such
    polls see them finished is what the aim is taken from; that time less half the gap
    before it is an unbiased sample of how long one took (`durations`). Every
    generation is such a sample until a few were seen, then one in `_SAMPLE_EVERY`,
    polled first at a random point of the interval before the aim (one that finds it
    done already still pulls the aim earlier: a service that speeds up is followed).
    """

    __slots__ = ("_random", "_sampling", "_seen", "_started", "durations")

    def __init__(self, rng: random.Random | None = None) -> None:
        self.durations = DurationEstimate()
        self._seen = DurationEstimate()
        self._random = rng or random.Random()
        self._started = 0
        self._sampling = 0

    def ready_after(self) -> float | None:
        """Seconds after acceptance when a new one is first polled (None: not learned)."""
        return self._seen.quantile(_FIRST_POLL_QUANTILE)

    def first_poll(self, interval: float) -> tuple[float | None, bool]:
        """Seconds from acceptance to a new generation's first poll (None: once
        `ready_after` has an answer), and whether its finish is a sample to learn from
        (`finished` or `lost`); its polls are `interval` apart."""
        self._started += 1
        aim = self.ready_after()
        if aim is None:
            if self._sampling >= _FIRST_SAMPLES:
                return None, False
            self._sampling += 1
            return self._random.uniform(0.0, interval), True
        if self._started % _SAMPLE_EVERY == 0:
            return max(0.0, aim - self._random.uniform(0.0, interval)), True
        return aim, False

    def finished(self, seen_after: float, gap: float) -> None:
        """A sampled generation was first seen finished by a poll sent `seen_after`
        seconds after acceptance, `gap` seconds after the poll before it (or, for a
        first poll, the interval its random phase was drawn from)."""
        if not (math.isfinite(seen_after) and math.isfinite(gap)):
            return
        self._seen.add(seen_after)
        self.durations.add(max(0.0, seen_after - gap / 2))

    def lost(self) -> None:
        """A sampled generation ended without being seen finished (an error, a close):
        until something is learned, another generation is sampled in its place."""
        self._sampling = max(0, self._sampling - 1)
