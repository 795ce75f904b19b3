"""K worker processes on one account, sharing its pending cap through Redis.

    python examples/workers.py --redis redis://localhost:6379/0 [--workers 3] [--prompts 120]

Getty enforces the pending-generation cap per account, not per process. This serves a
sandbox on loopback (uvicorn, in a thread of this process) whose account cap is
``--cap``, then starts ``--workers`` processes of this same script. Each one is an
`AsyncGettyAI` with a `RedisLimiter` on the same Redis, and takes the prompts whose
hash falls to it (``getty-ai batch --shard I/K`` does the same for a file). Together
they keep the cap full and never go past it: the sandbox's peak pending for the account
stays at the cap and it answers no 429. Run it without ``--redis`` to compare: each
worker then has a cap of its own, and the service refuses what goes past the account's.

Needs the ``redis`` and ``server`` extras and a Redis (``apt-get install redis-server``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import anyio

from getty_ai_async import AsyncGettyAI, RedisLimiter
from getty_ai_async.sandbox import Sandbox, run_in_thread

API_KEY = "workers-example-key"  # the sandbox's account; any key works there


def shard_of(prompt: str, workers: int) -> int:
    """Which worker takes `prompt`: the same answer in every process."""
    return int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big") % workers


async def work(config: dict[str, Any]) -> dict[str, int]:
    """One worker: its share of the prompts under the account's shared cap."""
    prompts = [f"a lighthouse in the style of painter no. {i}" for i in range(config["prompts"])]
    mine = [p for p in prompts if shard_of(p, config["workers"]) == config["index"]]
    options: dict[str, Any] = {"max_pending": config["cap"]}
    if config["redis"]:
        options = {"limiter": RedisLimiter(config["redis"], max_pending=config["cap"])}
    done = failed = 0
    async with AsyncGettyAI(
        api_key=API_KEY,
        api_secret="any",  # noqa: S106 - the sandbox takes any secret
        base_url=config["base_url"],
        poll_interval=0.05,
        **options,
    ) as client:
        async for outcome in client.generate_many(mine):
            done += outcome.ok
            failed += not outcome.ok
    return {"prompts": len(mine), "done": done, "failed": failed}


@dataclass(frozen=True)
class Report:
    workers: int
    prompts: int
    done: int
    cap: int
    peak_pending: int
    """The most generations the sandbox had pending for the account at once."""
    refused: int
    """429s the sandbox answered because the account's cap was full."""
    seconds: float


def main(redis: str | None, workers: int = 3, prompts: int = 120, cap: int = 8) -> Report:
    """Serve a sandbox, run the workers against it, and report what the sandbox saw."""
    sandbox = Sandbox(
        pending_seconds=(2.0, 4.0), time_scale=0.1, pending_limit=cap, images_per_generation=1
    )
    with run_in_thread(sandbox) as served:
        started = time.perf_counter()
        processes = [
            subprocess.Popen(  # noqa: S603 - this script, run by this interpreter
                [sys.executable, __file__, "--worker", json.dumps(config)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for config in (
                {
                    "index": index,
                    "workers": workers,
                    "prompts": prompts,
                    "cap": cap,
                    "redis": redis,
                    "base_url": served.base_url,
                }
                for index in range(workers)
            )
        ]
        results = [json.loads(process.communicate()[0].splitlines()[-1]) for process in processes]
        seconds = time.perf_counter() - started
    return Report(
        workers=workers,
        prompts=sum(result["prompts"] for result in results),
        done=sum(result["done"] for result in results),
        cap=cap,
        peak_pending=sandbox.stats.peak_pending,
        refused=sandbox.stats.rate_limited_pending,
        seconds=seconds,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="K workers sharing one cap through Redis")
    parser.add_argument("--redis", help="Redis URL the workers share (omit to compare)")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=120)
    parser.add_argument("--cap", type=int, default=8, help="the sandbox account's pending cap")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(anyio.run(work, json.loads(args.worker))))
        sys.exit(0)
    report = main(args.redis, args.workers, args.prompts, args.cap)
    shared = "through Redis" if args.redis else "each on its own (no --redis)"
    print(
        f"{report.workers} workers, caps {shared}: {report.done} of {report.prompts} generated "
        f"in {report.seconds:.1f}s; the account had at most {report.peak_pending} pending "
        f"(cap {report.cap}); {report.refused} submits refused by the cap"
    )
