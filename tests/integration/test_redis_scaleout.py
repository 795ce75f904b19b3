"""Scale-out on a real redis-server: worker processes share one account's cap through Redis.

The sandbox is served on loopback (uvicorn in a thread of the test process); workers are
processes of their own (`redis_worker.py`) or clients in this process. The
``redis_server`` fixture (tests/conftest.py) runs a throwaway redis-server.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from getty_ai_async import AsyncGettyAI, RedisLimiter, errors
from getty_ai_async.sandbox import Sandbox, run_in_thread

RedisServer = Any  # tests/conftest.py: start(), stop(), restart(down_for), url

WORKER = Path(__file__).with_name("redis_worker.py")
KEY = "scale-key"


Spawn = Callable[[dict[str, Any]], subprocess.Popen[str]]


@pytest.fixture
def spawn_worker() -> Iterator[Spawn]:
    """``spawn_worker(config)``: a worker process, killed at the end if still running."""
    started: list[subprocess.Popen[str]] = []

    def spawn(config: dict[str, Any]) -> subprocess.Popen[str]:
        worker = subprocess.Popen(  # noqa: S603 - our own interpreter running our own script
            [sys.executable, str(WORKER), json.dumps(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ | {"PYTHONPATH": str(Path(__file__).parents[2])},
        )
        started.append(worker)
        return worker

    yield spawn
    for worker in started:
        if worker.poll() is None:  # a test that failed midway
            worker.kill()
            worker.communicate()


def finish(worker: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    out, err = worker.communicate(timeout=timeout)
    assert worker.returncode == 0, err[-3000:]
    summary = [line for line in out.splitlines() if line.startswith("SUMMARY ")]
    assert summary, out[-2000:] + err[-2000:]
    result: dict[str, Any] = json.loads(summary[-1].split(" ", 1)[1])
    result["indexes"] = [
        int(line.split()[1]) for line in out.splitlines() if line.startswith("OUT ")
    ]
    return result


async def account(url: str) -> RedisLimiter:
    limiter = RedisLimiter(url, api_key=KEY)
    await limiter.connect()
    return limiter


def test_k_workers_never_exceed_the_account_cap_together(
    redis_server: RedisServer, spawn_worker: Spawn
) -> None:
    cap, n, shards = 8, 500, 3
    sandbox = Sandbox(
        pending_seconds=(1.0, 3.0), time_scale=0.02, pending_limit=cap, images_per_generation=1
    )
    with run_in_thread(sandbox) as served:
        base = {"base_url": served.base_url, "redis_url": redis_server.url, "n": n}
        base |= {"shards": shards, "max_pending": cap}
        workers = [spawn_worker(base | {"shard": shard}) for shard in range(shards)]
        results = [finish(worker) for worker in workers]
    assert sum(result["prompts"] for result in results) == n
    assert sum(result.get("ok", 0) for result in results) == n
    assert sandbox.stats.submissions == n
    assert sandbox.stats.peak_pending <= cap, "the workers held more than the account's cap"
    assert sandbox.stats.rate_limited_pending == 0
    round_trips = sum(result["round_trips"] for result in results) / n
    assert round_trips < 6, round_trips  # 3 per generation, plus re-checks while waiting


def watch(worker: subprocess.Popen[str], lines: list[str]) -> threading.Thread:
    def read() -> None:
        assert worker.stdout is not None
        for line in worker.stdout:
            lines.append(line)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def kill(worker: subprocess.Popen[str], reader: threading.Thread) -> None:
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    reader.join(timeout=10)
    for stream in (worker.stdout, worker.stderr):
        if stream is not None:
            stream.close()


def wait_for(predicate: Any, timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.01)


def test_a_killed_workers_leases_come_back_after_lease_ttl(
    redis_server: RedisServer, spawn_worker: Spawn
) -> None:
    cap = 4
    sandbox = Sandbox(pending_seconds=60, pending_limit=cap, images_per_generation=1)
    with run_in_thread(sandbox) as served:
        config = {"base_url": served.base_url, "redis_url": redis_server.url, "n": 6}
        config |= {"shards": 1, "shard": 0, "max_pending": cap, "lease_ttl": 1.0}
        worker = spawn_worker(config)
        lines: list[str] = []
        reader = watch(worker, lines)
        wait_for(lambda: f"PENDING {cap}\n" in lines)
        kill(worker, reader)

        async def check() -> None:
            limiter = await account(redis_server.url)
            held = await limiter.account_limits()
            assert (held.bound, held.in_use) == (cap, cap), "still held right after the kill"
            with anyio.fail_after(5):
                while (await limiter.account_limits()).in_use:  # noqa: ASYNC110 - in Redis
                    await anyio.sleep(0.05)
            assert (await limiter.account_limits()).expired >= cap
            await limiter.aclose()

        anyio.run(check)


def test_a_worker_restarted_on_its_journal_takes_its_leases_over(
    redis_server: RedisServer, tmp_path: Path, spawn_worker: Spawn
) -> None:
    cap, n = 4, 10
    sandbox = Sandbox(
        pending_seconds=(0.5, 1.0), time_scale=1.0, pending_limit=cap, images_per_generation=1
    )
    with run_in_thread(sandbox) as served:
        config = {"base_url": served.base_url, "redis_url": redis_server.url, "n": n}
        config |= {"shards": 1, "shard": 0, "max_pending": cap, "lease_ttl": 30.0}
        config |= {"journal": str(tmp_path / "worker.sqlite")}
        worker = spawn_worker(config)
        lines: list[str] = []
        reader = watch(worker, lines)
        wait_for(lambda: f"PENDING {cap}\n" in lines)
        kill(worker, reader)
        # Its leases are still there (lease_ttl 30 s): the restarted worker adopts them.
        restarted = spawn_worker(config)
        peaks: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            async def loop() -> None:
                limiter = await account(redis_server.url)
                while not stop.is_set():
                    peaks.append((await limiter.account_limits()).in_use)
                    await anyio.sleep(0.01)
                await limiter.aclose()

            anyio.run(loop)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            result = finish(restarted)
        finally:
            stop.set()
            sampler.join()
    assert result.get("ok") == n
    assert sandbox.stats.submissions == n, "nothing submitted twice"
    assert max(peaks) <= cap, "an adopted generation was counted twice"
    assert sandbox.stats.peak_pending <= cap


async def test_a_redis_restart_mid_run_pauses_the_run_and_loses_nothing(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    cap, n = 6, 150
    sandbox = Sandbox(pending_seconds=(2, 4), time_scale=0.02, pending_limit=cap, seed=3)
    limiter = RedisLimiter(redis_server.url, max_pending=cap, recheck_interval=0.05)
    outcomes = []
    async with AsyncGettyAI.sandbox(sandbox, limiter=limiter, poll_interval=0.01) as client:
        async for outcome in client.generate_many(
            (f"restart prompt {i}" for i in range(n)), journal=tmp_path / "run.sqlite"
        ):
            outcomes.append(outcome)
            if len(outcomes) == 40:
                await anyio.to_thread.run_sync(redis_server.restart, 0.5)
        assert (await limiter.account_limits()).in_use == 0
    assert len(outcomes) == n
    assert all(outcome.ok for outcome in outcomes), [o.error for o in outcomes if o.error]
    assert sandbox.stats.submissions == n, "no id lost, nothing submitted twice"
    assert sandbox.stats.peak_pending <= cap
    assert limiter.round_trips["sync"] >= 1, "it re-registered its leases"


async def test_redis_lost_for_good_stops_submissions_and_loses_nothing(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    cap, n = 4, 60
    journal = tmp_path / "run.sqlite"
    sandbox = Sandbox(pending_seconds=(2, 4), time_scale=0.02, pending_limit=cap, seed=4)
    prompts = [f"lost prompt {i}" for i in range(n)]
    limiter = RedisLimiter(redis_server.url, max_pending=cap, max_outage=0.5)
    outcomes: list[Any] = []

    async def run_until_redis_is_lost(client: AsyncGettyAI) -> None:
        async for outcome in client.generate_many(prompts, journal=journal):
            outcomes.append(outcome)
            if len(outcomes) == 20:
                await anyio.to_thread.run_sync(redis_server.stop)

    async with AsyncGettyAI.sandbox(sandbox, limiter=limiter, poll_interval=0.01) as client:
        with pytest.raises(errors.LimiterUnavailableError, match="unreachable for"):
            await run_until_redis_is_lost(client)
    finished = [o for o in outcomes if o.ok]
    assert len(finished) >= 20 + 1, "the generations pending at the loss were still finished"
    # Redis comes back: the same run resumes from its journal and sends only the rest.
    await anyio.to_thread.run_sync(redis_server.start)
    limiter = RedisLimiter(redis_server.url, max_pending=cap)
    async with AsyncGettyAI.sandbox(sandbox, limiter=limiter, poll_interval=0.01) as client:
        again = [o async for o in client.generate_many(prompts, journal=journal)]
        created = Counter([item.prompt async for item in client.history.list(page_size=100)])
    assert all(o.ok for o in again)
    assert sum(o.replayed for o in again) == len(finished)
    assert sandbox.stats.submissions == n
    assert created == Counter(prompts), "every prompt created exactly once"


async def test_the_learned_ceiling_is_shared_by_workers(redis_server: RedisServer) -> None:
    sandbox = Sandbox(pending_seconds=(2, 3), time_scale=0.02, pending_limit=6, seed=2)
    first = RedisLimiter(redis_server.url, max_pending="auto")
    async with AsyncGettyAI.sandbox(sandbox, limiter=first, poll_interval=0.01) as client:
        async for outcome in client.generate_many(f"learn {i}" for i in range(80)):
            assert outcome.ok
        learned = first.limit
    assert 5 <= learned <= 8
    second = RedisLimiter(redis_server.url, max_pending="auto")
    async with AsyncGettyAI.sandbox(sandbox, limiter=second, poll_interval=0.01) as client:
        state = await second.account_limits()
        assert state.mode == "auto"
        assert state.ceiling is not None
        assert state.limit == learned, "a new worker starts at the first one's ceiling"
        lease = await second.acquire()
        assert second.limit == learned
        await second.refused(lease, pending_cap=False)


async def test_workers_given_different_caps_keep_to_the_lowest_together(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "getty_ai_async.redis")
    sandbox = Sandbox(
        pending_seconds=(1, 2), time_scale=0.02, pending_limit=8, images_per_generation=1
    )
    low = RedisLimiter(redis_server.url, max_pending=2)
    high = RedisLimiter(redis_server.url, max_pending=6)

    async def run(client: AsyncGettyAI, name: str) -> None:
        async for outcome in client.generate_many(f"{name} {i}" for i in range(12)):
            assert outcome.ok

    async with AsyncGettyAI.sandbox(sandbox, limiter=low, poll_interval=0.01) as low_client:
        await low.release(await low.acquire(), finished=False)  # `low` has joined
        async with (
            AsyncGettyAI.sandbox(sandbox, limiter=high, poll_interval=0.01) as client,
            anyio.create_task_group() as group,
        ):
            group.start_soon(run, low_client, "low")
            group.start_soon(run, client, "high")
    assert sandbox.stats.submissions == 24
    assert sandbox.stats.peak_pending <= 2, "with its own cap `high` alone kept 6 pending"
    assert f"worker {high.worker} has max_pending=6, but worker {low.worker}" in caplog.text
