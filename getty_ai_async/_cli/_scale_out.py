"""``getty-ai batch --redis URL --shard I/K``: one of many workers on one account."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from .._limiter import MaxPending
from ._errors import UsageError
from ._inputs import BatchInput
from ._shard import Shard, parse_shard, shard_input, shard_path

if TYPE_CHECKING:
    from .._redis import RedisLimiter

__all__ = ["ScaleOut", "scale_out"]


@dataclass(frozen=True, slots=True)
class ScaleOut:
    limiter: RedisLimiter | None
    shard: Shard | None

    def input(self, source: BatchInput) -> BatchInput:
        """This worker's share of the inputs."""
        return source if self.shard is None else shard_input(source, self.shard)

    def path(self, default: Path) -> Path:
        """A default output of this worker: one results file and journal per shard."""
        return default if self.shard is None else shard_path(default, self.shard)

    def client_options(self) -> dict[str, Any]:
        """`AsyncGettyAI` options: the ``--redis`` limiter, if any."""
        if self.limiter is None:
            return {}
        return {"limiter": self.limiter, "max_pending": None}


def scale_out(redis: str | None, shard: str | None, max_pending: MaxPending | None) -> ScaleOut:
    """Check ``--redis`` (a `RedisLimiter` carrying `max_pending`) or ``GETTY_REDIS_URL``,
    and ``--shard``; say so when shards would not share a cap."""
    parsed = parse_shard(shard) if shard is not None else None
    if parsed is not None and parsed[1] > 1 and not (redis or os.environ.get("GETTY_REDIS_URL")):
        typer.echo(
            "getty-ai: note: --shard without --redis (or GETTY_REDIS_URL): each worker keeps "
            "a cap of its own, so together they may exceed the account's",
            err=True,
        )
    url = redis or os.environ.get("GETTY_REDIS_URL")
    if not url:
        return ScaleOut(None, parsed)
    from .._constants import DEFAULT_MAX_PENDING
    from .._redis import RedisLimiter, check_redis_url

    try:
        check_redis_url(url)
    except ValueError as exc:
        raise UsageError(f"{'--redis' if redis else 'GETTY_REDIS_URL'}: {exc}") from None
    if redis is None:
        return ScaleOut(None, parsed)  # the client makes its limiter from the environment
    limiter = RedisLimiter(
        redis, max_pending=DEFAULT_MAX_PENDING if max_pending is None else max_pending
    )
    return ScaleOut(limiter, parsed)
