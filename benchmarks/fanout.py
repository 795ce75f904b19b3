"""Fan-out benchmarks against the sandbox; prints every figure as a ratio measured in this run.

    python benchmarks/fanout.py            # the full set (about two minutes)
    python benchmarks/fanout.py --quick    # smaller N, for a smoke run

Scenarios (see benchmarks/README.md for the targets and recorded results):
  fixed    N prompts, sandbox cap 32, pending 0.2 s, poll 0.02 s, max_pending=32
  auto     the same with max_pending="auto" (the client does not know the cap)
  naive    asyncio.gather of one task per prompt, each polling every interval and
           retrying a 429 three times after 100/200/300 ms, on the same sandbox
  memory   100,000 (and 10,000) prompts from a generator, pending 0, in a fresh
           process each, sandbox history off: the client process's peak RSS
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx

from getty_ai_async import AsyncGettyAI
from getty_ai_async.sandbox import Sandbox

CAP = 32
PENDING = 0.2
POLL = 0.02


def prompts(n: int) -> Iterator[str]:
    return (f"benchmark prompt {i}" for i in range(n))


def ideal(n: int) -> float:
    return math.ceil(n / CAP) * PENDING


async def run_engine(n: int, max_pending: int | str) -> dict[str, Any]:
    sandbox = Sandbox(pending_seconds=PENDING, pending_limit=CAP, images_per_generation=1)
    async with AsyncGettyAI.sandbox(
        sandbox,
        poll_interval=POLL,
        max_pending=max_pending,  # type: ignore[arg-type]
    ) as client:
        started = time.perf_counter()
        failures = 0
        async for outcome in client.generate_many(prompts(n)):
            failures += outcome.error is not None
        makespan = time.perf_counter() - started
        limit = client.limiter.limit
    stats = sandbox.stats
    return {
        "makespan": makespan,
        "ratio": makespan / ideal(n),
        "failures": failures,
        "429s": stats.rate_limited_pending + stats.rate_limited_qps,
        "429_share": (stats.rate_limited_pending + stats.rate_limited_qps)
        / max(1, stats.submissions_attempted),
        "polls_per_generation": stats.polls / n,
        "peak_pending": stats.peak_pending,
        "final_limit": limit,
    }


async def run_naive(n: int) -> dict[str, Any]:
    """The obvious approach: one task per prompt, retry 429 after 100/200/300 ms."""
    sandbox = Sandbox(pending_seconds=PENDING, pending_limit=CAP, images_per_generation=1)
    failures = 0
    async with httpx.AsyncClient(
        transport=sandbox.transport(), base_url=sandbox.api_base_url
    ) as http:
        token = (
            await http.post(
                sandbox.token_url,
                data={"grant_type": "client_credentials", "client_id": "k", "client_secret": "s"},
            )
        ).json()["access_token"]
        headers = {"Api-Key": "k", "Authorization": f"Bearer {token}"}

        async def one(prompt: str) -> None:
            nonlocal failures
            for delay in (0.1, 0.2, 0.3, None):
                response = await http.post(
                    "/v3/ai/image-generations", json={"prompt": prompt}, headers=headers
                )
                if response.status_code != 429:
                    break
                if delay is None:
                    failures += 1
                    return
                await asyncio.sleep(delay)
            generation_id = response.json()["generation_request_id"]
            while response.status_code == 202:
                await asyncio.sleep(POLL)
                response = await http.get(
                    f"/v3/ai/image-generations/{generation_id}", headers=headers
                )
            if response.status_code != 200:
                failures += 1

        started = time.perf_counter()
        await asyncio.gather(*(one(p) for p in prompts(n)))
        makespan = time.perf_counter() - started
    stats = sandbox.stats
    return {
        "makespan": makespan,
        "ratio": makespan / ideal(n),
        "failures": failures,
        "429s": stats.rate_limited_pending,
        "429_share": stats.rate_limited_pending / max(1, stats.submissions_attempted),
        "polls_per_generation": stats.polls / max(1, stats.submissions),
        "peak_pending": stats.peak_pending,
    }


async def memory_child(n: int) -> dict[str, Any]:
    sandbox = Sandbox(
        pending_seconds=0, pending_limit=None, keep_history=False, images_per_generation=1
    )
    done = 0
    series: list[float] = []
    async with AsyncGettyAI.sandbox(sandbox, poll_interval=POLL, max_pending=64) as client:
        started = time.perf_counter()
        async for outcome in client.generate_many(prompts(n)):
            done += outcome.error is None
            if done % (n // 10) == 0:
                series.append(current_rss_mb())
        elapsed = time.perf_counter() - started
    return {
        "n": n,
        "done": done,
        "seconds": elapsed,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_every_tenth_mb": series,
    }


def current_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure_memory(n: int) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(n)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller N")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(anyio.run(memory_child, args.memory_child)))
        return

    n = 400 if args.quick else 2000
    big, small = (20_000, 2_000) if args.quick else (100_000, 10_000)
    print(f"N={n}, sandbox cap {CAP}, pending {PENDING}s, poll {POLL}s; ideal {ideal(n):.2f}s")
    fixed = anyio.run(run_engine, n, CAP)
    auto = anyio.run(run_engine, n, "auto")
    naive = anyio.run(run_naive, n)
    poll_bound = math.ceil(PENDING / POLL) + 1

    rows = [
        ("fixed max_pending=32", fixed),
        ('auto max_pending="auto"', auto),
        ("naive gather", naive),
    ]
    print(
        f"\n{'scenario':26} {'makespan':>9} {'x ideal':>8} {'429s':>6} {'429 %':>6} "
        f"{'failed':>6} {'polls/gen':>9} {'peak':>5}"
    )
    for name, r in rows:
        print(
            f"{name:26} {r['makespan']:8.2f}s {r['ratio']:8.3f} {r['429s']:6d} "
            f"{100 * r['429_share']:5.1f}% {r['failures']:6d} {r['polls_per_generation']:9.2f} "
            f"{r['peak_pending']:5d}"
        )

    mem_small = measure_memory(small)
    mem_big = measure_memory(big)
    growth = mem_big["peak_rss_mb"] / mem_small["peak_rss_mb"]
    print(
        f"\nmemory: {small:,} prompts peak RSS {mem_small['peak_rss_mb']:.1f} MB "
        f"({mem_small['seconds']:.1f}s); {big:,} prompts peak RSS {mem_big['peak_rss_mb']:.1f} MB "
        f"({mem_big['seconds']:.1f}s, {mem_big['done']:,} done); ratio {growth:.3f}\n"
        f"RSS (MB) after each tenth of the {big:,}: "
        + " ".join(f"{mb:.1f}" for mb in mem_big["rss_every_tenth_mb"])
    )

    checks = [
        ("fixed: makespan <= 1.10 x ideal", fixed["ratio"] <= 1.10),
        ("fixed: zero 429s", fixed["429s"] == 0),
        ("auto: all succeed", auto["failures"] == 0),
        ("auto: makespan <= 1.25 x ideal", auto["ratio"] <= 1.25),
        ("auto: 429s <= 2% of submissions", auto["429_share"] <= 0.02),
        (f"polls per generation <= {poll_bound}", fixed["polls_per_generation"] <= poll_bound),
        (f"memory: peak RSS at {big:,} <= 150 MB", mem_big["peak_rss_mb"] <= 150),
        (f"memory: RSS at {big:,} within 10% of {small:,}", growth <= 1.10),
        ("memory: every prompt done", mem_big["done"] == big),
    ]
    print()
    for label, ok in checks:
        print(f"{verdict(ok)}  {label}")
    print(
        f"\nnaive baseline: {naive['failures']} of {n} prompts failed (ours: {fixed['failures']}), "
        f"{naive['429s']} 429s (ours: {fixed['429s']}), makespan {naive['makespan']:.2f}s "
        f"(ours: {fixed['makespan']:.2f}s for every prompt)"
    )
    sys.exit(0 if all(ok for _, ok in checks) else 1)


if __name__ == "__main__":
    main()
