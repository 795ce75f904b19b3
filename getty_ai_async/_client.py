"""`AsyncGettyAI`: the client that every namespace and the fan-out engine share."""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import os
import weakref
from collections.abc import AsyncIterable, Iterable
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, Unpack

import httpx

from ._auth import GettyAuth, Grant, TokenProvider
from ._backends import HttpBackend, HttpClient, backend_from, default_transport
from ._constants import (
    DEFAULT_BASE_URL,
    DEFAULT_HISTORY_GRACE,
    DEFAULT_LEASE_SLACK,
    DEFAULT_LIMITS,
    DEFAULT_MAX_PENDING,
    DEFAULT_NOT_FOUND_GRACE,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_TIMEOUT,
    DEFAULT_WAIT_TIMEOUT,
    LOOPBACK_HOSTS,
    default_token_url,
)
from ._downloads import Downloads
from ._fanout import GenerationRun, RequestLike, RunOptions, _Engine
from ._files import Files, Uploads
from ._generations import Generations
from ._history import History
from ._lease import Limiter
from ._limiter import MaxPending, PendingLimiter
from ._models import Generation, GenerationRequest
from ._options import GenerateOptions, SandboxOptions
from ._poller import Poller, PollStrategy
from ._resource import check_positive
from ._transport import RetryPolicy, Transport
from ._version import __version__
from .errors import ValidationError

if TYPE_CHECKING:
    from .sandbox import Sandbox

__all__ = ["AsyncGettyAI"]


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _checked_url(field: str, value: str, allow_insecure_http: bool) -> httpx.URL:
    url = httpx.URL(value)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValidationError(field, f"{value!r} is not an http(s) URL")
    if url.scheme == "http" and not allow_insecure_http and not _is_loopback(url.host):
        raise ValidationError(
            field,
            f"refusing plain http to {url.host!r}: credentials would travel unencrypted "
            "(use https, a loopback host, or allow_insecure_http=True)",
        )
    return url


def _retry_policy(
    policy: RetryPolicy | None, max_retries: int | None, max_retry_time: float | None
) -> RetryPolicy:
    """The client's retry rules: `retry_policy`, or one built from the two shorthands."""
    if policy is None:
        default = RetryPolicy()
        return dataclasses.replace(
            default,
            max_retries=default.max_retries if max_retries is None else max_retries,
            max_retry_time=default.max_retry_time if max_retry_time is None else max_retry_time,
        )
    for name, value in (("max_retries", max_retries), ("max_retry_time", max_retry_time)):
        if value is not None:
            raise ValidationError(
                name, f"set it in retry_policy= (RetryPolicy({name}=...)), not beside it"
            )
    return policy


class AsyncGettyAI:
    """Async client for the Getty Images AI Generator API.

    One instance shares an HTTP connection pool, the token cache, the pending-generation
    limiter and the optional requests-per-second budget; it is safe to use from many
    tasks at once. Use it as ``async with AsyncGettyAI() as client:`` or call `aclose()`.

    Credentials come from the arguments, else the environment (``GETTY_API_KEY``,
    ``GETTY_API_SECRET``, ``GETTY_BASE_URL``, ``GETTY_TOKEN_URL``). With no `limiter`
    and ``GETTY_REDIS_URL`` set, the pending cap (`max_pending`) and the QPS budget are
    shared through Redis with every process of the account (a `RedisLimiter`). Without a token URL,
    a base URL on a Getty host uses Getty's, any other ``{base_url}/oauth2/token``.
    With a secret the client uses the OAuth2 client-credentials grant (or the password
    grant when `username`/`password` are given); with `access_token` it uses that token;
    with only a key it sends just the ``Api-Key`` header.

    Under asyncio, requests go through aiohttp when it is installed (the ``aiohttp``
    extra: a fraction of the CPU per request of httpx's default transport), still behind
    httpx's API; under trio, with a proxy in the environment, or with
    ``http_backend="httpx"`` (``GETTY_HTTP_BACKEND=httpx``) through httpx's own transport.
    ``transport=`` or ``http_client=`` replace either (see `_backends`).
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
        base_url: str | None = None,
        token_url: str | None = None,
        username: str | None = None,
        password: str | None = None,
        refresh_token: str | None = None,
        access_token: str | None = None,
        max_pending: MaxPending | None = None,
        limiter: Limiter | None = None,
        max_requests_per_second: float | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        lease_timeout: float | None = None,
        not_found_grace: float = DEFAULT_NOT_FOUND_GRACE,
        history_grace: float = DEFAULT_HISTORY_GRACE,
        poll_strategy: PollStrategy = "adaptive",
        timeout: float | httpx.Timeout | None = None,
        max_retries: int | None = None,
        max_retry_time: float | None = None,
        retry_policy: RetryPolicy | None = None,
        limits: httpx.Limits | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        http_backend: HttpBackend | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        api_key = api_key or os.environ.get("GETTY_API_KEY")
        if not api_key:
            raise ValidationError("api_key", "missing: pass api_key= or set GETTY_API_KEY")
        api_secret = api_secret or os.environ.get("GETTY_API_SECRET") or None
        self.base_url = _checked_url(
            "base_url",
            base_url or os.environ.get("GETTY_BASE_URL") or DEFAULT_BASE_URL,
            allow_insecure_http,
        )
        self.token_url = _checked_url(
            "token_url",
            token_url or os.environ.get("GETTY_TOKEN_URL") or default_token_url(self.base_url),
            allow_insecure_http,
        )
        self.poll_interval = check_positive("poll_interval", poll_interval)
        self.wait_timeout = check_positive("wait_timeout", wait_timeout)
        if (username is None) != (password is None):
            raise ValidationError(
                "password" if password is None else "username", "username and password go together"
            )
        redis_url = os.environ.get("GETTY_REDIS_URL")
        if limiter is not None:
            if max_pending is not None:
                raise ValidationError("limiter", "pass max_pending or limiter, not both")
            if not isinstance(limiter, Limiter):
                raise ValidationError("limiter", f"{limiter!r} does not implement Limiter")
            self._limiter: Limiter = limiter
        elif redis_url:
            from ._redis import RedisLimiter, check_redis_url

            try:
                check_redis_url(redis_url)
            except ValueError as exc:
                raise ValidationError("GETTY_REDIS_URL", str(exc)) from None
            try:
                self._limiter = RedisLimiter(
                    redis_url,
                    max_pending=DEFAULT_MAX_PENDING if max_pending is None else max_pending,
                )
            except ValueError as exc:
                raise ValidationError("max_pending", str(exc)) from None
        else:
            try:
                self._limiter = PendingLimiter(
                    DEFAULT_MAX_PENDING if max_pending is None else max_pending
                )
            except ValueError as exc:
                raise ValidationError("max_pending", str(exc)) from None
        self.lease_timeout = check_positive(
            "lease_timeout",
            self.wait_timeout + DEFAULT_LEASE_SLACK if lease_timeout is None else lease_timeout,
        )
        if not not_found_grace >= 0:
            raise ValidationError(
                "not_found_grace", f"must be >= 0 seconds, got {not_found_grace!r}"
            )
        if not history_grace >= 0:
            raise ValidationError("history_grace", f"must be >= 0 seconds, got {history_grace!r}")
        self.history_grace = history_grace
        """Seconds to keep looking in the history for a POST whose reply was lost."""

        policy = _retry_policy(retry_policy, max_retries, max_retry_time)

        self.max_requests_per_second = max_requests_per_second
        self._owns_http = http_client is None
        if http_client is not None:
            clash = next(
                (
                    name
                    for name, value in (
                        ("transport", transport),
                        ("http_backend", http_backend),
                        ("timeout", timeout),
                        ("limits", limits),
                    )
                    if value is not None
                ),
                None,
            )
            if clash is not None:
                raise ValidationError(clash, "configure the http_client you pass instead")
        if transport is not None and http_backend is not None:
            raise ValidationError("http_backend", "pass transport= or http_backend=, not both")
        if http_client is None and transport is None:
            transport = default_transport(
                backend_from(http_backend, os.environ), limits or DEFAULT_LIMITS
            )
        self._http = http_client or HttpClient(
            transport=transport,
            timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
            limits=limits or DEFAULT_LIMITS,
            headers={"User-Agent": f"getty-ai-async/{__version__}"},
        )
        tokens = None
        if access_token or api_secret or refresh_token or username:
            grant = Grant(
                client_id=api_key,
                client_secret=api_secret,
                username=username,
                password=password,
                refresh_token=refresh_token,
                access_token=access_token,
            )
            tokens = TokenProvider(
                grant=grant,
                token_url=str(self.token_url),
                send=self._send_token_request,
                send_once=self._send_token_request_once,
            )
        self._auth = GettyAuth(api_key, self.base_url, tokens)
        try:
            # The limiter's budget: this process's, or one shared by the account's workers.
            budget = self._limiter.attach(
                api_key=api_key, max_requests_per_second=max_requests_per_second
            )
        except ValueError as exc:
            raise ValidationError("max_requests_per_second", str(exc)) from None
        self._transport = Transport(self._http, self._auth, self.base_url, policy, budget)
        if poll_strategy not in ("adaptive", "fixed"):
            raise ValidationError(
                "poll_strategy", f"must be 'adaptive' or 'fixed', got {poll_strategy!r}"
            )
        self._poller = Poller(
            self._transport,
            interval=self.poll_interval,
            lease_timeout=self.lease_timeout,
            not_found_grace=not_found_grace,
            strategy=poll_strategy,
        )
        self._is_view = False
        self._runs: weakref.WeakSet[_Engine] = weakref.WeakSet()
        self.simulator: Sandbox | None = None
        """The in-process sandbox this client talks to (see `sandbox()`), else None."""

    @classmethod
    def sandbox(
        cls, simulator: Sandbox | None = None, /, **options: Unpack[SandboxOptions]
    ) -> Self:
        """A client wired in-process to a fresh sandbox: no account, no network.

        Keyword arguments that name `SandboxConfig` or `FaultConfig` fields configure the
        sandbox (``pending_seconds=0.2, pending_limit=32, error_rate=0.1``...); the rest go
        to the client. The sandbox stays reachable as ``client.simulator`` (for its stats).
        """
        # Imported here so that a normal client never loads the simulator.
        from .sandbox import FaultConfig, Sandbox, SandboxConfig

        rest: dict[str, Any] = dict(options)

        def take(config: type[Any]) -> dict[str, Any]:
            names = {field.name for field in dataclasses.fields(config)}
            return {name: rest.pop(name) for name in list(rest) if name in names}

        faults, settings = take(FaultConfig), take(SandboxConfig)
        if simulator is None:
            simulator = Sandbox(faults=FaultConfig(**faults), **settings)
        elif faults or settings:
            raise ValidationError("simulator", "pass sandbox settings or a Sandbox, not both")
        rest.setdefault("api_key", "sandbox-key")
        rest.setdefault("api_secret", "sandbox-secret")
        client = cls(
            base_url=simulator.api_base_url,
            token_url=simulator.token_url,
            transport=simulator.transport(),
            **rest,
        )
        client.simulator = simulator
        return client

    # ------------------------------------------------------------------ namespaces

    @cached_property
    def generations(self) -> Generations:
        """Generate images and edit them (refine, extend, variations, ...)."""
        return Generations(self)

    @cached_property
    def downloads(self) -> Downloads:
        """Buy and save full-size images."""
        return Downloads(self)

    @cached_property
    def history(self) -> History:
        """The account's past generations."""
        return History(self)

    @cached_property
    def files(self) -> Files:
        """Register your own images for influence and background generation."""
        return Files(self)

    @cached_property
    def uploads(self) -> Uploads:
        """Upload masks and reference images."""
        return Uploads(self)

    def with_options(
        self,
        *,
        poll_interval: float | None = None,
        wait_timeout: float | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> Self:
        """A view of this client with other polling or retry settings.

        It shares the connection pool, the token cache, the pending limiter and the QPS
        budget (so the cap still holds across both); closing it closes nothing shared.
        """
        clone = copy.copy(self)
        for namespace in ("generations", "downloads", "history", "files", "uploads"):
            clone.__dict__.pop(namespace, None)  # cached for `self`, bound to its transport
        if poll_interval is not None:
            clone.poll_interval = check_positive("poll_interval", poll_interval)
        if wait_timeout is not None:
            clone.wait_timeout = check_positive("wait_timeout", wait_timeout)
        transport = self._transport
        clone._transport = Transport(
            transport.http,
            transport.auth,
            transport.base_url,
            retry_policy or transport.policy,
            transport.budget,
        )
        clone._owns_http = False
        clone._is_view = True
        return clone

    @property
    def limiter(self) -> Limiter:
        """The leases on the pending cap, shared by every call of this client."""
        return self._limiter

    # --------------------------------------------------------------------- helpers

    async def generate(
        self, prompt: str | GenerationRequest, **options: Unpack[GenerateOptions]
    ) -> Generation:
        """Generate images and wait for them: shorthand for `generations.create`."""
        return await self.generations.create(prompt, **options)

    def generate_many(
        self,
        requests: Iterable[RequestLike] | AsyncIterable[RequestLike],
        **options: Unpack[RunOptions],
    ) -> GenerationRun:
        """Generate images for many prompts; yields a `GenerationOutcome` per input as each ends.

        `requests` (prompts, dicts with an optional ``key``, or `GenerationRequest`s) is
        read lazily. It may be an iterable, an async iterable, or an anyio object stream:
        prefer a stream for inputs that arrive over time, since a quiet stream never
        delays outcomes that are ready (an async generator is waited for).

        At most the client's `max_pending` generations (and this call's, if given) are
        in flight; polls are spread over `poll_interval`. With `journal`, a SQLite file
        records every step: rerunning the same call replays what finished, resumes what
        was pending and submits only what was never sent. Errors become outcomes unless
        ``return_exceptions=False``, which stops at the first one and raises it. Every
        option is described in `RunOptions`.
        """
        run = GenerationRun(self, requests, **options)
        self._runs.add(run._engine)
        return run

    async def _send_token_request(self, request: httpx.Request) -> httpx.Response:
        return await self._transport.send_token_request(request)

    async def _send_token_request_once(self, request: httpx.Request) -> httpx.Response:
        return await self._transport.send_token_request(request, retry=False)

    # ------------------------------------------------------------------- lifecycle

    async def aclose(self) -> None:
        """Stop this client's runs and polling; close the pool (unless the caller passed it in).

        Generations still pending at the service are not lost: their ids are in the
        journal of the run that created them, or in the errors of calls that waited.
        """
        if self._is_view:
            return
        for run in list(self._runs):
            await run.stop()
        await self._poller.aclose()
        await self._limiter.aclose()
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        # A shared limiter that cannot be reached fails here, before anything is sent.
        await self._limiter.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        mode = "api-key" if self._auth.tokens is None else self._auth.tokens.grant.kind
        limiter = self._limiter
        if isinstance(limiter, PendingLimiter):
            cap = "'auto'" if limiter.adaptive else str(limiter.limit)
        else:
            cap = type(limiter).__name__
        return (
            f"{type(self).__name__}(base_url={str(self.base_url)!r}, auth={mode!r}, "
            f"max_pending={cap})"
        )
