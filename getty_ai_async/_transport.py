"""One HTTP attempt, error mapping in one place, and retries with stamina."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import functools
import logging
import math
import random
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import anyio
import httpx
import stamina

from ._backends import HttpClient
from ._logging import install_retry_hook, shown_url
from ._routes import Route
from ._sending import OnSent, SendWatch, reports_sending
from .errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    InternalServerError,
    RateLimitError,
    TokenUnavailableError,
    ValidationError,
    make_status_error,
)

__all__ = [
    "Deadline",
    "RequestBudget",
    "RetryDecision",
    "RetryPolicy",
    "Transport",
    "retry_after_seconds",
    "wait_within",
]

T = TypeVar("T")

log = logging.getLogger("getty_ai_async.http")

# Timeouts and errors raised before a single byte of the request left the machine.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how long to retry 429s, 5xx and connection errors."""

    max_retries: int = 4
    """Retries after the first attempt; 0 disables retrying."""
    max_retry_time: float = 60.0
    """No wait for a retry ends later than this many seconds after the first attempt.

    The last backoff is cut to fit; a Retry-After that would cross it ends the retrying
    at once (the error says so). It bounds waits, not how long an attempt may take.
    """
    wait_initial: float = 0.25
    wait_max: float = 8.0
    wait_jitter: float = 0.5
    rate_limit_wait: float = 1.0
    """Wait after a 429 that carries no Retry-After (Getty advises one second)."""
    max_retry_after: float = 60.0
    """Cap on a server's Retry-After (longer ones are cut to this)."""
    retry_unsafe_posts: bool = False
    """Replay a POST that may have reached the server (risks paying twice).

    Never applies to purchases (a download PUT, a redownload): see `Route.purchase`.
    """

    def __post_init__(self) -> None:
        max_retries: object = self.max_retries
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValidationError("max_retries", f"must be an integer >= 0, got {max_retries!r}")
        _check_seconds("max_retry_time", self.max_retry_time, allow_inf=True)
        for name in ("wait_initial", "wait_max", "wait_jitter", "rate_limit_wait"):
            _check_seconds(name, getattr(self, name))
        _check_seconds("max_retry_after", self.max_retry_after)
        if not isinstance(self.retry_unsafe_posts, bool):
            raise ValidationError(
                "retry_unsafe_posts", f"must be True or False, got {self.retry_unsafe_posts!r}"
            )


def _check_seconds(field: str, value: object, *, allow_inf: bool = False) -> None:
    """A duration in seconds: a real number >= 0 (never NaN; infinite only if allowed)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or math.isnan(value)
        or value < 0
        or (math.isinf(value) and not allow_inf)
    ):
        raise ValidationError(field, f"must be a number of seconds >= 0, got {value!r}")


class RequestBudget(Protocol):
    """A shared requests-per-second budget that every attempt draws from."""

    async def acquire(self) -> None:
        """Wait for this request's turn."""

    def throttled(self) -> None:
        """The service answered 429: slow down."""


DEFAULT_RETRY_AFTER_FLOOR = 0.1
RETRY_AFTER_FLOOR = DEFAULT_RETRY_AFTER_FLOOR
"""The shortest wait a Retry-After gets, in seconds (module-level so tests can shrink it).

``Retry-After: 0``, a negative value or an HTTP-date in the past mean "now": taken
literally, every client told so retries at the same instant. Such values (anything
under the floor) wait the floor plus up to 100% jitter instead.
"""


def retry_after_seconds(response: httpx.Response, cap: float) -> float | None:
    """Parse ``Retry-After`` (delta seconds or HTTP-date), capped; None when absent or bad.

    Values under `RETRY_AFTER_FLOOR` (0, negative, a date in the past) become the floor
    plus up to 100% jitter; `cap` bounds the result either way.
    """
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # a "-0000" zone: UTC, parsed as a naive datetime
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - dt.datetime.now(dt.UTC)).total_seconds()
    if math.isnan(seconds):
        return None
    if seconds < RETRY_AFTER_FLOOR:
        seconds = RETRY_AFTER_FLOOR * (1.0 + random.random())
    return min(seconds, cap)


def wait_within(
    deadline: float, seconds: float, *, required: bool = False, now: float | None = None
) -> float | None:
    """How long to wait before the next try without crossing `deadline`; None: give up now.

    `deadline` and `now` are on the `anyio.current_time()` clock (`now` defaults to it).
    A wait that ends by the deadline is kept (negative ones become 0). A longer one is
    cut to the time left, so the last try happens at the deadline, unless it is
    `required` (a server's Retry-After: trying sooner is pointless), in which case the
    answer is None. None too when no time is left. This is the one rule for every
    retry and poll wait of the package.
    """
    left = deadline - (anyio.current_time() if now is None else now)
    if left <= 0:
        return None
    if seconds <= left:
        return max(seconds, 0.0)
    return None if required else left


@dataclass(frozen=True, slots=True)
class Deadline:
    """A moment on the `anyio.current_time()` clock that no wait may cross (see `wait_within`)."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """The deadline `seconds` from now (``math.inf``: none)."""
        return cls(anyio.current_time() + seconds)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(self.at - anyio.current_time(), 0.0)

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0

    def wait_within(self, seconds: float, *, required: bool = False) -> float | None:
        """`wait_within` for this deadline."""
        return wait_within(self.at, seconds, required=required)

    async def sleep(self, seconds: float, *, required: bool = False) -> bool:
        """Sleep as `wait_within` allows; False (without sleeping) means give up."""
        wait = self.wait_within(seconds, required=required)
        if wait is None:
            return False
        await anyio.sleep(wait)
        return True


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What to do after a failed attempt: wait `seconds`, then try again."""

    seconds: float
    required: bool = False
    """The wait comes from the server (Retry-After): do not retry sooner."""


Decide = Callable[[Exception, int], RetryDecision | None]
"""Given a failed attempt's error and its number (1-based): retry how, or None: give up."""


def annotate(exc: Exception, note: str) -> None:
    """Append ``(note)`` to the error's text: why it was not retried, say.

    ``str(exc)`` is what callers print (the CLI's one line), so a PEP 678 note, shown
    only in tracebacks, would not do.
    """
    if exc.args and isinstance(exc.args[0], str):
        exc.args = (f"{exc.args[0]} ({note})", *exc.args[1:])


BeforeSend = Callable[[], Awaitable[None]]


class _BeforeSend(httpx.Auth):
    """Wraps an auth flow so that `hooks` run before each request it sends.

    They run after the wrapped flow has its token, right before the request is handed
    to the transport. The QPS budget is drawn here: drawing before
    `httpx.AsyncClient.send` lets requests queue up behind a token fetch and then leave
    in one burst when it arrives, and makes the token request itself wait behind them.
    A transport that cannot report when a request leaves gets its "sent" mark here too
    (see `_sending`). A 401 replay runs them again.
    """

    def __init__(self, inner: httpx.Auth, hooks: Sequence[BeforeSend]) -> None:
        self._inner = inner
        self._hooks = hooks
        self.requires_request_body = inner.requires_request_body
        self.requires_response_body = inner.requires_response_body

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        flow = self._inner.async_auth_flow(request)
        try:
            request = await flow.__anext__()
            while True:
                for hook in self._hooks:
                    await hook()
                response = yield request
                try:
                    request = await flow.asend(response)
                except StopAsyncIteration:
                    return
        finally:
            await flow.aclose()


# A path httpx would leave as it is: non-empty segments of unreserved characters and
# percent-escapes (what `Route.path` makes), none of them a dot segment.
_PLAIN_PATH = re.compile(r"(?:/(?!\.\.?(?:/|$))(?:[A-Za-z0-9._~-]|%[0-9A-Fa-f]{2})+)+")
# httpx keeps a parsed URL as a named tuple of its normalised parts (0.27 and 0.28).
_PARTS_KNOWN = isinstance(getattr(httpx.URL("http://h/"), "_uri_reference", None), tuple)


def _with_path(base: httpx.URL, path: str) -> httpx.URL:
    """`base` with `path` appended: ``httpx.URL(str(base) + path)``, cheaper.

    httpx checks and normalises every character of a URL string it parses (some 50 µs
    for a poll's URL), and every poll has a new id in it. A plain `path` appended to
    an already parsed base would come out of that unchanged, so the base's parts are
    reused with the path swapped in.
    """
    if not (_PARTS_KNOWN and not base.query and not base.fragment and _PLAIN_PATH.fullmatch(path)):
        return httpx.URL(str(base).rstrip("/") + path)
    url = httpx.URL.__new__(httpx.URL)
    parts = base._uri_reference
    url._uri_reference = parts._replace(path=parts.path.rstrip("/") + path)
    return url


class Transport:
    """Sends requests for routes: auth, QPS budget, retries, error mapping, logging."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        auth: httpx.Auth,
        base_url: httpx.URL,
        policy: RetryPolicy,
        budget: RequestBudget | None = None,
    ) -> None:
        self.http = http
        self.auth = auth
        self.base_url = base_url
        self._base = str(base_url).rstrip("/")
        # The same URLs come back (each POST route's, a generation's polls): made once.
        self._endpoints = functools.lru_cache(maxsize=1024)(functools.partial(_with_path, base_url))
        self.policy = policy
        self.budget = budget
        self.reports_sending = reports_sending(http, base_url)
        # The client we build sends in fewer steps (it follows no redirects either).
        self._send_read = http.send_read if isinstance(http, HttpClient) else None
        install_retry_hook()

    def url(self, path: str) -> str:
        """The absolute URL of an API path (paths are already percent-encoded)."""
        return self._base + path

    def endpoint(self, path: str) -> httpx.URL:
        """`url` as an `httpx.URL`, without parsing it again (see `_with_path`)."""
        return self._endpoints(path)

    async def request(
        self,
        route: Route,
        *,
        path_params: Mapping[str, str | int] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        retry_rate_limits: bool = True,
    ) -> httpx.Response:
        """Send with retries; returns a 2xx response or raises a `GettyAIError`.

        ``retry_rate_limits=False`` hands 429s to the caller at once.
        """
        url = self.endpoint(route.path(**(path_params or {})))
        return await self.send_with_retries(
            lambda: self.http.build_request(
                route.method, url, params=params, json=json, content=content, headers=headers
            ),
            idempotent=route.idempotent,
            purchase=route.purchase,
            retry_rate_limits=retry_rate_limits,
        )

    async def send_with_retries(
        self,
        build: Callable[[], httpx.Request],
        *,
        idempotent: bool,
        purchase: bool = False,
        retry_rate_limits: bool = True,
        auth: httpx.Auth | None = None,
    ) -> httpx.Response:
        """Send the request `build` makes, retrying per the policy (see `retry_decision`)."""
        return await self.call_with_retries(
            lambda attempt: self.send(build(), attempt=attempt, auth=auth),
            lambda exc, attempt: self.retry_decision(
                exc,
                attempt,
                idempotent=idempotent,
                purchase=purchase,
                retry_rate_limits=retry_rate_limits,
            ),
        )

    async def send_token_request(
        self, request: httpx.Request, *, retry: bool = True
    ) -> httpx.Response:
        """Send a request to the token endpoint (its own host, its own rate limits).

        It carries no API credentials and stays outside the API's QPS budget: it neither
        waits for a turn nor slows the budget down with its 429s. Retried like any
        idempotent call (a token request costs nothing), unless `retry` is False.
        """
        policy = self.policy if retry else dataclasses.replace(self.policy, max_retries=0)
        plain = Transport(self.http, httpx.Auth(), self.base_url, policy)
        return await plain.send_with_retries(lambda: request, idempotent=True)

    async def call_with_retries(self, attempt: Callable[[int], Awaitable[T]], decide: Decide) -> T:
        """Run `attempt(number)` until it succeeds, `decide` gives up, or the policy does.

        Retries are stamina's (at most ``max_retries``); every wait is bounded by the
        ``max_retry_time`` deadline through `wait_within`.
        """
        policy = self.policy
        deadline = Deadline.after(policy.max_retry_time)
        # Most calls succeed at once: stamina (tenacity's state per call) only comes in
        # once the first attempt failed, which it then sees as its own first attempt.
        try:
            return await attempt(1)
        except Exception as exc:
            first_error: Exception | None = exc
        attempts = 0

        def on(exc: Exception) -> bool | float:
            decision = decide(exc, attempts)
            if decision is None:
                return False
            wait = deadline.wait_within(decision.seconds, required=decision.required)
            if wait is None:
                if attempts <= policy.max_retries and decision.required:
                    annotate(
                        exc,
                        f"not retried: the service's Retry-After of {decision.seconds:g}s "
                        f"would pass max_retry_time={policy.max_retry_time:g}s",
                    )
                return False
            return wait

        async for retrying in stamina.retry_context(
            on=on,
            attempts=policy.max_retries + 1,
            # `on` returns every wait itself (see `backoff`), bounded by the deadline.
            timeout=None,
        ):
            with retrying:
                attempts += 1
                if first_error is not None:
                    error, first_error = first_error, None
                    raise error
                return await attempt(attempts)
        raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter after failed attempt number `attempt` (1-based)."""
        policy = self.policy
        jitter = random.uniform(0, policy.wait_jitter) if policy.wait_jitter else 0.0
        try:
            return min(policy.wait_max, policy.wait_initial * 2.0 ** (attempt - 1) + jitter)
        except OverflowError:
            return policy.wait_max

    async def send(
        self,
        request: httpx.Request,
        *,
        attempt: int = 1,
        auth: httpx.Auth | None = None,
        on_sent: OnSent | None = None,
    ) -> httpx.Response:
        """One attempt: draw from the budget, send, map transport errors and statuses.

        `on_sent` is awaited once, right before the request starts leaving (see
        `_sending`); it may raise `SendAborted` to keep it from leaving.
        """
        auth = auth or self.auth
        hooks: list[BeforeSend] = []
        if self.budget is not None:
            hooks.append(self.budget.acquire)
        # Without a callback, the kind of error is enough to tell (and costs nothing).
        traced: SendWatch | None = None
        if on_sent is not None:
            watch = SendWatch(on_sent)
            if self.reports_sending:
                watch.install(request)
                traced = watch
            else:
                hooks.append(watch.fire)
        if hooks:
            auth = _BeforeSend(auth, hooks)
        started = time.perf_counter()
        try:
            if self._send_read is not None:
                response = await self._send_read(request, auth)
            else:
                # Never follow redirects (even if the caller's client would): httpx keeps
                # custom headers such as Api-Key when it follows one to another host.
                response = await self.http.send(request, auth=auth, follow_redirects=False)
        except APIConnectionError as exc:
            if exc.request is request:
                raise  # TokenUnavailableError (from GettyAuth): this one never left
            # The token request failed under some other auth: this one never left either.
            raise TokenUnavailableError(
                f"{request.method} {shown_url(request.url)} not sent: {exc}",
                request=request,
                token_error=exc,
            ) from exc
        except httpx.TransportError as exc:
            sent = traced.sent if traced is not None else not isinstance(exc, _NOT_SENT)
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "%s %s -> %s (attempt %d, %.3fs, may have been sent: %s)",
                    request.method,
                    request.url.path,
                    type(exc).__name__,
                    attempt,
                    time.perf_counter() - started,
                    sent,
                )
            error = (
                APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
            )
            raise error(
                f"{request.method} {shown_url(request.url)} failed: {type(exc).__name__}: {exc}",
                request=request,
                may_have_been_sent=sent,
            ) from exc
        # Guarded: the arguments (the URL's path is decoded on access) cost more than the
        # call when DEBUG is off, on every request.
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s %s -> %d (attempt %d, %.3fs)",
                request.method,
                request.url.path,
                response.status_code,
                attempt,
                time.perf_counter() - started,
            )
        if response.status_code >= 300:
            if response.status_code == 429 and self.budget is not None:
                self.budget.throttled()
            raise make_status_error(response)
        return response

    def retry_decision(
        self,
        exc: Exception,
        attempt: int,
        *,
        idempotent: bool,
        purchase: bool = False,
        retry_rate_limits: bool = True,
    ) -> RetryDecision | None:
        """Whether and how to retry after `exc` (failed attempt number `attempt`); None: don't.

        429s honour Retry-After, else about `rate_limit_wait`; 5xx honour Retry-After,
        else back off exponentially, as do 408 and connection errors. A request that may
        have reached the service (a read timeout, a dropped connection, a 504) is
        replayed only when `idempotent`, or when the policy opts in to replaying unsafe
        POSTs and it is not a `purchase` (`Route.purchase`: never replayed blindly).
        """
        policy = self.policy
        replayable = idempotent or (policy.retry_unsafe_posts and not purchase)
        if isinstance(exc, RateLimitError):
            if not retry_rate_limits:
                return None
            waited = retry_after_seconds(exc.response, policy.max_retry_after)
            if waited is not None:
                return RetryDecision(waited, required=True)
            return RetryDecision(policy.rate_limit_wait * (1 + 0.25 * random.random()))
        if isinstance(exc, InternalServerError):
            # A gateway timeout may hide a POST the service went on to process.
            if exc.status_code == 504 and not replayable:
                return None
            waited = retry_after_seconds(exc.response, policy.max_retry_after)
            if waited is not None:
                return RetryDecision(waited, required=True)
            return RetryDecision(self.backoff(attempt))
        if isinstance(exc, TokenUnavailableError):
            return None  # the token request was retried already: don't multiply them
        if isinstance(exc, APIConnectionError):
            if exc.may_have_been_sent and not replayable:
                return None
            return RetryDecision(self.backoff(attempt))
        if isinstance(exc, APIStatusError) and exc.status_code == 408:
            return RetryDecision(self.backoff(attempt))
        return None
