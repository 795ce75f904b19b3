"""Type-check only (never run): the public API as callers use it, checked by mypy --strict.

tests/unit/test_typing.py runs mypy on this file and on misspelled calls.
"""

from __future__ import annotations

from pathlib import Path

from getty_ai_async import (
    AspectRatio,
    AsyncGettyAI,
    ClientOptions,
    Generation,
    GenerationOutcome,
    LimiterStatistics,
    RedisLimiter,
    RetryPolicy,
    SandboxOptions,
    errors,
)


async def headline_calls() -> None:
    async with AsyncGettyAI.sandbox(
        pending_seconds=(0.1, 0.5),
        pending_limit=32,
        error_rate=0.1,
        route_drop_rates={"download_put": 0.5},
        poll_interval=0.2,
        max_pending="auto",
        retry_policy=RetryPolicy(max_retries=2, max_retry_time=5.0),
    ) as client:
        generation: Generation = await client.generate(
            "a red fox in snow",
            aspect_ratio=AspectRatio.LANDSCAPE_16_9,
            negative_prompt="people",
            seed=7,
            mood="warm",
            product_id=4,
            wait=True,
            timeout=30.0,
        )
        pending = await client.generations.create("a lighthouse", wait=False)
        done = await client.generations.wait(pending.generation_request_id, timeout=60)
        path: Path = await client.downloads.save(
            done.generation_request_id, 0, "out", size_name="1k"
        )
        async for outcome in client.generate_many(["a", "b"], journal="run.sqlite"):
            result: GenerationOutcome = outcome
            if result.error is not None and isinstance(result.error, errors.TokenUnavailableError):
                print(result.error.token_error, path, generation)


def forward(options: ClientOptions, sandbox: SandboxOptions) -> tuple[AsyncGettyAI, AsyncGettyAI]:
    return AsyncGettyAI(**options), AsyncGettyAI.sandbox(**sandbox)


async def scale_out() -> None:
    limiter = RedisLimiter("rediss://:pw@redis.example:6380/0", max_pending="auto", lease_ttl=30)
    async with AsyncGettyAI(limiter=limiter, max_requests_per_second=10) as client:
        statistics: LimiterStatistics = client.limiter.statistics()
        state = await limiter.account_limits()
        try:
            await client.generate("a fox")
        except errors.LimiterUnavailableError as error:
            print(error, statistics.limit, state.ceiling, limiter.round_trips["batch"])
