"""generate_many against the in-process sandbox: cap, auto mode, slots, laziness, journal."""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from lease_helpers import collect, journal_states, leases_back

from getty_ai_async import (
    AsyncGettyAI,
    GenerationOutcome,
    GenerationRequest,
    PendingLimiter,
    errors,
)
from getty_ai_async.sandbox import Sandbox

FAST: dict[str, Any] = {
    "pending_seconds": 0.05,
    "poll_interval": 0.01,
    "images_per_generation": 1,
    "history_grace": 0.05,
}


def sandbox_client(**options: Any) -> AsyncGettyAI:
    return AsyncGettyAI.sandbox(**(FAST | options))


def sim(client: AsyncGettyAI) -> Sandbox:
    assert client.simulator is not None
    return client.simulator


def prompts(n: int) -> Iterator[str]:
    return (f"prompt {i}" for i in range(n))


async def test_every_input_yields_one_outcome_in_completion_order() -> None:
    async with sandbox_client(pending_seconds=(0.01, 0.2), seed=7, max_pending=8) as client:
        outcomes = await collect(client.generate_many(prompts(40)))
    assert sorted(o.index for o in outcomes) == list(range(40))
    assert all(o.ok and o.generation is not None and o.generation.images for o in outcomes)
    assert [o.index for o in outcomes] != list(range(40)), "random pending times reorder"
    finish_times = [o.finished_at for o in outcomes]
    assert finish_times == sorted(finish_times)
    assert all(o.attempts == 1 and o.elapsed is not None for o in outcomes)


async def test_cap_is_never_exceeded_with_500_inputs() -> None:
    async with sandbox_client(pending_limit=100, max_pending=12) as client:
        outcomes = await collect(client.generate_many(prompts(500)))
        stats = sim(client).stats
        assert len(outcomes) == 500
        assert all(o.ok for o in outcomes)
        assert stats.peak_pending == 12
        assert stats.rate_limited_pending == 0
        assert client.limiter.in_use == 0


async def test_per_call_cap_is_tighter_than_the_clients() -> None:
    async with sandbox_client(max_pending=16) as client:
        outcomes = await collect(client.generate_many(prompts(60), max_pending=3))
        assert len(outcomes) == 60
        assert sim(client).stats.peak_pending == 3


async def test_auto_mode_converges_near_an_unknown_cap() -> None:
    async with sandbox_client(pending_limit=10, max_pending="auto") as client:
        outcomes = await collect(client.generate_many(prompts(300)))
        stats = sim(client).stats
        assert all(o.ok for o in outcomes), [o.error for o in outcomes if o.error][:3]
        assert stats.submissions == 300
        # The cap, learned from its refusals. The limit itself may stand above it when
        # the run ends, in the middle of a probe (one that a poll lagging behind the
        # service let through grows until its next refusal).
        auto = client.limiter._auto
        assert auto is not None
        assert auto.ceiling is not None
        assert 8 <= auto.ceiling <= 12
        # The cap was found, with few refusals (their exact number depends on timing;
        # benchmarks/ measures it: under 1% of 2,000 submissions).
        assert 1 <= stats.rate_limited_pending <= 30


async def test_fixed_cap_above_the_service_cap_recovers_from_429s() -> None:
    async with sandbox_client(pending_limit=4, max_pending=8) as client:
        client._transport.policy = client._transport.policy.__class__(
            rate_limit_wait=0.01, max_retries=50
        )
        outcomes = await collect(client.generate_many(prompts(40)))
        assert all(o.ok for o in outcomes)
        assert sim(client).stats.submissions == 40
        assert sim(client).stats.rate_limited_pending > 0
        assert max(o.attempts for o in outcomes) > 1


async def test_lazy_input_infinite_generator_with_break() -> None:
    consumed = 0

    def endless() -> Iterator[str]:
        nonlocal consumed
        for i in itertools.count():
            consumed += 1
            yield f"endless {i}"

    async with sandbox_client(max_pending=4) as client:
        seen = 0
        async for _ in client.generate_many(endless()):
            seen += 1
            if seen == 10:
                break
        # Read ahead no further than the slots it could fill (plus the one it holds).
        assert consumed <= 10 + 4 + 1
        assert sim(client).stats.submissions <= consumed


async def test_early_break_sends_no_further_posts_and_leases_follow_the_generations() -> None:
    async with sandbox_client(max_pending=6, pending_seconds=0.1) as client:
        run = client.generate_many(prompts(100))
        async for _ in run:
            break
        await run.aclose()
        submitted = sim(client).stats.submissions_attempted
        # Whatever the service still has pending holds a lease: the cap is never exceeded.
        assert client.limiter.in_use >= sim(client).stats.current_pending()
        await leases_back(client)
        assert sim(client).stats.submissions_attempted == submitted, "no POST after aclose"
        assert submitted <= 6 + 3


async def test_break_without_aclose_still_returns_slots() -> None:
    async with sandbox_client(max_pending=5, pending_seconds=0.2) as client:

        async def first() -> GenerationOutcome:
            async for outcome in client.generate_many(prompts(50)):
                return outcome
            raise AssertionError("no outcome")

        await first()
        # The run object is gone: its finaliser stopped it; the poller saw the
        # generations it had left at the service finish and took their leases back.
        submitted = sim(client).stats.submissions_attempted
        await leases_back(client)
        assert sim(client).stats.submissions_attempted == submitted


async def test_cancelling_the_enclosing_scope_stops_promptly() -> None:
    async with sandbox_client(max_pending=8, pending_seconds=0.5) as client:
        got: list[GenerationOutcome] = []
        with anyio.move_on_after(0.2) as scope:
            async for outcome in client.generate_many(prompts(100)):
                got.append(outcome)
        assert scope.cancelled_caught
        assert got == []
        attempted = sim(client).stats.submissions_attempted
        assert attempted <= 8
        await leases_back(client)
        assert sim(client).stats.submissions_attempted == attempted


@pytest.mark.parametrize("seed", range(6))
async def test_slots_return_to_zero_after_errors_timeouts_and_random_cancellation(
    seed: int,
) -> None:
    rng = random.Random(seed)
    async with sandbox_client(
        max_pending=5,
        pending_seconds=(0.0, 0.15),
        seed=seed,
        error_rate=0.2,
        max_retries=1,
    ) as client:
        client._transport.policy = client._transport.policy.__class__(
            max_retries=1, wait_initial=0.001, wait_max=0.002, wait_jitter=0
        )
        inputs: list[object] = [
            rng.choice(["ok prompt", "", {"prompt": "x", "aspect_ratio": "2:1"}, "another"])
            for _ in range(30)
        ]
        with anyio.move_on_after(rng.uniform(0.02, 0.4)):
            async for _ in client.generate_many(inputs, timeout=rng.choice([0.05, 5.0])):
                pass
        await leases_back(client)


async def test_invalid_inputs_become_outcomes_without_requests() -> None:
    async with sandbox_client() as client:
        inputs: list[object] = ["", {"prompt": "ok", "mood": "sad"}, 42, "fine"]
        outcomes = sorted(await collect(client.generate_many(inputs)), key=lambda o: o.index)
        assert [type(o.error) for o in outcomes[:3]] == [errors.ValidationError] * 3
        assert [
            o.error.field for o in outcomes[:3] if isinstance(o.error, errors.ValidationError)
        ] == [
            "prompt",
            "mood",
            "requests",
        ]
        assert outcomes[3].ok
        assert sim(client).stats.submissions_attempted == 1


async def test_return_exceptions_false_raises_the_first_error_and_stops() -> None:
    async with sandbox_client(max_pending=2) as client:
        inputs = ["a", "b", "", *(f"p{i}" for i in range(50))]
        with pytest.raises(errors.ValidationError):
            async for _ in client.generate_many(inputs, return_exceptions=False):
                pass
        await leases_back(client)
        assert sim(client).stats.submissions_attempted <= 4


async def test_async_iterable_input_and_request_objects() -> None:
    async def source() -> AsyncIterator[GenerationRequest | dict[str, Any]]:
        for i in range(6):
            await anyio.lowlevel.checkpoint()
            yield GenerationRequest(prompt=f"obj {i}", aspect_ratio="16:9")
            yield {"prompt": f"dict {i}", "mood": "warm", "key": f"k{i}"}

    async with sandbox_client() as client:
        outcomes = await collect(client.generate_many(source()))
    assert len(outcomes) == 12
    assert {o.key for o in outcomes if o.request and o.request.prompt.startswith("dict")} == {
        f"k{i}" for i in range(6)
    }


async def test_polls_are_spread_and_bounded() -> None:
    async with sandbox_client(max_pending=20, pending_seconds=0.1, poll_interval=0.02) as client:
        outcomes = await collect(client.generate_many(prompts(60)))
        stats = sim(client).stats
    assert all(o.ok for o in outcomes)
    # ceil(pending / poll_interval) + 1 polls per generation at most, on average.
    assert stats.polls / 60 <= 0.1 / 0.02 + 1


async def test_shared_qps_budget_avoids_429s() -> None:
    async with sandbox_client(qps=100, retry_after=0.01, max_requests_per_second=80) as client:
        outcomes = await collect(client.generate_many(prompts(30)))
        assert all(o.ok for o in outcomes)
        assert sim(client).stats.rate_limited_qps == 0


async def test_slow_consumer_pauses_submissions() -> None:
    async with sandbox_client(max_pending=4, pending_seconds=0.0) as client:
        run = client.generate_many(prompts(100))
        await run.__anext__()
        await anyio.sleep(0.05)  # the outcome taken makes room for one more
        before = sim(client).stats.submissions_attempted
        await anyio.sleep(0.1)
        assert sim(client).stats.submissions_attempted == before
        # Outcomes not taken yet count against the run's cap, like generations in flight.
        assert before <= 4 + 1
        await run.aclose()


async def test_a_submission_waits_for_a_lease_ahead_while_the_consumer_keeps_up() -> None:
    # So a slot freed goes straight to it, not after the consumer took the result that
    # freed it (through Redis, that saves a round trip per generation).
    read: list[int] = []

    def counted(n: int) -> Iterator[str]:
        for i in range(n):
            read.append(i)
            yield f"prompt {i}"

    client = sandbox_client(max_pending=16, pending_limit=16, pending_seconds=10.0)
    async with client, client.generate_many(counted(40)):
        await anyio.sleep(0.2)
        assert len(read) == 16 + 2  # the cap, and an eighth of it waiting
        assert sim(client).stats.submissions_attempted == 16


async def test_polling_deadline_becomes_a_timeout_outcome() -> None:
    async with sandbox_client(pending_seconds=10.0) as client:
        outcomes = await collect(client.generate_many(prompts(3), timeout=0.05))
        assert all(isinstance(o.error, errors.GenerationTimeoutError) for o in outcomes)
        # The service still has them: their leases stay until they finish there.
        assert client.limiter.in_use == 3


async def test_as_completed_yields_each_pending_generation() -> None:
    async with sandbox_client(pending_seconds=(0.01, 0.1), seed=3) as client:
        pending = [await client.generations.create(f"p{i}", wait=False) for i in range(5)]
        ids = {g.generation_request_id for g in pending}
        done = [g async for g in client.generations.as_completed(ids)]
        assert {g.generation_request_id for g in done} == ids
        assert all(not g.is_pending and g.images for g in done)
        assert client.limiter.in_use == 0
        with pytest.raises(errors.NotFoundError):
            async for _ in client.generations.as_completed(["no-such-id"]):
                pass


# ------------------------------------------------------------------------ journal


async def test_journal_resume_after_crash_gives_n_outcomes_and_n_posts(tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    sandbox = Sandbox(pending_seconds=(0.02, 0.3), seed=11, images_per_generation=1)
    n = 40

    async with AsyncGettyAI.sandbox(sandbox, poll_interval=0.01, max_pending=8) as client:
        first: list[GenerationOutcome] = []
        async for outcome in client.generate_many(prompts(n), journal=journal):
            first.append(outcome)
            if len(first) == 15:
                break  # the "crash": the run is abandoned mid-flight
        states = journal_states(journal)
        assert states.get("pending", 0) > 0

    async with AsyncGettyAI.sandbox(sandbox, poll_interval=0.01, max_pending=8) as client:
        second = await collect(client.generate_many(prompts(n), journal=journal))

    assert len(second) == n
    assert sorted(o.index for o in second) == list(range(n))
    assert all(o.ok for o in second)
    replayed = {o.index for o in second if o.replayed}
    # What the first run yielded was journaled first; results it had recorded but not
    # yet yielded when it was abandoned are replayed too, and never generated twice.
    assert {o.index for o in first} <= replayed
    assert sandbox.stats.submissions == n
    assert sandbox.stats.submissions_attempted == n
    assert journal_states(journal) == {"done": n}

    async with AsyncGettyAI.sandbox(sandbox, poll_interval=0.01) as client:
        third = await collect(client.generate_many(prompts(n), journal=journal))
    assert all(o.replayed for o in third)
    assert len(third) == n
    assert sandbox.stats.submissions_attempted == n


async def test_lost_replies_after_the_service_acted_are_adopted_from_history(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "run.sqlite"
    # A cap high enough that no POST is refused: every dropped reply hides a creation.
    sandbox = Sandbox(pending_seconds=0.02, seed=2, images_per_generation=1, pending_limit=100)
    sandbox.faults.route_drop_rates["generate"] = 0.3
    sandbox.faults.drop_after_processing = True

    async with AsyncGettyAI.sandbox(sandbox, poll_interval=0.01) as client:
        run = client.generate_many(prompts(20), journal=journal)
        first = await collect(run)
    assert all(o.ok for o in first)
    assert run.stats.adopted > 0, "the seeded drop rate must hit at least one POST"
    assert sandbox.stats.submissions == sandbox.stats.submissions_attempted == 20
    assert journal_states(journal) == {"done": 20}


async def test_unknown_fate_is_checked_in_history_and_resubmitted_only_when_asked(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "run.sqlite"
    sandbox = Sandbox(pending_seconds=0.02, seed=2, images_per_generation=1, pending_limit=100)
    sandbox.faults.route_drop_rates["generate"] = 0.3  # dropped before the service acts

    options: dict[str, Any] = {"poll_interval": 0.01, "history_grace": 0.01}
    async with AsyncGettyAI.sandbox(sandbox, **options) as client:
        first = await collect(client.generate_many(prompts(20), journal=journal))
    unknown = {o.index for o in first if isinstance(o.error, errors.SubmissionUncertainError)}
    assert unknown, "the seeded drop rate must hit at least one POST"
    assert all(o.error.history_checked for o in first if o.index in unknown)  # type: ignore[union-attr]
    assert sandbox.stats.submissions == 20 - len(unknown)
    assert journal_states(journal)["unknown"] == len(unknown)

    sandbox.faults.route_drop_rates.clear()
    async with AsyncGettyAI.sandbox(sandbox, **options) as client:
        second = await collect(client.generate_many(prompts(20), journal=journal))
        uncertain = {
            o.index for o in second if isinstance(o.error, errors.SubmissionUncertainError)
        }
        assert uncertain == unknown, "never resubmitted unless asked"
        third = await collect(
            client.generate_many(prompts(20), journal=journal, retry_uncertain=True)
        )
    assert all(o.ok for o in third)
    assert sandbox.stats.submissions == 20
    assert journal_states(journal) == {"done": 20}


async def test_journal_replays_failures_unless_asked_to_retry(tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    sandbox = Sandbox(pending_seconds=0.0, images_per_generation=1)
    sandbox.faults.route_error_rates["generate"] = 1.0  # 503: refused, nothing created
    async with AsyncGettyAI.sandbox(sandbox, max_retries=0) as client:
        first = await collect(client.generate_many(prompts(3), journal=journal))
    assert all(isinstance(o.error, errors.InternalServerError) for o in first)

    sandbox.faults.route_error_rates.clear()
    async with AsyncGettyAI.sandbox(sandbox) as client:
        replay = await collect(client.generate_many(prompts(3), journal=journal))
        assert all(isinstance(o.error, errors.RecordedError) and o.replayed for o in replay)
        retried = await collect(
            client.generate_many(prompts(3), journal=journal, retry_failed=True)
        )
        assert all(o.ok and not o.replayed for o in retried)
    assert sandbox.stats.submissions == 3


def test_generate_many_runs_under_trio() -> None:
    async def main() -> list[GenerationOutcome]:
        async with sandbox_client(max_pending=4) as client:
            return await collect(client.generate_many(prompts(12)))

    outcomes = anyio.run(main, backend="trio")
    assert len(outcomes) == 12
    assert all(o.ok for o in outcomes)


async def test_usable_inside_a_task_group_with_other_work() -> None:
    async with sandbox_client(max_pending=4) as client:
        results: dict[str, int] = {}

        async def batch(name: str) -> None:
            results[name] = len(await collect(client.generate_many(prompts(10))))

        async with anyio.create_task_group() as tg:
            tg.start_soon(batch, "a")
            tg.start_soon(batch, "b")
            tg.start_soon(client.generate, "single")
        assert results == {"a": 10, "b": 10}
        assert sim(client).stats.peak_pending <= 4
        assert client.limiter.in_use == 0


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"error_status": 504}, errors.SubmissionUncertainError),
        ({"error_status": 503}, errors.InternalServerError),
    ],
)
async def test_gateway_timeout_on_submit_is_uncertain_other_5xx_failed(
    tmp_path: Path, fault: dict[str, int], expected: type[Exception]
) -> None:
    sandbox = Sandbox(pending_seconds=0.0, images_per_generation=1)
    sandbox.faults.route_error_rates["generate"] = 1.0
    sandbox.faults.error_status = fault["error_status"]
    journal = tmp_path / "run.sqlite"
    async with AsyncGettyAI.sandbox(sandbox, max_retries=0) as client:
        outcomes = await collect(client.generate_many(prompts(2), journal=journal))
        assert all(isinstance(o.error, expected) for o in outcomes)
        sandbox.faults.route_error_rates.clear()
        again = await collect(client.generate_many(prompts(2), journal=journal, retry_failed=True))
    resubmitted = expected is errors.InternalServerError
    assert all(o.ok == resubmitted for o in again)
    assert sandbox.stats.submissions == (2 if resubmitted else 0)


async def test_connection_refused_on_submit_is_a_failed_outcome_not_a_crash() -> None:
    async with AsyncGettyAI(
        api_key="k",
        base_url="http://127.0.0.1:9",
        poll_interval=0.01,
        max_retries=0,
    ) as client:
        outcomes = await collect(client.generate_many(prompts(3)))
    assert len(outcomes) == 3
    assert all(isinstance(o.error, errors.APIConnectionError) for o in outcomes)
    assert all(
        not o.error.may_have_been_sent
        for o in outcomes
        if isinstance(o.error, errors.APIConnectionError)
    )


async def test_a_quiet_stream_input_does_not_hold_back_ready_outcomes() -> None:
    send, receive = anyio.create_memory_object_stream[str](10)
    async with sandbox_client(pending_seconds=0.0) as client, receive:
        run = client.generate_many(receive)
        async with send, anyio.create_task_group() as tg:
            await send.send("first")
            with anyio.fail_after(2):
                first = await run.__anext__()  # the stream stays open and silent meanwhile
            assert first.request is not None
            assert first.request.prompt == "first"
            tg.start_soon(send.send, "second")
            second = await run.__anext__()
            assert second.request is not None
            assert second.request.prompt == "second"
        assert [o async for o in run] == []  # closing the send side ends the run
        assert sim(client).stats.submissions == 2


async def test_a_quiet_async_source_holds_back_no_outcome_and_cancels_promptly() -> None:
    async def silent() -> AsyncIterator[str]:
        yield "only"
        await anyio.sleep_forever()
        yield "never"

    async with sandbox_client(pending_seconds=0.0) as client:
        got = []
        with anyio.move_on_after(0.3) as scope:
            async for outcome in client.generate_many(silent()):
                got.append(outcome)
        assert scope.cancelled_caught
        # The run reads its input in its own task: a quiet source holds nothing back.
        assert [outcome.index for outcome in got] == [0]
        assert sim(client).stats.submissions == 1
        await leases_back(client)


async def test_a_backlog_in_the_qps_budget_teaches_no_wrong_duration() -> None:
    # Ten leases, 30 requests a second: each burst of submissions queues a third of a
    # second for its turns, and polls queue behind them. Learning from when a poll was
    # queued, not when it left, took 0.3 s generations for a few milliseconds long (and
    # aimed every later first poll there); a poll held up that long teaches nothing.
    async with sandbox_client(
        max_pending=10, pending_seconds=0.3, poll_interval=0.02, max_requests_per_second=30
    ) as client:
        run = client.generate_many(prompts(40))
        outcomes = await collect(run)
    assert all(o.ok for o in outcomes)
    learned = run.stats.typical_seconds
    assert learned is None or 0.2 <= learned <= 0.6, learned


async def test_a_first_batch_waits_for_a_few_samples_instead_of_each_polling_every_interval() -> (
    None
):
    # Thirty generations of 0.5 s started together, polled every 50 ms: before anything
    # is learned, only a few are polled every interval; the others are polled once those
    # say when, instead of 10 times each.
    async with sandbox_client(
        max_pending=30, pending_limit=30, pending_seconds=0.5, poll_interval=0.05
    ) as client:
        outcomes = await collect(client.generate_many(prompts(30)))
        polls = sim(client).stats.polls
    assert all(o.ok for o in outcomes)
    assert polls <= 10 * 11 + 20 * 4, polls  # every one polled every interval: 300


async def test_a_custom_limiters_budget_needs_only_the_documented_methods() -> None:
    class Budget:  # `RequestBudget`: acquire() and throttled(), nothing else
        async def acquire(self) -> None:
            await anyio.lowlevel.checkpoint()

        def throttled(self) -> None:
            """Nothing to slow down in this test."""

    class Limiter(PendingLimiter):
        def attach(self, *, api_key: str, max_requests_per_second: float | None) -> Budget:
            return Budget()

    for strategy in ("adaptive", "fixed"):
        async with sandbox_client(limiter=Limiter(4), poll_strategy=strategy) as client:
            with anyio.fail_after(10):
                outcomes = await collect(client.generate_many(prompts(8)))
            assert all(o.ok for o in outcomes)
            assert client.limiter.in_use == 0
