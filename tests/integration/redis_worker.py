"""One worker process of the Redis scale-out tests: its shard of the prompts, one cap.

    python redis_worker.py '{"base_url": ..., "redis_url": ..., "shard": 0, "shards": 3, ...}'

Prints ``OUT <index> <ok|error kind>`` per outcome, ``PENDING <n>`` whenever the number
of its generations pending changes, and ``SUMMARY <json>`` at the end.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

import anyio

from getty_ai_async import AsyncGettyAI, RedisLimiter


def shard_of(prompt: str, shards: int) -> int:
    return int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big") % shards


async def main(config: dict[str, Any]) -> None:
    limiter = RedisLimiter(
        config["redis_url"],
        max_pending=config.get("max_pending", 8),
        lease_ttl=config.get("lease_ttl", 5.0),
        recheck_interval=config.get("recheck_interval", 0.1),
    )
    prompts = [
        prompt
        for prompt in (f"{config.get('prefix', 'scale')} prompt {i}" for i in range(config["n"]))
        if shard_of(prompt, config["shards"]) == config["shard"]
    ]
    summary: dict[str, int] = {}
    async with AsyncGettyAI(
        api_key=config.get("api_key", "scale-key"),
        api_secret="secret",
        base_url=config["base_url"],
        poll_interval=config.get("poll_interval", 0.01),
        limiter=limiter,
    ) as client:
        run = client.generate_many(prompts, journal=config.get("journal"))
        async with run, anyio.create_task_group() as group:

            async def report_pending() -> None:
                last = -1
                while True:
                    if run.stats.pending != last:
                        last = run.stats.pending
                        print("PENDING", last, flush=True)
                    await anyio.sleep(0.01)

            group.start_soon(report_pending)
            async for outcome in run:
                kind = "ok" if outcome.ok else type(outcome.error).__name__
                summary[kind] = summary.get(kind, 0) + 1
                print("OUT", outcome.index, kind, flush=True)
            group.cancel_scope.cancel()
        summary["round_trips"] = sum(limiter.round_trips.values())
    print("SUMMARY", json.dumps({**summary, "prompts": len(prompts)}), flush=True)


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))
