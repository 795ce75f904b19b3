"""``getty-ai limits``: what Redis holds for the account that workers share (``--redis``)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import Annotated

import typer

from .._redis import RedisLimiter, account_hash, check_redis_url
from ._run import fail, run_async, settings_of

__all__ = ["limits"]


def limits(
    ctx: typer.Context,
    redis: Annotated[
        str | None,
        typer.Option(
            "--redis",
            help="Redis URL the workers share [default: env GETTY_REDIS_URL].",
            metavar="URL",
            show_default=False,
        ),
    ] = None,
    prefix: Annotated[str, typer.Option(help="Key prefix the workers use.")] = "getty-ai",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Show the account's leases in use, its limit or learned ceiling, waiting workers and
    expired leases reclaimed, as kept in Redis by the workers sharing it."""
    settings = settings_of(ctx)
    url = redis or os.environ.get("GETTY_REDIS_URL")
    if not url:
        fail("no Redis to ask: pass --redis URL or set GETTY_REDIS_URL")
    api_key = settings.api_key or os.environ.get("GETTY_API_KEY")
    if not api_key and settings.sandbox:
        api_key = "sandbox-key"
    if not api_key:
        fail("the account is named by its API key: set GETTY_API_KEY (or pass --api-key)")
    try:
        check_redis_url(url)
    except ValueError as exc:
        fail(f"{'--redis' if redis else 'GETTY_REDIS_URL'}: {exc}")
    except ImportError as exc:
        fail(str(exc))
    try:
        limiter = RedisLimiter(url, api_key=api_key, prefix=prefix)
    except ValueError as exc:
        fail(str(exc))

    async def body() -> int:
        try:
            state = await limiter.account_limits()
        finally:
            await limiter.aclose()
        account = account_hash(api_key)
        if as_json:
            typer.echo(json.dumps({"redis": limiter.url, "account": account, **asdict(state)}))
            return 0
        typer.echo(f"Account {account} on {limiter.url} (prefix {prefix})")
        if not state.mode:
            typer.echo("  nothing recorded yet: no worker has used this Redis for this account")
            return 0
        if state.mode == "auto":
            learned = (
                f"learned ceiling {state.ceiling}"
                if state.ceiling is not None
                else "no ceiling learned yet (slow start)"
            )
            limit = f"{state.limit} (auto: {learned})"
        else:
            limit = f"{state.limit} (fixed)"
        rows = [
            ("limit", limit),
            (
                "leases in use",
                f"{state.in_use} ({state.bound} generations pending, "
                f"{state.claims} submits under way)",
            ),
            ("live workers", _workers(state.workers)),
            ("waiting", f"{state.waiting} callers in {state.waiting_workers} workers"),
            ("refused (429)", f"{state.refused} submits refused by the pending cap"),
            ("expired leases reclaimed", str(state.expired)),
        ]
        for name, value in rows:
            typer.echo(f"  {name + ':':26}{value}")
        return 0

    run_async(settings, body)


def _workers(caps: dict[str, str]) -> str:
    """``3 (max_pending 8, 12: the lowest number applies)``: how many, and their caps."""
    if not caps:
        return "0"
    given = sorted(
        set(caps.values()),
        key=lambda cap: (not cap.isdigit(), int(cap) if cap.isdigit() else 0),
    )
    text = f"{len(caps)} (max_pending {', '.join(given)}"
    return text + (": the lowest number applies)" if len(given) > 1 else ")")
