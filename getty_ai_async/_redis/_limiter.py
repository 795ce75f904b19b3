"""`RedisLimiter`: one account's pending cap, QPS budget and learned ceiling, shared by
every process and machine that works for it, through Redis.

Every decision is a Lua script (`_scripts`), run atomically in Redis on its own clock.
Lease operations (acquire, bind, release...) go in batches: one call at a time carries
every operation queued while the one before it was under way, so a generation costs at
most three round trips (acquire, bind, release) when it runs alone and a share of one
when many run together. Keeping the bound leases alive costs one call per refresh tick
of the client's poller, for all of a worker's leases at once. A worker waits for a lease
without polling: the script that frees a slot hands it to the head of the queue and
publishes the grant on that worker's channel (pub/sub), with a timed re-check
(`recheck_interval`) as a safety net, which also keeps the worker's waiters and its
leases not yet bound alive: those of a worker that died expire within seconds, its bound
leases within `lease_ttl` (unless a worker that resumes its journal adopts them first).

A slot this worker frees while its own waiter was first in the account's queue (as of
its last call) goes to that waiter at once, Redis told in the same batch: the count it
keeps does not change. That is decided on the last reply (the waiter it showed first in
line), so one per reply at most: a cap lowered meanwhile (by another worker, or a refusal)
is exceeded by one lease at most, until one of this worker's generations ends.

If Redis goes away mid-run, bound leases stay with their generations (the client keeps
polling them), releases are kept to send later, and new leases are waited for, retrying
with backoff, for `max_outage` seconds; then `LimiterUnavailableError`. When Redis is
back (even restarted, empty), the worker re-registers everything it holds in one call.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import re
import secrets
import socket
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

import anyio

from .._auto import AUTO_MAX, AUTO_START, PROBE_MAX, PROBE_MIN
from .._background import BackgroundTask, running_trio, spawn
from .._constants import DEFAULT_MAX_PENDING
from .._lease import Lease, LimiterStatistics, RoomWaiters
from .._limiter import DEFAULT_LEASE_TTL, MaxPending
from ..errors import LimiterUnavailableError
from ._scripts import QPS, SCRIPTS

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from .._transport import RequestBudget

__all__ = ["AccountLimits", "RedisLimiter", "check_redis_url", "shown_redis_url"]

log = logging.getLogger("getty_ai_async.redis")

_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 2.0
_SUBSCRIBE_WAIT = 5.0


# How long a waiter that stops waiting tries to take its place out of the queue.
_CANCEL_WITHIN = 1.0

DEFAULT_SOCKET_TIMEOUT = 10.0
DEFAULT_SOCKET_CONNECT_TIMEOUT = 5.0


def shown_redis_url(url: str) -> str:
    """`url` as reprs, logs and errors show it: no password, no query string.

    Never raises: a malformed URL is shown too, in the error that says so. Its host and
    port are shown as written, since parsing them is what may fail.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(a malformed URL)"
    userinfo, at, host = parts.netloc.rpartition("@")
    if at:
        username, colon, _ = userinfo.partition(":")
        host = f"{username}:***@{host}" if colon else f"{username}@{host}"
    return f"{parts.scheme}://{host}{parts.path}"


def check_redis_url(url: str) -> None:
    """A `ValueError` (without the password) unless redis-py can connect with `url`."""
    shown = shown_redis_url(url)
    try:
        scheme = urlsplit(url).scheme
    except ValueError as exc:
        raise ValueError(f"not a valid Redis URL: {shown} ({exc})") from None
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"not a Redis URL: {shown} (redis://, rediss:// or unix://)")
    try:
        _require_redis().asyncio.connection.parse_url(url)
    except ValueError as exc:
        password = urlsplit(url).password
        why = str(exc).replace(password, "***") if password else str(exc)
        raise ValueError(f"not a valid Redis URL: {shown} ({why})") from None


def _require_redis() -> Any:
    try:
        import redis.asyncio
        import redis.exceptions
    except ImportError:
        raise ImportError(
            "RedisLimiter needs the redis extra: pip install 'getty-ai-async[redis]'"
        ) from None
    return redis


def account_hash(api_key: str) -> str:
    """What names an account's keys: a hash of its API key, never the key itself."""
    return hashlib.sha256(f"getty-ai-async:{api_key}".encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class AccountLimits:
    """What Redis holds for one account (`RedisLimiter.account_limits`)."""

    mode: str
    """``"auto"``, the fixed cap the workers use (as text), or ``""``: nothing yet."""
    limit: int
    """The cap in force: the fixed one, or the one learned so far."""
    ceiling: int | None
    """In auto mode, the ceiling the last 429 of the pending cap set (None: slow start)."""
    in_use: int
    """Leases held by every worker: POSTs under way plus generations pending."""
    bound: int
    """Generations pending at the service, each holding a lease."""
    claims: int
    """Leases taken for a POST under way (not bound to a generation yet)."""
    waiting: int
    """Callers waiting for a lease, over every worker."""
    waiting_workers: int
    """Workers with someone waiting for a lease."""
    refused: int
    """Submits refused with a 429 of the pending cap, over every worker."""
    expired: int
    """Leases reclaimed because their holder stopped refreshing them (it died)."""
    workers: dict[str, str]
    """Live workers (named as in lease tokens) and the `max_pending` each was given."""


class _Reply(NamedTuple):
    flag: int
    epoch: int
    limit: int
    in_use: int
    bound: int
    waiting: int
    refused: int
    expired: int
    ceiling: int
    fresh: int
    fixed: int
    head: str
    fixed_by: str
    extra: list[str]


class _Waiter:
    __slots__ = ("epoch", "error", "event")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.epoch: int | None = None
        self.error: BaseException | None = None

    def grant(self, epoch: int) -> None:
        if self.epoch is None and self.error is None:
            self.epoch = epoch
            self.event.set()

    def fail(self, error: BaseException) -> None:
        if self.epoch is None and self.error is None:
            self.error = error
            self.event.set()


class _Batch:
    """Lease operations that go to Redis in one call (the `batch` script)."""

    __slots__ = ("error", "operations", "sent")

    def __init__(self) -> None:
        self.operations: list[str] = []
        self.sent = anyio.Event()
        self.error: BaseException | None = None


# Each operation of a batch: its letter, then this many fields (see the `batch` script).
_FIELDS = {"a": 1, "c": 1, "b": 3, "d": 1, "x": 3, "r": 3, "h": 4}


def _operations(flat: list[str]) -> Iterator[tuple[str, list[str]]]:
    at = 0
    while at < len(flat):
        kind = flat[at]
        count = _FIELDS[kind]
        yield kind, flat[at + 1 : at + 1 + count]
        at += count + 1


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisLimiter:
    """Leases on one account's pending cap, shared through Redis by many processes.

    Pass it as ``AsyncGettyAI(limiter=RedisLimiter("redis://host:6379/0"))`` in every
    worker of the account (or set ``GETTY_REDIS_URL``, or the CLI's ``--redis URL``):
    together they never hold more than `max_pending` leases (an int, or ``"auto"`` to
    learn the account's cap, the learned ceiling being shared too), waiting workers
    are served in arrival order, and the client's ``max_requests_per_second`` becomes
    one budget for every request of every worker.

    Every worker of an account should be given the same `max_pending`. When they differ,
    the lowest number among the live workers' applies to all of them (never more than
    any worker was told), and a worker whose own cap is not the one in force logs a
    WARNING on ``getty_ai_async.redis`` naming the worker with the lower one; while a
    worker with a fixed cap is live, ``"auto"`` workers keep to it and learn nothing. So
    a lower cap takes effect as soon as one worker starts with it, a higher one once the
    last worker with the old cap has stopped: at once when it closed (`aclose`), else
    after its `lease_ttl` (a worker counts for that long after its last call to Redis).

    Keys start with `prefix` and a hash of the API key (the client hands its key over;
    give `api_key` to use the limiter on its own). ``rediss://`` URLs work; pass
    `redis` (a ``redis.asyncio.Redis``) instead of a URL to bring your own client.
    Needs asyncio (redis-py's client) and the extra: ``pip install 'getty-ai-async[redis]'``.

    `lease_ttl`: a bound lease not refreshed for that long is reclaimed (its holder
    died); the client's poller refreshes every ``lease_ttl / 3``. Keep it above the
    longest stall a worker may have (a paused VM, a long GC), and well below how long
    you can afford a dead worker's slots to stay taken. `recheck_interval`: how often a
    waiting worker re-checks and says it is alive (its places in the queue expire after
    5 of those, 2 s at least; its leases not bound yet after 15, or `lease_ttl` if
    shorter). `max_outage`: how long new
    submissions wait for a Redis that went away before `LimiterUnavailableError`.

    `socket_timeout`: how long one call to Redis may go unanswered before Redis counts as
    away (an outage, ridden out as above); `socket_connect_timeout`: the same for opening
    a connection. Lower them to notice a Redis that hangs sooner; keep them above the
    network's worst round trip. Both apply to the client made from the URL: with
    `redis`, set them on that client.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        redis: aioredis.Redis | None = None,
        max_pending: MaxPending = DEFAULT_MAX_PENDING,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        prefix: str = "getty-ai",
        api_key: str | None = None,
        max_outage: float = 60.0,
        recheck_interval: float = 1.0,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        socket_connect_timeout: float = DEFAULT_SOCKET_CONNECT_TIMEOUT,
    ) -> None:
        self.adaptive = max_pending == "auto"
        if isinstance(max_pending, bool) or not (
            self.adaptive or (isinstance(max_pending, int) and max_pending >= 1)
        ):
            raise ValueError(f"max_pending must be a positive int or 'auto', got {max_pending!r}")
        for name, value in (("lease_ttl", lease_ttl), ("recheck_interval", recheck_interval)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0 seconds, got {value!r}")
        if not max_outage >= 0:
            raise ValueError(f"max_outage must be >= 0 seconds, got {max_outage!r}")
        timeouts = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_connect_timeout,
        }
        for name, value in timeouts.items():
            if isinstance(value, bool) or not (
                isinstance(value, int | float) and 0 < value < math.inf
            ):
                raise ValueError(
                    f"{name} must be a positive, finite number of seconds, got {value!r}"
                )
        if not prefix or not re.fullmatch(r"[A-Za-z0-9._:/-]+", prefix):
            raise ValueError(f"prefix must be letters, digits and ._:/- only, got {prefix!r}")
        if redis is None:
            url = url or os.environ.get("GETTY_REDIS_URL") or None
            if url is None:
                raise ValueError("RedisLimiter needs a URL (or set GETTY_REDIS_URL)")
            check_redis_url(url)
        elif url is not None:
            raise ValueError("pass a URL or a redis client, not both")
        else:
            defaults = (DEFAULT_SOCKET_TIMEOUT, DEFAULT_SOCKET_CONNECT_TIMEOUT)
            for (name, value), default in zip(timeouts.items(), defaults, strict=True):
                if value != default:
                    raise ValueError(
                        f"{name} applies to the client RedisLimiter makes from a URL; "
                        "set it on the redis client you pass"
                    )
        self._url = url
        self.url = shown_redis_url(url) if url else type(redis).__name__
        """Where the leases live, as logs and errors show it (no password)."""
        self._password = urlsplit(url).password if url else None
        self._client: aioredis.Redis | None = redis
        self._owns_client = redis is None
        self._fixed = 0 if self.adaptive else int(max_pending)
        self._lease_ttl = float(lease_ttl)
        self._claim_ttl = min(self._lease_ttl, 15 * recheck_interval)
        self._waiter_ttl = min(self._claim_ttl, max(5 * recheck_interval, 2.0))
        self.recheck_interval = float(recheck_interval)
        self._socket_timeout = float(socket_timeout)
        self._socket_connect_timeout = float(socket_connect_timeout)
        self.max_outage = float(max_outage)
        self.prefix = prefix
        host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:24]
        self.worker = f"{host}-{os.getpid()}-{secrets.token_hex(3)}"
        """This limiter's name among the account's workers (in lease tokens)."""
        self._account: str | None = None
        self._namespace = ""
        self._keys: list[str] = []
        if api_key is not None:
            self._use_account(api_key)
        self._tokens = itertools.count(1)
        self._waiters: dict[str, _Waiter] = {}
        self._claims: dict[str, Lease] = {}
        self._bound: dict[str, Lease] = {}
        self._released: set[str] = set()
        self._room = RoomWaiters()
        self._stats = LimiterStatistics(
            limit=self._fixed or AUTO_START, in_use=0, bound=0, waiting=0
        )
        self._ceiling = 0
        self._epoch = 0  # the account's auto-limit epoch as last seen
        self._head = "-"  # our waiter first in the account's queue, as last seen ('-': none)
        self._scripts: dict[str, Any] = {}
        self._listener: BackgroundTask | None = None
        self._subscribed: anyio.Event | None = None  # made on the event loop, in `_ensure`
        self._keeper: BackgroundTask | None = None
        self._connected = False
        self._connecting: anyio.Lock | None = None
        self._outage_since: float | None = None
        self._batch = _Batch()
        self._in_flight: _Batch | None = None
        self._cut: _Batch | None = None  # the batch with our last refusal of the pending cap
        self._sending = False  # a task sends batches until none is left
        self._sender: BackgroundTask | None = None
        self._needs_sync = False
        self._synced_at: float | None = None
        self._seen_state = False
        self._joined = False  # a call told Redis our max_pending
        self._leaving = False  # closed: calls still under way must not tell it again
        self._shared_fixed: int | None = None  # the account's fixed cap as last logged
        self.round_trips: Counter[str] = Counter()
        """Redis calls made so far, by kind (batch of lease operations, sync, qps...)."""

    # ----------------------------------------------------------------- reading

    @property
    def lease_ttl(self) -> float:
        return self._lease_ttl

    @property
    def limit(self) -> int:
        """The account's cap as last seen (it changes over time in auto mode)."""
        return self._stats.limit

    def statistics(self) -> LimiterStatistics:
        """The account's figures (every worker's) as of this worker's last Redis call."""
        return self._stats

    async def account_limits(self) -> AccountLimits:
        """The account's state, read from Redis now (for ``getty-ai limits``)."""
        await self._ensure()
        await self._drain()  # what this worker did so far shows
        raw = await self._eval("stats")
        mode, limit, ceiling, claims, bound, waiting, workers, refused, expired, _ = raw[:10]
        mode = _text(mode)
        caps = [_text(value) for value in raw[10:]]
        return AccountLimits(
            mode=mode,
            limit=int(mode) if mode.isdigit() else int(limit),
            ceiling=int(ceiling) or None,
            in_use=int(claims) + int(bound),
            bound=int(bound),
            claims=int(claims),
            waiting=int(waiting),
            waiting_workers=int(workers),
            refused=int(refused),
            expired=int(expired),
            workers=dict(zip(caps[::2], caps[1::2], strict=True)),
        )

    def __repr__(self) -> str:
        cap = "'auto'" if self.adaptive else str(self._fixed)
        return f"RedisLimiter({self.url!r}, max_pending={cap}, prefix={self.prefix!r})"

    # --------------------------------------------------------------- lifecycle

    def attach(
        self, *, api_key: str, max_requests_per_second: float | None
    ) -> RequestBudget | None:
        self._use_account(api_key)
        if max_requests_per_second is None:
            return None
        from ._budget import RedisRateBudget

        return RedisRateBudget(self, max_requests_per_second)

    async def connect(self) -> None:
        """Reach Redis now: `LimiterUnavailableError` (saying where) if it cannot be."""
        await self._ensure()

    async def aclose(self) -> None:
        """Stop listening and close the connections (a later call connects again).

        Leases bound to generations still pending stay in Redis: those generations still
        take room in the account's cap. They expire after `lease_ttl` unless a worker
        adopts them (resuming its journal).
        """
        self._leaving = True
        if self._sender is not None:
            # Releases on their way still reach Redis, even when cancelled: as long as
            # one call may take (each caller waited that long for its own before).
            with anyio.move_on_after(self._socket_timeout, shield=True):
                await self._sender.wait()
        for task in (self._sender, self._keeper, self._listener):
            if task is not None:
                task.cancel()
                await task.wait()
        self._sender = self._keeper = self._listener = None
        closed = RuntimeError("the RedisLimiter was closed")
        for waiter in self._waiters.values():
            waiter.fail(closed)
        if self._joined and self._client is not None:
            # Our max_pending stops counting now rather than a lease TTL from now. Briefly,
            # even when cancelled: a Redis that hangs must not hold the close.
            self._joined = False
            with (
                anyio.move_on_after(_CANCEL_WITHIN, shield=True),
                contextlib.suppress(*self._connection_errors()),
            ):
                await self._eval("leave", self.worker)
        client, self._connected = self._client, False
        if client is not None and self._owns_client:
            self._client = None
            self._scripts = {}
            with contextlib.suppress(Exception):
                await client.aclose()
        if sum(self.round_trips.values()):
            log.info(
                "Redis round trips of worker %s: %s",
                self.worker,
                json.dumps(dict(self.round_trips), sort_keys=True),
            )

    # ------------------------------------------------------------------ leases

    async def acquire(self) -> Lease:
        await self._ensure()
        token = f"{self.worker}:{next(self._tokens)}"
        waiter = self._waiters[token] = _Waiter()
        try:
            self._start_keeper()  # re-checks, and keeps the waiter alive in Redis
            self._queue("a", token)
            await waiter.event.wait()
            if waiter.error is not None:
                raise waiter.error
        except BaseException:
            self._waiters.pop(token, None)
            # Briefly, even when cancelled: a Redis that hangs would hold the caller for
            # the whole socket timeout, and a place not cancelled expires by itself.
            with anyio.move_on_after(_CANCEL_WITHIN, shield=True):
                await self._send("c", token)
            raise
        del self._waiters[token]
        lease = Lease(anyio.current_time() + self._claim_ttl, token)
        assert waiter.epoch is not None
        lease.epoch = waiter.epoch
        self._claims[token] = lease
        self._start_keeper()  # keeps the lease alive until it is bound
        return lease

    async def adopt(self, generation_request_id: str) -> Lease:
        await self._ensure()
        lease = Lease(anyio.current_time() + self._lease_ttl)
        lease.generation_request_id = generation_request_id
        self._bound[generation_request_id] = lease
        await self._send("d", generation_request_id)
        return lease

    async def bind(self, lease: Lease, generation_request_id: str) -> None:
        if lease.released or lease.bound:
            return
        self._claims.pop(lease.token, None)
        lease.generation_request_id = generation_request_id
        lease.expires_at = anyio.current_time() + self._lease_ttl
        self._bound[generation_request_id] = lease
        await self._send("b", lease.token, generation_request_id, str(lease.epoch))

    async def refused(self, lease: Lease, *, pending_cap: bool) -> None:
        if lease.released:
            return
        lease.released = True
        self._claims.pop(lease.token, None)
        batch = self._queue("x", lease.token, "1" if pending_cap else "0", str(lease.epoch))
        if pending_cap and self.adaptive:
            self._cut = batch  # it may lower the limit: no hand-over until Redis applied it
        await self._sent(batch)

    async def release(self, lease: Lease, *, finished: bool) -> None:
        if lease.released:
            return
        lease.released = True
        generation_request_id = lease.generation_request_id
        if generation_request_id is None:
            self._claims.pop(lease.token, None)
            await self._send("r", lease.token, "", "0")
            return
        if self._bound.get(generation_request_id) is lease:
            del self._bound[generation_request_id]
        flag = "1" if finished else "0"
        heir = self._heir(lease)
        if heir is None:
            await self._send("r", lease.token, generation_request_id, flag)
            return
        token, waiter = heir
        waiter.grant(self._epoch)
        await self._send("h", lease.token, generation_request_id, flag, token)

    def _heir(self, lease: Lease) -> tuple[str, _Waiter] | None:
        """The waiter of ours the slot of `lease` goes to at once, without waiting for Redis.

        Only the waiter of ours our last reply showed first in the account's queue (so
        Redis would serve it next anyway), and only while it still waits: one per reply
        at most. Only while the account was within its cap, no refusal of ours is on its
        way to lower it, Redis is reachable, and the lease is well within its TTL (one
        that a stall let expire in Redis frees no slot there). The slot passes to the
        waiter: the count Redis keeps does not change. A cap lowered since the reply (by
        another worker, or its refusal) is exceeded by that one lease at most, until one
        of this worker's generations ends.
        """
        waiter = self._waiters.get(self._head)
        if (
            waiter is None
            or waiter.epoch is not None
            or waiter.error is not None
            or self._outage_since is not None
            or self._needs_sync
            or self._leaving
            or self._stats.in_use > self._stats.limit
            or (self._cut is not None and not self._cut.sent.is_set())
            or lease.expires_at - anyio.current_time() < self._lease_ttl / 2
        ):
            return None
        return self._head, waiter

    async def refresh(self, leases: Sequence[Lease]) -> None:
        ids = [
            lease.generation_request_id
            for lease in leases
            if lease.generation_request_id is not None and not lease.released
        ]
        if not ids or self._client is None:
            return
        expires_at = anyio.current_time() + self._lease_ttl
        try:
            reply = self._apply(await self._eval("sync", 0, 0, 0, len(ids), *ids, 0))
        except self._connection_errors() as exc:
            self._lost(exc)
            return
        self._back()
        self._on_granted(reply)
        for lease in leases:
            lease.expires_at = expires_at

    async def wait_for_room(self, timeout: float) -> None:
        with contextlib.suppress(LimiterUnavailableError):
            await self._ensure()  # room comes through the listener
        await self._room.wait(timeout)

    # ------------------------------------------------------------- connection

    def _use_account(self, api_key: str) -> None:
        if not api_key:
            raise ValueError("RedisLimiter needs the account's API key")
        if self._account is not None and self._account != api_key:
            raise ValueError("this RedisLimiter already serves another account (API key)")
        self._account = api_key
        self._namespace = f"{self.prefix}:{{{account_hash(api_key)}}}:"
        self._keys = [
            self._namespace + name
            for name in ("leases", "pending", "queue", "waiters", "state", "workers", "caps")
        ]

    def _connection_errors(self) -> tuple[type[BaseException], ...]:
        """What makes Redis "away" (wait, retry, tell it later) rather than an error.

        Besides a lost connection: a server that cannot take writes for now, such as a
        primary demoted by a failover (READONLY), one out of memory, or a replica whose
        primary is down: each passes, and failing inputs or forgetting releases over it
        would hold the account's cap for a whole lease TTL.
        """
        found = _require_redis().exceptions
        return (
            found.ConnectionError,
            found.TimeoutError,
            OSError,
            found.ReadOnlyError,
            found.OutOfMemoryError,
            found.MasterDownError,
            found.TryAgainError,
        )

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            module = _require_redis()
            assert self._url is not None
            self._client = module.asyncio.Redis.from_url(
                self._url,
                socket_connect_timeout=self._socket_connect_timeout,
                socket_timeout=self._socket_timeout,
            )
        client: aioredis.Redis = self._client
        if not self._scripts:
            scripts = {**SCRIPTS, "qps": QPS}
            self._scripts = {name: client.register_script(text) for name, text in scripts.items()}
        return client

    def _scrub(self, text: str) -> str:
        if self._password:
            text = text.replace(self._password, "***")
        return text

    def _unavailable(
        self, exc: BaseException, *, since: float | None = None
    ) -> LimiterUnavailableError:
        why = self._scrub(f"{type(exc).__name__}: {exc}")
        if since is None:
            message = f"cannot reach Redis at {self.url} ({why})"
        else:
            message = (
                f"Redis at {self.url} unreachable for {since:.0f}s, longer than "
                f"max_outage={self.max_outage:g}s ({why}); nothing new is submitted"
            )
        return LimiterUnavailableError(message)

    async def _ensure(self) -> None:
        """Connected, subscribed, for an account; a clear error at start if Redis is not there."""
        if not self._keys:
            raise ValueError(
                "RedisLimiter has no account: hand it to AsyncGettyAI(limiter=...) or pass api_key="
            )
        if self._connected:
            return
        if running_trio():
            raise RuntimeError("RedisLimiter runs under asyncio (redis-py's client), not trio")
        if self._connecting is None:
            self._connecting = anyio.Lock()
        async with self._connecting:
            if self._connected:
                return
            client = self._redis()
            try:
                self.round_trips["ping"] += 1
                await client.ping()
            except self._connection_errors() as exc:
                raise self._unavailable(exc) from None
            except _require_redis().exceptions.RedisError as exc:
                raise self._unavailable(exc) from None
            self._connected = True
            self._leaving = False
            if self._listener is None:
                subscribed = self._subscribed = anyio.Event()
                self._listener = spawn(self._listen, name="getty-ai redis listener")
                with anyio.move_on_after(_SUBSCRIBE_WAIT):
                    await subscribed.wait()

    async def _eval(self, name: str, *args: Any) -> Any:
        """One round trip: the script `name` on the account's keys."""
        client = self._redis()
        self.round_trips[name] += 1
        if name == "qps":
            keys = [self._namespace + "qps"]
            return await self._scripts[name](keys=keys, args=list(args), client=client)
        seed_limit = self._stats.limit if self.adaptive else self._fixed
        settings = (
            f"{self._fixed} {int(self._lease_ttl * 1000)} {int(self._claim_ttl * 1000)} "
            f"{seed_limit} {self._ceiling} {AUTO_MAX} {PROBE_MIN} {PROBE_MAX} "
            f"{self._namespace} {int(self._waiter_ttl * 1000)} "
            f"{'' if self._leaving else self.worker}"
        )
        if name != "stats" and not self._leaving:
            self._joined = True
        return await self._scripts[name](keys=self._keys, args=[settings, *args], client=client)

    def _queue(self, *operation: str) -> _Batch:
        """Add a lease operation to the next batch, and see that a batch goes out.

        One call to Redis at a time carries every operation queued while the one before it
        was under way: a generation's acquire, bind and release cost three round trips
        when it runs alone, and a share of one when many run together.
        """
        batch = self._batch
        batch.operations.extend(operation)
        if not self._sending:
            self._sending = True
            self._sender = spawn(self._send_batches, name="getty-ai redis batches")
        return batch

    async def _drain(self) -> None:
        """Until Redis has every lease operation queued so far."""
        last = self._batch if self._batch.operations else self._in_flight
        if last is not None:
            await last.sent.wait()

    async def _send(self, *operation: str) -> None:
        """`_queue`, then wait until Redis has it (or is found away: kept for later)."""
        await self._sent(self._queue(*operation))

    @staticmethod
    async def _sent(batch: _Batch) -> None:
        await batch.sent.wait()
        if batch.error is not None:
            raise batch.error

    async def _send_batches(self) -> None:
        try:
            while self._batch.operations:
                batch, self._batch = self._batch, _Batch()
                self._in_flight = batch
                try:
                    raw = await self._eval("batch", *batch.operations)
                except self._connection_errors() as exc:
                    self._lost(exc)
                    self._keep_for_later(batch.operations)
                except Exception as exc:
                    # Not an outage (a script error, a busy Redis...): every caller sees
                    # it. A full sync re-registers what this worker holds and its releases
                    # are sent again; a refusal or a cancel in it is lost (their leases
                    # and places expire by themselves).
                    batch.error = exc
                    for kind, fields in _operations(batch.operations):
                        waiter = self._waiters.get(fields[0]) if kind == "a" else None
                        if waiter is not None:
                            waiter.fail(exc)
                    self._keep_for_later(batch.operations)
                    self._needs_sync = True
                    self._start_keeper()
                else:
                    self._back()
                    self._on_granted(self._apply(raw))
                finally:
                    self._in_flight = None
                    batch.sent.set()
        finally:
            self._sending = False
            if self._batch.operations:  # cancelled (closing) with some still to send
                left, self._batch = self._batch, _Batch()
                left.error = RuntimeError(
                    "the RedisLimiter was closed before these lease operations reached "
                    "Redis: their leases expire there after lease_ttl"
                )
                left.sent.set()

    def _keep_for_later(self, operations: list[str]) -> None:
        """Redis is away: what a lost batch said is said again once it is back.

        The keeper's full sync re-registers waiters, claims and bound generations; only
        releases need remembering, and each frees room for a refused submit of ours.
        """
        for kind, fields in _operations(operations):
            if kind in ("r", "h") and fields[1]:
                self._released.add(fields[1])
                self._room.wake(1)

    def _apply(self, raw: bytes | str) -> _Reply:
        fields = _text(raw).split(" ")
        # Eleven counters, then the head of the queue, who fixed the cap, and grants.
        reply = _Reply._make([*map(int, fields[:11]), fields[11], fields[12], fields[13:]])
        if reply.fixed != self._shared_fixed and not self._leaving:
            self._tell_cap(reply)
        self._stats = LimiterStatistics(
            limit=reply.limit,
            in_use=reply.in_use,
            bound=reply.bound,
            waiting=reply.waiting,
            refused=reply.refused,
            expired=reply.expired,
        )
        self._ceiling = reply.ceiling
        self._epoch = reply.epoch
        self._head = reply.head
        if reply.fresh and self._seen_state and (self._bound or self._claims or self._waiters):
            # Redis lost the account's state (restarted empty): say again what we hold.
            self._needs_sync = True
            self._start_keeper()
        self._seen_state = True
        return reply

    def _tell_cap(self, reply: _Reply) -> None:
        """Log when the account's cap stops or starts being this worker's `max_pending`."""
        before, self._shared_fixed = self._shared_fixed, reply.fixed
        mine = str(self._fixed) if self._fixed else "'auto'"
        if reply.fixed == self._fixed:
            if before is not None:
                log.info("the account's cap is this worker's max_pending=%s again", mine)
            return
        rule = (
            "the lowest max_pending among live workers applies to every one of them"
            if self._fixed
            else "while a worker with a fixed cap is live, the lowest fixed max_pending "
            "applies to every worker and nothing is learned"
        )
        log.warning(
            "worker %s has max_pending=%s, but worker %s, sharing the account's cap through "
            "Redis at %s (prefix %r), has max_pending=%d: %s, so the cap is %d until that "
            "worker stops. Give every worker of an account the same max_pending",
            self.worker,
            mine,
            reply.fixed_by,
            self.url,
            self.prefix,
            reply.fixed,
            rule,
            reply.fixed,
        )

    def _on_granted(self, reply: _Reply) -> None:
        for token in reply.extra:
            waiter = self._waiters.get(token)
            if waiter is not None:
                waiter.grant(reply.epoch)

    def _lost(self, exc: BaseException) -> None:
        self._needs_sync = True
        if self._outage_since is None:
            self._outage_since = anyio.current_time()
            log.warning(
                "Redis at %s unreachable (%s): new submissions wait (up to %gs); "
                "pending generations are still polled",
                self.url,
                self._scrub(f"{type(exc).__name__}: {exc}"),
                self.max_outage,
            )
        self._start_keeper()

    def _back(self) -> None:
        if self._outage_since is not None:
            log.warning(
                "Redis at %s reachable again after %.1fs; re-registering %d leases",
                self.url,
                anyio.current_time() - self._outage_since,
                len(self._bound) + len(self._claims),
            )
            self._outage_since = None

    # ------------------------------------------------------- background tasks

    def _start_keeper(self) -> None:
        if self._keeper is None or self._keeper.done:
            self._keeper = spawn(self._keep, name="getty-ai redis keeper")

    async def _keep(self) -> None:
        """While anything is held or waited for: one sync per `recheck_interval`."""
        delay = _BACKOFF_FIRST
        while True:
            if not self._needs_sync:
                await anyio.sleep(self.recheck_interval)
            if not (self._waiters or self._claims or self._needs_sync or self._released):
                break
            # A stall of this worker's event loop (a blocking call, a paused VM) longer
            # than a waiter's TTL let Redis drop its places in the queue, which a plain
            # sync only refreshes: after a long gap, register everything again.
            gap = 0.0 if self._synced_at is None else anyio.current_time() - self._synced_at
            full = self._needs_sync or gap >= self._waiter_ttl / 2
            waiters = list(self._waiters)
            claims = list(self._claims)
            bound = list(self._bound) if full else []
            released = list(self._released)
            try:
                raw = await self._eval(
                    "sync",
                    int(full),
                    len(waiters),
                    *waiters,
                    len(claims),
                    *claims,
                    len(bound),
                    *bound,
                    len(released),
                    *released,
                )
            except self._connection_errors() as exc:
                self._lost(exc)
                since = anyio.current_time() - (self._outage_since or anyio.current_time())
                if since >= self.max_outage:
                    error = self._unavailable(exc, since=since)
                    for waiter in self._waiters.values():
                        waiter.fail(error)
                await anyio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)
                continue
            delay = _BACKOFF_FIRST
            self._synced_at = anyio.current_time()
            self._back()
            self._released.difference_update(released)
            self._on_granted(self._apply(raw))
            if full:
                self._needs_sync = False
                await self._undo_stale(waiters, claims, bound)

    async def _undo_stale(self, waiters: list[str], claims: list[str], bound: list[str]) -> None:
        """A full sync re-added what it was sent; whatever ended meanwhile goes again."""
        for token in [*waiters, *claims]:
            if token not in self._waiters and token not in self._claims:
                await self._send("c", token)
        self._released.update(id_ for id_ in bound if id_ not in self._bound)

    async def _listen(self) -> None:
        """Grants for this worker's waiters, and room when a generation ends."""
        grant_channel = f"{self._namespace}grant:{self.worker}"
        room_channel = f"{self._namespace}room"
        delay = _BACKOFF_FIRST
        while True:
            pubsub = self._redis().pubsub()
            try:
                await pubsub.subscribe(grant_channel, room_channel)
                if self._subscribed is not None:
                    self._subscribed.set()
                delay = _BACKOFF_FIRST
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None:
                        continue
                    data = _text(message["data"])
                    if _text(message["channel"]) == room_channel:
                        self._room.wake(int(data) if data.isdigit() else 1)
                        continue
                    epoch, *tokens = data.split()
                    for token in tokens:
                        waiter = self._waiters.get(token)
                        if waiter is not None:
                            waiter.grant(int(epoch))
            except self._connection_errors() as exc:
                self._lost(exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)
            finally:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
