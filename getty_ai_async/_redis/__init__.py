"""Sharing one account's limits between processes and machines through Redis (extra ``redis``)."""

from __future__ import annotations

from ._budget import RedisRateBudget
from ._limiter import AccountLimits, RedisLimiter, account_hash, check_redis_url, shown_redis_url

__all__ = [
    "AccountLimits",
    "RedisLimiter",
    "RedisRateBudget",
    "account_hash",
    "check_redis_url",
    "shown_redis_url",
]
