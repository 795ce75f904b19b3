"""Api-Key header and OAuth2 bearer tokens, as an `httpx.Auth`.

One `TokenProvider` per client caches the token. Fetches are single-flight: however
many tasks find the token stale at once, one of them asks the token endpoint and the
rest reuse its answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import httpx

from ._logging import shown_url
from ._transport import retry_after_seconds
from .errors import (
    APIStatusError,
    AuthenticationError,
    GettyAIError,
    TokenUnavailableError,
    make_status_error,
)

__all__ = ["GettyAuth", "Grant", "TokenProvider"]

log = logging.getLogger("getty_ai_async.auth")

_MAX_REFRESH_MARGIN = 300.0
_REFRESH_RETRY_WAIT = 1.0
"""After a failed refresh ahead of expiry, the next one waits at least this long (or the
token endpoint's Retry-After), and at most half the time the token has left."""

Send = Callable[[httpx.Request], Awaitable[httpx.Response]]
Clock = Callable[[], float]


def _mask(secret: str | None) -> str | None:
    return None if secret is None else "***"


@dataclass(frozen=True, slots=True, repr=False)
class Grant:
    """How to obtain tokens: client credentials, password, refresh token or a fixed token."""

    client_id: str
    client_secret: str | None = None
    username: str | None = None
    password: str | None = None
    refresh_token: str | None = None
    access_token: str | None = None

    @property
    def kind(self) -> str:
        if self.username is not None:
            return "password"
        if self.client_secret is not None and self.refresh_token is None:
            return "client_credentials"
        if self.refresh_token is not None:
            return "refresh_token"
        return "access_token"

    def form(self, refresh_token: str | None) -> dict[str, str]:
        """The token endpoint's form body; prefers a refresh token once one is known."""
        form = {"client_id": self.client_id}
        if self.client_secret is not None:
            form["client_secret"] = self.client_secret
        if refresh_token is not None:
            form |= {"grant_type": "refresh_token", "refresh_token": refresh_token}
        elif self.username is not None and self.password is not None:
            form |= {"grant_type": "password", "username": self.username, "password": self.password}
        else:
            form["grant_type"] = "client_credentials"
        return form

    def __repr__(self) -> str:
        return f"Grant(kind={self.kind!r})"


@dataclass(slots=True)
class _Token:
    value: str
    refresh_at: float
    expires_at: float


@dataclass(slots=True, repr=False)
class TokenProvider:
    """Caches a bearer token and refreshes it ahead of expiry, one fetch at a time."""

    grant: Grant
    token_url: str
    send: Send
    """Sends a token request, with retries; raises `GettyAIError` when it fails."""
    clock: Clock = time.monotonic
    send_once: Send | None = None
    """Like `send` but one attempt: for refreshes while the current token is still
    valid, which must not hold callers up with retry waits (default: `send`)."""
    fetches: int = field(default=0, init=False)
    _token: _Token | None = field(default=None, init=False)
    _refresh_token: str | None = field(default=None, init=False)
    _lock: anyio.Lock = field(default_factory=anyio.Lock, init=False)

    def __post_init__(self) -> None:
        self._refresh_token = self.grant.refresh_token
        if self.grant.access_token is not None:
            forever = float("inf")
            self._token = _Token(self.grant.access_token, forever, forever)

    @property
    def can_refresh(self) -> bool:
        return self.grant.client_secret is not None or self._refresh_token is not None

    async def token(self) -> str:
        """A valid token, fetching a new one if the cached one is due for refresh."""
        cached = self._token
        if cached is not None and self.clock() < cached.refresh_at:
            return cached.value
        return await self._refresh(stale=cached)

    async def reject(self, value: str) -> str:
        """The service refused `value` (401): fetch a replacement unless another task did."""
        current = self._token
        if current is not None and current.value != value:
            return current.value
        if not self.can_refresh:
            raise _NoRefresh
        return await self._refresh(stale=current, force=True)

    async def _refresh(self, *, stale: _Token | None, force: bool = False) -> str:
        async with self._lock:
            current = self._token
            # Someone refreshed while we queued for the lock: use theirs.
            if current is not None and current is not stale:
                return current.value
            # Not refreshable, or a failed refresh put the next one off meanwhile.
            if (
                not force
                and current is not None
                and (not self.can_refresh or self.clock() < current.refresh_at)
            ):
                return current.value
            valid = not force and current is not None and self.clock() < current.expires_at
            try:
                self._token = await self._fetch(once=valid)
            except GettyAIError as exc:
                # Whatever went wrong (a 429 or 5xx of the token endpoint, a dropped
                # connection, even a refused grant), a token that is still good keeps
                # callers going; the next refresh is put off rather than tried per call.
                if not valid or current is None:
                    raise
                now = self.clock()
                current.refresh_at = now + self._retry_wait(exc, current.expires_at - now)
                log.warning(
                    "token refresh failed (%s); the current token is valid %.0fs more, "
                    "next refresh in %.1fs",
                    exc,
                    current.expires_at - now,
                    current.refresh_at - now,
                )
                return current.value
            return self._token.value

    @staticmethod
    def _retry_wait(exc: GettyAIError, left: float) -> float:
        hint = 0.0
        if isinstance(exc, APIStatusError):
            hint = retry_after_seconds(exc.response, cap=left) or 0.0
        return min(max(hint, _REFRESH_RETRY_WAIT), left / 2)

    async def _fetch(self, *, once: bool = False) -> _Token:
        self.fetches += 1
        send = self.send_once if once and self.send_once is not None else self.send
        try:
            return await self._request(self._refresh_token, send)
        except AuthenticationError:
            if self._refresh_token is None or self.grant.kind == "refresh_token":
                raise
            # The refresh token expired; the original grant can still mint a new one.
            self._refresh_token = None
            return await self._request(None, send)

    async def _request(self, refresh_token: str | None, send: Send) -> _Token:
        started = self.clock()
        request = httpx.Request(
            "POST",
            self.token_url,
            data=self.grant.form(refresh_token),
            headers={"Accept": "application/json"},
        )
        try:
            response = await send(request)
        except APIStatusError as exc:
            # The client's `send` raises for error statuses: map them like a returned one.
            response = exc.response
        if response.status_code in (400, 401, 403):
            error = make_status_error(response)
            raise AuthenticationError(str(error), response=response, body=error.body)
        if response.status_code >= 300:
            raise make_status_error(response)
        try:
            payload = response.json()
            value = str(payload["access_token"])
            expires_in = float(payload.get("expires_in") or 1800)
        except (ValueError, TypeError, KeyError, AttributeError):
            raise AuthenticationError(
                f"{response.status_code} from the token endpoint without a usable access_token",
                response=response,
                body=None,
            ) from None
        if payload.get("refresh_token"):
            self._refresh_token = payload["refresh_token"]
        margin = min(_MAX_REFRESH_MARGIN, expires_in / 2)
        log.debug("token fetched via %s grant, expires in %.0fs", self.grant.kind, expires_in)
        return _Token(
            value=value,
            refresh_at=started + expires_in - margin,
            expires_at=started + expires_in,
        )

    def __repr__(self) -> str:
        return f"TokenProvider(grant={self.grant!r}, token_url={self.token_url!r})"


class _NoRefresh(Exception):
    """A caller-supplied token was refused and there is nothing to refresh it with."""


async def _or_unavailable(request: httpx.Request, token_url: str, token: Awaitable[str]) -> str:
    """A token for `request`; if the token endpoint failed, `TokenUnavailableError`.

    The token endpoint refusing the credentials stays an `AuthenticationError`. Any
    other failure (its 429 or 5xx after retries, a connection error) must not pass for
    the API route's own answer: a 429 there is not the route's rate limit, and certainly
    not a sign that the account's pending cap is full.
    """
    try:
        return await token
    except AuthenticationError:
        raise
    except GettyAIError as exc:
        raise TokenUnavailableError(
            f"{request.method} {shown_url(request.url)} not sent: no access token from "
            f"{shown_url(token_url)}: {exc}",
            request=request,
            token_error=exc,
        ) from exc


class GettyAuth(httpx.Auth):
    """Adds ``Api-Key`` and ``Authorization: Bearer`` to requests bound for the API host.

    A 401 triggers one token refresh and one replay; a second 401 is returned to the
    caller (who raises `AuthenticationError`). Requests to any other host (a CDN serving
    downloads) get no credentials at all.
    """

    def __init__(self, api_key: str, api_origin: httpx.URL, tokens: TokenProvider | None) -> None:
        self._api_key = api_key
        self._origin = (api_origin.scheme, api_origin.host, api_origin.port)
        self.tokens = tokens

    def is_api_host(self, url: httpx.URL) -> bool:
        return (url.scheme, url.host, url.port) == self._origin

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if not self.is_api_host(request.url):
            yield request
            return
        request.headers["Api-Key"] = self._api_key
        if self.tokens is None:
            yield request
            return
        tokens = self.tokens
        token = await _or_unavailable(request, tokens.token_url, tokens.token())
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        try:
            token = await _or_unavailable(request, tokens.token_url, tokens.reject(token))
        except _NoRefresh:
            return
        log.debug("401 from %s; replaying once with a fresh token", request.url.path)
        request.headers["Authorization"] = f"Bearer {token}"
        yield request

    def __repr__(self) -> str:
        return f"GettyAuth(api_key={_mask(self._api_key)!r}, tokens={self.tokens!r})"
