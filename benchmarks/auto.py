"""The adaptive limit (``max_pending="auto"``) against caps it does not know, or that change.

    python benchmarks/auto.py            # three scenarios, about a minute
    python benchmarks/auto.py --redis redis://127.0.0.1:6379/15   # the same, shared through Redis

The sandbox runs in a process of its own, served on loopback (`_host.py`), as the
service would be: the client's event loop is its own. A generation is pending 0.2 s,
polled every 0.02 s:

  unknown   2,000 prompts, cap 32 unknown to the client: 429s <= 1% of submissions,
            makespan <= 1.10 x ideal (ceil(N/32) x 0.2 s); the same with max_pending=32
            is run first, as the reference for what the machine allows
  raised    1,200 prompts, cap 8, raised to 32 once 400 are done: the limit reaches 32
            within 5 generation-times of the raise
  lowered   1,200 prompts, cap 32, lowered to 8 once 400 are done: the limit is <= 8
            within 1 generation-time, with <= 2 x 8 refusals on the way

With ``--redis`` the client's limiter is a `RedisLimiter` on that server (its keys are
deleted first), so the same rules run in Lua on shared state. Exits 1 if a target is
missed.
"""

from __future__ import annotations

import argparse
import math
import socket
import sys
import time
from typing import Any

import anyio
from _host import Host

from getty_ai_async import AsyncGettyAI, Limiter

PENDING = 0.2
POLL = 0.02


def make_limiter(redis_url: str | None, max_pending: int | str) -> Limiter | None:
    if redis_url is None:
        return None
    from getty_ai_async import RedisLimiter

    return RedisLimiter(redis_url, max_pending=max_pending, prefix=f"bench-auto-{time.time_ns()}")


async def run(
    n: int,
    cap: int,
    *,
    change_at: int | None = None,
    new_cap: int | None = None,
    redis_url: str | None = None,
    max_pending: int | str = "auto",
) -> dict[str, Any]:
    config = {"pending_seconds": PENDING, "pending_limit": cap, "images_per_generation": 1}
    with Host(free_port(), config) as host:
        result = await drive(host, n, cap, change_at, new_cap, redis_url, max_pending)
        stats = host.stats()
    result |= {
        "429s": stats["rate_limited_pending"] + stats["rate_limited_qps"],
        "submissions": stats["submissions_attempted"],
        "peak": stats["peak_pending"],
    }
    result["429_share"] = result["429s"] / max(1, stats["submissions_attempted"])
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def drive(
    host: Host,
    n: int,
    cap: int,
    change_at: int | None,
    new_cap: int | None,
    redis_url: str | None,
    max_pending: int | str,
) -> dict[str, Any]:
    """Run `n` prompts against `host`; the limit and the 429s it counted every 5 ms."""
    limiter = make_limiter(redis_url, max_pending)
    options: dict[str, Any] = {
        "poll_interval": POLL,
        "api_key": f"bench-{time.time_ns()}",
        "api_secret": "bench-secret",
        "base_url": host.base_url,
    }
    if limiter is None:
        options["max_pending"] = max_pending
    else:
        options["limiter"] = limiter
    samples: list[tuple[float, int, int]] = []
    changed_at: float | None = None
    refused_at_change = 0
    async with AsyncGettyAI(**options) as client:
        run = client.generate_many(f"auto prompt {i}" for i in range(n))
        started = time.perf_counter()

        async def sample() -> None:
            while True:
                state = client.limiter.statistics()
                samples.append((time.perf_counter() - started, state.limit, state.refused))
                await anyio.sleep(0.005)

        done = 0
        async with anyio.create_task_group() as group:
            group.start_soon(sample)
            async for outcome in run:
                assert outcome.ok, outcome.error
                done += 1
                if change_at is not None and done == change_at:
                    assert new_cap is not None
                    await anyio.to_thread.run_sync(host.set_cap, new_cap)
                    changed_at = time.perf_counter() - started
                    refused_at_change = client.limiter.statistics().refused
            makespan = time.perf_counter() - started
            group.cancel_scope.cancel()
    result: dict[str, Any] = {"makespan": makespan}
    if changed_at is not None and new_cap is not None:
        after = [sample for sample in samples if sample[0] >= changed_at]
        if new_cap > cap:
            reached = next((s for s in after if s[1] >= new_cap), None)
        else:
            reached = next((s for s in after if s[1] <= new_cap), None)
        result["reaction_gen_times"] = (
            math.inf if reached is None else (reached[0] - changed_at) / PENDING
        )
        result["refused_until_there"] = (
            math.inf if reached is None else reached[2] - refused_at_change
        )
        result["limit_after"] = [s[1] for s in after if s[0] <= changed_at + 6 * PENDING][::8]
        result["refused_since_change"] = samples[-1][2] - refused_at_change
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default=None, help="run the limiter on this Redis")
    args = parser.parse_args()
    fixed = anyio.run(lambda: run(2000, 32, redis_url=args.redis, max_pending=32))
    unknown = anyio.run(lambda: run(2000, 32, redis_url=args.redis))
    ideal = math.ceil(2000 / 32) * PENDING
    raised = anyio.run(lambda: run(1200, 8, change_at=400, new_cap=32, redis_url=args.redis))
    lowered = anyio.run(lambda: run(1200, 32, change_at=400, new_cap=8, redis_url=args.redis))
    backend = "RedisLimiter" if args.redis else "PendingLimiter"
    print(f"{backend}, pending {PENDING}s, poll {POLL}s")
    print(
        f"reference, cap 32 known (max_pending=32): makespan {fixed['makespan']:.2f}s = "
        f"{fixed['makespan'] / ideal:.3f} x ideal, {fixed['429s']} 429s"
    )
    print(
        f"unknown cap 32, 2,000 prompts: makespan {unknown['makespan']:.2f}s = "
        f"{unknown['makespan'] / ideal:.3f} x ideal ({ideal:.1f}s); {unknown['429s']} 429s = "
        f"{100 * unknown['429_share']:.2f}% of {unknown['submissions']} submissions; "
        f"peak pending {unknown['peak']}"
    )
    for name, result in (("raised 8 -> 32", raised), ("lowered 32 -> 8", lowered)):
        print(
            f"{name} after 400 of 1,200: limit there in {result['reaction_gen_times']:.2f} "
            f"generation-times with {result['refused_until_there']} refusals on the way "
            f"({result['refused_since_change']} since the change, {result['429s']} in the run); "
            f"limit every 40 ms after: {result['limit_after']}"
        )
    checks = [
        ("unknown: 429s <= 1% of submissions", unknown["429_share"] <= 0.01),
        ("unknown: makespan <= 1.10 x ideal", unknown["makespan"] <= 1.10 * ideal),
        ("raised: limit reaches 32 within 5 generation-times", raised["reaction_gen_times"] <= 5),
        ("lowered: limit <= 8 within 1 generation-time", lowered["reaction_gen_times"] <= 1),
        ("lowered: <= 16 refusals on the way", lowered["refused_until_there"] <= 16),
    ]
    print()
    for label, ok in checks:
        print(("PASS  " if ok else "FAIL  ") + label)
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
