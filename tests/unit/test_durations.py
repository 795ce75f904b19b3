"""When a new generation is first polled: the estimate and the timing learned from it."""

from __future__ import annotations

import math
import random

import pytest

from getty_ai_async._durations import DurationEstimate, PollTiming

INTERVAL = 0.05


def poll_until_done(timing: PollTiming, duration: float) -> tuple[int, float]:
    """One generation taking `duration`: polls sent and the delay between its end and the
    poll that saw it, with what it taught `timing`."""
    first, sample = timing.first_poll(INTERVAL)
    assert first is not None  # one at a time: a sample always finishes before the next
    polls = 1 + max(0, math.ceil((duration - first) / INTERVAL))
    seen_at = first + (polls - 1) * INTERVAL
    if sample:
        timing.finished(seen_at, INTERVAL)
    return polls, seen_at - duration


def run(timing: PollTiming, durations: list[float]) -> tuple[float, float]:
    """Polls per generation and mean delay to being seen, over `durations`."""
    polls, delays = zip(*(poll_until_done(timing, d) for d in durations), strict=True)
    return sum(polls) / len(polls), sum(delays) / len(delays)


def test_the_estimate_has_no_quantiles_until_a_few_samples() -> None:
    estimate = DurationEstimate()
    for _ in range(4):
        estimate.add(1.0)
    assert estimate.quantile(0.5) is None
    estimate.add(1.0)
    assert estimate.quantile(0.5) == pytest.approx(1.0, rel=0.04)


def test_quantiles_are_read_within_a_bucket_not_at_its_edge() -> None:
    estimate = DurationEstimate()
    values = [0.48 + 0.04 * i / 1000 for i in range(1000)]  # about two buckets wide
    random.Random(0).shuffle(values)  # newer samples weigh more: no trend in the order
    for value in values:
        estimate.add(value)
    assert estimate.quantile(0.5) == pytest.approx(0.50, abs=0.004)
    assert estimate.quantile(0.1) == pytest.approx(0.484, abs=0.004)


def test_quantiles_follow_new_samples() -> None:
    estimate = DurationEstimate()
    for _ in range(50):
        estimate.add(1.0)
    assert estimate.quantile(0.5) == pytest.approx(1.0, rel=0.04)
    for _ in range(300):
        estimate.add(2.0)
    assert estimate.quantile(0.5) == pytest.approx(2.0, rel=0.04)


def test_until_learned_a_few_samples_are_polled_at_a_random_phase_and_the_rest_wait() -> None:
    timing = PollTiming(random.Random(1))
    firsts = [timing.first_poll(INTERVAL) for _ in range(10)]
    assert all(sample for _, sample in firsts)
    waits = [wait for wait, _ in firsts]
    assert all(wait is not None and 0.0 <= wait < INTERVAL for wait in waits)
    assert len(set(waits)) == 10
    assert timing.ready_after() is None
    assert timing.first_poll(INTERVAL) == (None, False)  # waits for what those teach
    timing.lost()  # one sample ended without teaching: another takes its place
    assert timing.first_poll(INTERVAL)[1] is True
    for _ in range(5):
        timing.finished(0.5, INTERVAL)
    assert timing.ready_after() is not None
    assert timing.first_poll(INTERVAL)[0] == timing.ready_after()


def test_stable_durations_are_seen_almost_at_once_with_about_one_poll() -> None:
    timing = PollTiming(random.Random(2))
    polls, delay = run(timing, [0.5] * 2000)
    aim = timing.ready_after()
    assert aim is not None
    # Learned from random-phase samples: unbiased, so the aim sits just past 0.5 s.
    assert 0.5 <= aim <= 0.5 + INTERVAL / 4
    # Polling every interval from acceptance: 10 polls, seen 25 ms late on average.
    assert polls < 1.3
    assert delay < INTERVAL / 4


def test_most_generations_are_aimed_and_one_in_eight_keeps_learning() -> None:
    timing = PollTiming(random.Random(3))
    run(timing, [0.5] * 100)
    aim = timing.ready_after()
    assert aim is not None
    firsts = [timing.first_poll(INTERVAL) for _ in range(800)]
    aimed = [wait for wait, sample in firsts if not sample]
    sampled = [wait for wait, sample in firsts if sample and wait is not None]
    assert len(sampled) == 100
    assert set(aimed) == {aim}
    assert all(aim - INTERVAL <= wait <= aim for wait in sampled)


def test_jittered_durations_take_fewer_polls_and_are_seen_as_soon_as_polling_every_interval() -> (
    None
):
    rng = random.Random(4)
    durations = [rng.uniform(0.4, 0.6) for _ in range(4000)]
    polls, delay = run(PollTiming(random.Random(5)), durations)
    assert polls <= 3
    # Polling every interval from acceptance sees each one half an interval late.
    assert delay <= 1.1 * INTERVAL / 2


@pytest.mark.parametrize(("before", "after"), [(0.5, 0.3), (0.3, 0.6)])
def test_the_aim_follows_a_service_that_speeds_up_or_slows_down(
    before: float, after: float
) -> None:
    timing = PollTiming(random.Random(6))
    run(timing, [before] * 1000)
    run(timing, [after] * 4000)
    aim = timing.ready_after()
    assert aim is not None
    assert after <= aim <= after + INTERVAL / 2


def test_a_clock_gone_wrong_is_not_a_duration() -> None:
    estimate = DurationEstimate()
    for value in (math.nan, math.inf, -1.0):
        estimate.add(value)
    assert estimate.samples == 0


def test_a_sample_timed_by_a_clock_gone_wrong_teaches_neither_estimate() -> None:
    timing = PollTiming(random.Random(6))
    for seen, gap in ((math.nan, INTERVAL), (0.5, math.inf), (math.inf, math.inf)):
        timing.finished(seen, gap)
    assert timing.durations.samples == 0
    assert timing.ready_after() is None
