"""The HTTP client a client builds: httpx's, over aiohttp under asyncio, else httpx's own.

``http_backend=`` (or ``GETTY_HTTP_BACKEND``) of `AsyncGettyAI`:

- ``"auto"`` (the default): the aiohttp transport (`_aiohttp`) when aiohttp is
  installed, decided at the client's first request: under asyncio it is aiohttp,
  under any other loop (trio) httpx's own transport (httpcore). httpx's own too when
  the environment configures a proxy (httpx honours ``HTTPS_PROXY`` and friends; the
  aiohttp transport does not), and when respx's default mocker is active at the first
  request (it patches httpcore, so tests mocking with ``respx.mock`` keep working);
- ``"aiohttp"``: the aiohttp transport, or a `ValidationError` naming the extra to
  install; it fails at the first request under a loop other than asyncio;
- ``"httpx"``: httpx's own transport, as before aiohttp was an option.

A caller's ``transport=`` or ``http_client=`` always wins: none of this applies.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import importlib.util
import logging
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, get_args

import httpx
from httpx._client import ClientState

from .errors import ValidationError

__all__ = ["BACKEND_ENV", "HttpBackend", "HttpClient", "default_transport", "on_asyncio"]

HttpBackend = Literal["auto", "aiohttp", "httpx"]
BACKEND_ENV = "GETTY_HTTP_BACKEND"
_INSTALL_HINT = "pip install 'getty-ai-async[aiohttp]'"
_httpx_log = logging.getLogger("httpx")


def on_asyncio() -> bool:
    """Whether this task runs on asyncio (aiohttp's only loop; trio, say, is not)."""
    try:
        return asyncio.current_task() is not None
    except RuntimeError:
        return False


def _aiohttp_installed() -> bool:
    return importlib.util.find_spec("aiohttp") is not None


def _proxy_configured() -> bool:
    """A proxy in the environment, which httpx's own transport would go through."""
    return any(scheme != "no" for scheme in urllib.request.getproxies())


def _respx_mocking() -> bool:
    """Whether respx's default mocker (which patches httpcore) has a router started."""
    mocks = sys.modules.get("respx.mocks")
    return bool(getattr(getattr(mocks, "HTTPCoreMocker", None), "routers", None))


def _aiohttp_transport(limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    from ._aiohttp import AiohttpTransport

    return AiohttpTransport(limits=limits)


class AutoTransport(httpx.AsyncBaseTransport):
    """aiohttp's transport under asyncio, httpx's own otherwise; chosen at the first request."""

    reports_sending = True
    """Both choices report when a request leaves (httpcore through its trace)."""

    def __init__(self, *, limits: httpx.Limits) -> None:
        self._limits = limits
        self._chosen: httpx.AsyncBaseTransport | None = None

    def backend(self) -> str:
        """What the first request chose ("undecided" before it)."""
        if self._chosen is None:
            return "undecided"
        return "httpcore" if isinstance(self._chosen, httpx.AsyncHTTPTransport) else "aiohttp"

    def _choose(self) -> httpx.AsyncBaseTransport:
        if on_asyncio() and not _respx_mocking():
            chosen = _aiohttp_transport(self._limits)
        else:
            chosen = httpx.AsyncHTTPTransport(limits=self._limits)
        self._chosen = chosen
        return chosen

    def chosen(self) -> httpx.AsyncBaseTransport:
        """The transport requests go to (chosen now if no request was sent yet)."""
        return self._chosen or self._choose()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.chosen().handle_async_request(request)

    async def aclose(self) -> None:
        if self._chosen is not None:
            await self._chosen.aclose()


def backend_from(value: str | None, environ: Mapping[str, str]) -> HttpBackend:
    """The backend asked for: `value`, else ``GETTY_HTTP_BACKEND``, else ``"auto"``."""
    field = "http_backend" if value is not None else BACKEND_ENV
    chosen = value if value is not None else (environ.get(BACKEND_ENV) or "auto").strip().lower()
    for backend in get_args(HttpBackend):
        if chosen == backend:
            return backend  # type: ignore[no-any-return]
    raise ValidationError(field, f"must be one of 'auto', 'aiohttp', 'httpx', got {chosen!r}")


def default_transport(
    backend: HttpBackend, limits: httpx.Limits
) -> httpx.AsyncBaseTransport | None:
    """The transport a client builds for `backend`; None: httpx's own (built by httpx)."""
    if backend == "httpx":
        return None
    if backend == "aiohttp":
        if not _aiohttp_installed():
            raise ValidationError("http_backend", f"'aiohttp' needs aiohttp: {_INSTALL_HINT}")
        return _aiohttp_transport(limits)
    if not _aiohttp_installed() or _proxy_configured():
        return None
    return AutoTransport(limits=limits)


class _Cookies(httpx.Cookies):
    """httpx's cookie store, minus its per-response work for replies that set no cookie.

    httpx hands every response to `http.cookiejar` wrapped with its request (the URL
    parsed again, the headers copied), some 20 µs a reply; a reply without
    ``Set-Cookie`` gives the jar's default policy (which ignores RFC 2965's
    ``Set-Cookie2``) nothing to store, so it is skipped.
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        if "set-cookie" in response.headers:
            super().extract_cookies(response)


class HttpClient(httpx.AsyncClient):
    """The `httpx.AsyncClient` a client builds for itself (one passed in is used as is)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._store = _Cookies(super().cookies)

    # httpx reads and replaces its cookie store through this property only.
    @property
    def cookies(self) -> httpx.Cookies:
        return self._store

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        self._store = _Cookies(cookies)

    async def send_read(self, request: httpx.Request, auth: httpx.Auth) -> httpx.Response:
        """``send(request, auth=auth, follow_redirects=False)``, the reply read, in fewer steps.

        httpx passes each request through four layers (auth, redirects, event hooks, one
        request) and wraps the reply's stream in one more to time it: about a tenth of a
        poll's CPU. With no event hook to run and no redirect to follow, what is left is
        done here, in httpx's order: the auth flow's requests go to the transport for
        their URL (mounts and respx's patches apply); each reply gets its request,
        cookies, default encoding, httpx's log line, ``history`` and ``elapsed``; the flow
        sees it before its body is read, except from a transport that reads it whole in
        one step (``handle_read``: ours over aiohttp), which httpx's stacked stream
        iterators would cost more. A 3xx (an error to the caller) gets no
        ``next_request``. An auth's ``requires_request_body`` / ``requires_response_body``
        need nothing here: as under httpx's ``send``, `httpx.Auth.async_auth_flow` reads
        the bodies before the auth's ``auth_flow`` sees them.
        """
        if self._event_hooks["request"] or self._event_hooks["response"]:
            return await self.send(request, auth=auth, follow_redirects=False)
        if self.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        self._state = ClientState.OPENED
        self._set_timeout(request)
        flow = auth.async_auth_flow(request)
        history: list[httpx.Response] = []
        try:
            request = await flow.__anext__()
            while True:
                started = time.perf_counter()
                transport = self._transport_for_url(request.url)
                if isinstance(transport, AutoTransport):
                    transport = transport.chosen()
                # Ours over aiohttp reads a whole body in one step (`handle_read`).
                read: Callable[[httpx.Request], Awaitable[httpx.Response]] = getattr(
                    transport, "handle_read", transport.handle_async_request
                )
                try:
                    response = await read(request)
                except httpx.RequestError as exc:
                    exc.request = request  # what httpx's request_context does
                    raise
                response.request = request
                if history:
                    response.history = list(history)
                self.cookies.extract_cookies(response)
                response.default_encoding = self._default_encoding
                _httpx_log.info(
                    'HTTP Request: %s %s "%s %d %s"',
                    request.method,
                    request.url,
                    response.http_version,
                    response.status_code,
                    response.reason_phrase,
                )
                following: httpx.Request | None = None
                try:
                    with contextlib.suppress(StopAsyncIteration):
                        following = await flow.asend(response)
                    await response.aread()  # nothing left to do if `handle_read` read it
                except BaseException:
                    await response.aclose()
                    raise
                finally:
                    response.elapsed = datetime.timedelta(seconds=time.perf_counter() - started)
                if following is None:
                    return response
                history.append(response)
                request = following
        finally:
            await flow.aclose()
