"""Regressions from review: each test reproduces a defect found in the engine or client."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest
from lease_helpers import journal_states

from getty_ai_async import AsyncGettyAI, GenerationOutcome, RetryPolicy, errors
from getty_ai_async._auth import Grant, TokenProvider
from getty_ai_async.sandbox import Sandbox

FAST = RetryPolicy(max_retries=3, wait_initial=0.001, wait_max=0.005, wait_jitter=0.0)


def prompts(n: int) -> list[str]:
    return [f"robust {i}" for i in range(n)]


async def collect(
    client: AsyncGettyAI, inputs: object, **options: object
) -> list[GenerationOutcome]:
    return [o async for o in client.generate_many(inputs, **options)]  # type: ignore[arg-type]


async def test_cap_above_the_accounts_does_not_ping_pong_429s() -> None:
    sandbox = Sandbox(pending_seconds=0.05, pending_limit=4, images_per_generation=1)
    async with AsyncGettyAI.sandbox(sandbox, poll_interval=0.01, max_pending=8) as client:
        outcomes = await collect(client, prompts(40))
    assert all(o.ok for o in outcomes)
    # Each refused submit waits for one of our generations to end before trying again;
    # it used to retry on every slot release, 429s included: some 20,000 refusals.
    assert sandbox.stats.rate_limited_pending <= 2 * 40


async def test_a_failed_poll_keeps_the_paid_generation_for_a_rerun(tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    sandbox = Sandbox(pending_seconds=0.05, images_per_generation=1)
    sandbox.faults.route_error_rates["get_generation"] = 1.0
    sandbox.faults.error_status = 403
    async with AsyncGettyAI.sandbox(sandbox, poll_interval=0.01, retry_policy=FAST) as client:
        first = await collect(client, prompts(1), journal=journal)
        assert isinstance(first[0].error, errors.PermissionDeniedError)
        assert journal_states(journal) == {"pending": 1}

        sandbox.faults.route_error_rates.clear()
        second = await collect(client, prompts(1), journal=journal, retry_failed=True)
    assert second[0].ok
    assert sandbox.stats.submissions == 1  # resumed by polling, not paid for again


async def test_a_token_failure_is_not_an_uncertain_submission(tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    sandbox = Sandbox(pending_seconds=0.0, images_per_generation=1)
    sandbox.faults.route_drop_rates["token"] = 1.0
    async with AsyncGettyAI.sandbox(sandbox, retry_policy=FAST) as client:
        first = await collect(client, prompts(2), journal=journal)
    assert all(isinstance(o.error, errors.APIConnectionError) for o in first)
    assert not any(isinstance(o.error, errors.SubmissionUncertainError) for o in first)
    assert journal_states(journal) == {}  # nothing was sent, nothing recorded

    sandbox.faults.route_drop_rates.clear()
    async with AsyncGettyAI.sandbox(sandbox, retry_policy=FAST) as client:
        second = await collect(client, prompts(2), journal=journal)
    assert all(o.ok for o in second)
    assert sandbox.stats.submissions == 2


async def test_cancel_while_waiting_for_the_qps_budget_strands_nothing(tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    sandbox = Sandbox(pending_seconds=0.0, images_per_generation=1)
    async with AsyncGettyAI.sandbox(sandbox, max_requests_per_second=8) as client:
        with anyio.move_on_after(0.5):
            await collect(client, prompts(12), journal=journal)
        sent = sandbox.stats.submissions
        assert 0 < sent < 12
        rerun = await collect(client, prompts(12), journal=journal)
    uncertain = [o for o in rerun if isinstance(o.error, errors.SubmissionUncertainError)]
    # Only a POST cut off on the wire (a millisecond out of each 125 ms turn) may be
    # uncertain; waiting for a turn used to strand every queued input.
    assert len(uncertain) <= 1
    assert sum(o.ok for o in rerun) == 12 - len(uncertain)
    assert sandbox.stats.submissions == 12 - len(uncertain) or len(uncertain) == 1


async def test_wait_false_batch_larger_than_the_cap_does_not_deadlock() -> None:
    async with AsyncGettyAI.sandbox(
        pending_seconds=0.05, poll_interval=0.01, max_pending=2, images_per_generation=1
    ) as client:
        with anyio.fail_after(5):
            pending = [await client.generations.create(p, wait=False) for p in prompts(6)]
            ids = [g.generation_request_id for g in pending]
            done = [g async for g in client.generations.as_completed(ids)]
        assert {g.generation_request_id for g in done} == set(ids)
        assert client.limiter.in_use == 0


async def test_duplicate_keys_are_refused_and_leak_nothing() -> None:
    inputs = [{"prompt": "a", "key": "k"}, {"prompt": "b", "key": "k"}, {"prompt": "c"}]
    async with AsyncGettyAI.sandbox(pending_seconds=0.02, poll_interval=0.01) as client:
        outcomes = sorted(await collect(client, inputs), key=lambda o: o.index)
        assert len(outcomes) == 3
        assert outcomes[0].ok
        assert outcomes[2].ok
        assert isinstance(outcomes[1].error, errors.ValidationError)
        assert outcomes[1].error.field == "key"
        assert client.limiter.in_use == 0
        assert client.simulator is not None
        assert client.simulator.stats.submissions == 2


async def test_a_timeout_shorter_than_the_interval_still_polls_at_the_deadline() -> None:
    async with AsyncGettyAI.sandbox(pending_seconds=0.05, poll_interval=1.0) as client:
        with anyio.fail_after(1):
            generation = await client.generate("quick", timeout=0.3)
    assert not generation.is_pending


async def test_transient_poll_errors_end_in_a_timeout_that_carries_the_id() -> None:
    sandbox = Sandbox(pending_seconds=0.01, images_per_generation=1)
    sandbox.faults.route_error_rates["get_generation"] = 1.0
    async with AsyncGettyAI.sandbox(
        sandbox, poll_interval=0.02, retry_policy=RetryPolicy(max_retries=0)
    ) as client:
        with pytest.raises(errors.GenerationTimeoutError) as caught:
            await client.generate("flaky polls", timeout=0.2)
        assert isinstance(caught.value.__cause__, errors.InternalServerError)
        sandbox.faults.route_error_rates.clear()
        resumed = await client.generations.wait(caught.value.generation_request_id)
    assert resumed.images


async def test_download_errors_do_not_show_signed_query_strings(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with AsyncGettyAI(
        api_key="k", transport=httpx.MockTransport(refuse), retry_policy=RetryPolicy(max_retries=0)
    ) as client:
        with pytest.raises(errors.APIConnectionError) as caught:
            await client.downloads.fetch(
                "https://cdn.example.test/x.png?Expires=1&Signature=SECRETSIG", tmp_path, "x"
            )
    assert "SECRETSIG" not in str(caught.value)
    assert "SECRETSIG" not in caught.value.url


async def test_http_client_and_transport_together_are_refused() -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(errors.ValidationError) as caught:
            AsyncGettyAI(api_key="k", http_client=http, transport=httpx.MockTransport(print))
    assert caught.value.field == "transport"


async def test_refresh_failure_ahead_of_expiry_keeps_the_valid_token() -> None:
    now = 0.0
    calls = 0

    async def send(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(200, json={"access_token": "first", "expires_in": 600})
        raise errors.APIConnectionError("down", request=request)

    tokens = TokenProvider(
        grant=Grant(client_id="id", client_secret="secret"),
        token_url="https://auth.test/token",
        send=send,
        clock=lambda: now,
    )
    assert await tokens.token() == "first"
    now = 400.0  # inside the refresh margin (300 s), before expiry (600 s)
    assert await tokens.token() == "first"
    now = 700.0  # expired: the failure now surfaces
    with pytest.raises(errors.APIConnectionError):
        await tokens.token()


async def test_with_options_shares_pool_tokens_and_cap() -> None:
    async with AsyncGettyAI.sandbox(
        pending_seconds=0.05, pending_limit=3, poll_interval=0.5, max_pending=3
    ) as client:
        quick = client.with_options(poll_interval=0.01, retry_policy=FAST)
        assert quick.poll_interval == 0.01
        assert client.poll_interval == 0.5
        assert quick.limiter is client.limiter
        async with anyio.create_task_group() as tg:
            for prompt in prompts(6):
                tg.start_soon(quick.generate, prompt)
        await quick.aclose()  # closes nothing shared
        await client.generate("still open")
        assert client.simulator is not None
        stats = client.simulator.stats
        assert stats.token_requests == 1
        assert stats.peak_pending <= 3
        assert stats.rate_limited_pending == 0


async def test_history_skips_items_pushed_onto_the_next_page_while_iterating() -> None:
    async with AsyncGettyAI.sandbox(pending_seconds=0.0, images_per_generation=1) as client:
        for prompt in prompts(6):
            await client.generate(prompt)
        seen: list[str] = []
        async for item in client.history.list(page_size=2):
            seen.append(item.generation_request_id)
            if len(seen) == 1:
                await client.generate("created while iterating")  # shifts every page by one
        assert len(seen) == len(set(seen))
        assert len(seen) >= 6


async def test_an_unknown_generate_many_option_names_itself() -> None:
    async with AsyncGettyAI.sandbox() as client:
        with pytest.raises(errors.ValidationError) as caught:
            client.generate_many(prompts(1), journl="x.sqlite")  # type: ignore[call-arg]
    assert caught.value.field == "journl"
