"""The rules of ``max_pending="auto"``: learning an account's pending cap from its 429s.

One small state machine, used by the in-process `PendingLimiter`; the Redis backend runs
the same rules in Lua (`_redis/_scripts.py`) on state shared by every worker of the
account, and the unit tests drive both through the same scenarios.

- **Slow start**: the limit starts at 4 and grows by one per submit the service accepts
  while it holds at least three quarters of the limit (accepted, not merely sent). An
  acceptance is the proof that the cap is higher, and it comes a POST's round trip after
  the submit, not a generation-time later: the limit climbs to the cap within the first
  generation-time, with only a few POSTs in flight when it gets there (each acceptance
  lets one more out), so the first refusal comes alone.
- **A 429 of the pending cap** (one without Retry-After) while ``p`` generations of the
  account are pending sets the ceiling, and the limit, to ``p`` at once (never above the
  limit that was refused). A 429 of the request rate never lowers it.
- **Refusals in a row**: refusals of leases taken after the last change, with no submit
  accepted since, mean the cap is below ``p`` (it was lowered under us, or ``p``
  counted generations that had ended at the service but were not polled yet): the
  k-th in a row sets the limit ``2**(k-1) - 1`` below ``p``, but never below half of
  it, so a cap cut from 32 to 8 is found with about five refusals. A refusal of a
  lease taken *before* the last change is the same event seen again, and teaches
  nothing.
- **Probing**: after a run of completions without a refusal the limit goes one above
  the ceiling. The run is `wait` generation-times (the limit's worth of completions
  each): a quarter of the ceiling, at least 2, doubling each time a probe finds the same
  ceiling (give or take a quarter) up to ``ceiling**2 / 20``, at least 4 and at most 16
  (`probe_wait`). A probe refused costs one 429, so a larger cap is probed less often:
  a raised cap of 8 is found within 5 generation-times, while probes at a steady cap of
  16 or more cost about 0.5% of the submissions.
- **In flight at a refusal**: ``p`` misses the POSTs accepted but not answered yet
  (plenty when many workers share the cap); each one accepted after a refusal, taken
  before it, raises the ceiling by what it shows, never to the limit that was refused. Once a probe
  has held for a quarter of a generation-time (one that only fits because some
  generations ended unseen is refused by then), the limit grows again, and then each
  time the service accepts a submit that fills it, by steps that double (1, 2, 4...),
  until the next refusal.
"""

from __future__ import annotations

__all__ = ["AUTO_MAX", "AUTO_START", "PROBE_MAX", "PROBE_MIN", "AutoLimit", "probe_wait"]

AUTO_START = 4
AUTO_MAX = 512
PROBE_MIN = 2
"""Generation-times (the limit's worth of completions) without a refusal before a probe,
at least; a quarter of the ceiling when that is more."""
PROBE_MAX = 4
"""The longest wait between probes in generation-times, at least; ``ceiling**2 / 20`` when
that is more (up to `PROBE_LONGEST`)."""
PROBE_LONGEST = 16


def probe_wait(ceiling: int, previous: int | None = None) -> int:
    """Generation-times to wait before probing above `ceiling` (`previous`: the wait
    before a probe that found the same ceiling again).

    A refused probe costs one 429 per ``wait * ceiling`` submissions: the longest wait
    grows with the square of the ceiling, so probes cost about 0.5% of the submissions
    at a cap of 16 or more, while a small cap (8: 4 generation-times) is still quick to
    notice a raise.
    """
    shortest = max(PROBE_MIN, ceiling // 4)
    if previous is None:
        return shortest
    longest = min(PROBE_LONGEST, max(PROBE_MAX, ceiling * ceiling // 20))
    return max(shortest, min(previous * 2, longest))


class AutoLimit:
    """The adaptive limit of one account (strictly private: see the module docstring)."""

    __slots__ = (
        "ceiling",
        "clean",
        "epoch",
        "limit",
        "maximum",
        "refused_at",
        "step",
        "streak",
        "wait",
    )

    def __init__(self, *, start: int = AUTO_START, maximum: int = AUTO_MAX) -> None:
        self.maximum = max(maximum, start)
        self.limit = start
        self.ceiling: int | None = None
        """The limit the last refusal set (None: still in slow start)."""
        self.epoch = 0
        """Bumped each time a refusal sets the ceiling."""
        self.streak = 0
        """Refusals since a submit was last accepted."""
        self.refused_at = 0
        """The limit in force at the last refusal: the cap is below it."""
        self.step = 1
        self.clean = 0
        """Completions at full use since the last refusal or probe."""
        self.wait = PROBE_MIN

    def accepted(self, bound: int, lease_epoch: int) -> None:
        """The service accepted a submit made under a lease of `lease_epoch`; `bound`
        generations are pending now."""
        self.streak = 0
        if self.ceiling is None:
            if bound >= self.limit - self.limit // 4:
                self._set(self.limit + 1)
            return
        if lease_epoch < self.epoch and bound > self.ceiling:
            # In flight when the cap was hit, and accepted: it was pending at the service
            # then, though not counted in `p` (many workers have many POSTs in flight).
            self.ceiling = min(bound, self.refused_at - 1)
            self._set(max(self.limit, self.ceiling))
            return
        if self.limit > self.ceiling and self.step > 1 and bound >= self.limit:
            # A step after a probe that held filled the raised limit: the cap went up.
            self._set(self.limit + self.step)
            self.step *= 2

    def finished(self, in_use: int, bound: int) -> None:
        """A generation ended at the service; `in_use` leases are held after its release,
        `bound` of them by generations the service accepted."""
        if self.ceiling is None or 2 * (in_use + 1) < self.limit:
            # Slow start grows on acceptances; and a limit that was not being used
            # taught nothing by its size.
            return
        # Growing takes proof: the service held (nearly) the whole limit of ours when this
        # ended. POSTs in flight prove nothing, and many at once overshoot the cap (a
        # quarter of the limit may be, or a burst of completions could not grow it).
        filled = bound + 1 >= self.limit - self.limit // 4
        if self.limit > self.ceiling:
            if self.step == 1 and filled:
                self.clean += 1
                if 4 * self.clean >= self.limit:
                    self.clean = 0  # the probe held: grow, then on each submit that fills it
                    self.step = 2
                    self._set(self.limit + 1)
            return
        self.clean += 1
        if self.clean >= self.wait * self.limit:
            self.clean = 0
            self.step = 1
            self._set(self.limit + 1)

    def refused(self, pending: int, lease_epoch: int) -> None:
        """A submit made under a lease of `lease_epoch` got a 429 of the pending cap."""
        if lease_epoch < self.epoch:
            return
        self.streak += 1
        seen = min(pending, self.limit - 1)
        ceiling = max(1, seen - (2 ** (self.streak - 1) - 1), seen // 2)
        same = self.ceiling is not None and abs(ceiling - self.ceiling) <= max(1, self.ceiling // 4)
        self.wait = probe_wait(ceiling, self.wait if same else None)
        self.refused_at = self.limit
        self.ceiling = ceiling
        self.epoch += 1
        self.step = 1
        self.clean = 0
        self._set(ceiling)

    def _set(self, value: int) -> None:
        self.limit = min(max(value, 1), self.maximum)
