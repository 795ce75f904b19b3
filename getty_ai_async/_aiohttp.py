"""An httpx transport over aiohttp: httpx's API on the outside, aiohttp's pool inside.

Under asyncio, httpx's default transport (httpcore) spends most of a request's CPU in
its connection pool once many requests are in flight (benchmarks/README.md); aiohttp's
pool and C parser cost a fraction of it. Requests, responses, auth flows and test
doubles stay httpx's; only the bytes go through one `aiohttp.ClientSession`, opened at
the first request inside the running loop and closed by `aclose()`.

It keeps the rules of httpx's own transport:

- aiohttp's errors become the httpx exceptions `Transport.send` maps (`_error_for`); a
  kind that says "not sent" (ConnectError, ConnectTimeout) is used only where aiohttp
  raises it before the request is written;
- the request's ``timeout`` extension (an `httpx.Timeout`) bounds the wait for a
  connection (pool), the connect, and each read (`_client_timeout`); aiohttp has no
  write timeout (request bodies here are small; an upload to a server that stops
  reading waits until the connection fails);
- no redirects, no replays: aiohttp would silently resend an idempotent request once
  when a kept-alive connection drops, and a download PUT is a purchase;
- no cookies, decompression or proxies of its own: httpx's client keeps the cookies and
  decodes the body; the client uses httpx's transport when proxies are configured;
- the response body streams: it is read as it arrives and released on close.

The "sent" seam (see `_sending`): the `ON_SENT` callback of a request is awaited once a
connection is in hand, from the pool or newly made, right before the request is
written. Waiting for a free connection, DNS, TCP and TLS are not sending; a failure
there reaches the caller with ``may_have_been_sent=False``. aiohttp's trace hooks for
the same moment (``on_connection_reuseconn`` / ``on_connection_create_end``) are not
used: a callback that raises there (`SendAborted`, a cancellation) leaves the
connection neither pooled nor closed, and every request would pay for the tracing.
The connector below calls the callback after `connect()` returns instead, and hands
the unused connection back to the pool if it raises.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import yarl
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.tracing import Trace

from ._backends import on_asyncio
from ._sending import ON_SENT, OnSent

__all__ = ["AiohttpTransport"]

# The callback of the request being sent by this task; read by `_Connector.connect`,
# which aiohttp calls in the same task (a context variable: no per-request plumbing
# through aiohttp's request objects).
_on_sent: contextvars.ContextVar[OnSent | None] = contextvars.ContextVar(
    "getty_ai_async_on_sent", default=None
)

# Headers httpx's client decides on (it always sets them): aiohttp must not add its own
# (an application/octet-stream Content-Type on a bare body, say).
_SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "Content-Type", "User-Agent")


class _Connector(aiohttp.TCPConnector):
    """A TCP connector that reports the moment a request is about to be written."""

    async def connect(
        self, req: ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout
    ) -> Connection:
        connection = await super().connect(req, traces, timeout)
        on_sent = _on_sent.get()
        if on_sent is not None:
            try:
                await on_sent()
            except BaseException:
                connection.release()  # nothing was written: the connection is as good as new
                raise
        return connection


@functools.lru_cache(maxsize=64)
def _client_timeout(
    connect: float | None, read: float | None, pool: float | None
) -> aiohttp.ClientTimeout:
    """aiohttp's timeouts for an httpx.Timeout's (write has no aiohttp counterpart).

    aiohttp's ``connect`` bounds the pool wait and the connect together: it gets the
    pool timeout (a request never queues longer than httpx would let it), and
    ``sock_connect`` the connect timeout alone (TCP and TLS); ``sock_read`` each read.
    """
    return aiohttp.ClientTimeout(total=None, connect=pool, sock_connect=connect, sock_read=read)


def _error_for(exc: BaseException) -> type[httpx.TransportError] | None:
    """The httpx exception standing for an aiohttp one (or a timeout); None: not ours."""
    # Raised only while getting a connection, before anything is written. A pool wait
    # that times out is one too: aiohttp does not tell it from a slow connect.
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ServerFingerprintMismatch):
        return httpx.ConnectError
    # Anything else may come after the first byte left.
    if isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        return httpx.ReadTimeout
    if isinstance(
        exc,
        aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientResponseError,
    ):
        return httpx.RemoteProtocolError
    if isinstance(exc, aiohttp.ClientConnectionResetError):
        return httpx.WriteError
    if isinstance(exc, aiohttp.ClientOSError) and "Can not write request body" in str(exc):
        return httpx.WriteError
    if isinstance(exc, aiohttp.ClientConnectionError):
        return httpx.ReadError
    if isinstance(exc, aiohttp.NonHttpUrlClientError | aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol
    if isinstance(exc, aiohttp.ClientError):
        return httpx.RemoteProtocolError
    return None


class _ResponseStream(httpx.AsyncByteStream):
    """The body of an aiohttp response, chunk by chunk as it arrives."""

    __slots__ = ("_request", "_response")

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except Exception as exc:
            error = _error_for(exc)
            if error is None:
                raise
            raise error(str(exc) or type(exc).__name__, request=self._request) from exc

    async def aclose(self) -> None:
        # A body read to the end gives the connection back to the pool; one left unread
        # closes it (aiohttp decides).
        self._response.release()


def _reply(response: aiohttp.ClientResponse, stream: httpx.AsyncByteStream) -> httpx.Response:
    return httpx.Response(
        response.status,
        headers=response.raw_headers,
        stream=stream,
        extensions={
            "http_version": b"HTTP/1.1",
            "reason_phrase": (response.reason or "").encode("ascii", "replace"),
        },
    )


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx's transport API over one aiohttp session (asyncio only).

    `limits` caps the connections (``max_connections``) and how long an idle one is
    kept (``keepalive_expiry``); aiohttp has no separate cap on idle connections.
    """

    reports_sending = True
    """Awaits a request's `ON_SENT` callback right before writing it (see module doc)."""

    def __init__(self, *, limits: httpx.Limits) -> None:
        self._limits = limits
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def backend(self) -> str:
        return "aiohttp"

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the transport is closed")
        if not on_asyncio():
            raise RuntimeError("the aiohttp transport needs asyncio")
        limits = self._limits
        connector = _Connector(
            limit=limits.max_connections or 0,
            keepalive_timeout=limits.keepalive_expiry,
            # The same certificate checks as httpx's own transport (certifi, or
            # SSL_CERT_FILE / SSL_CERT_DIR).
            ssl=httpx.create_ssl_context(),
        )
        session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            timeout=_client_timeout(None, None, None),
        )
        # Off: aiohttp resends an idempotent request (a download PUT is one, and a
        # purchase) once when a kept-alive connection drops under it.
        session._retry_connection = False
        self._session = session
        return session

    async def _send(self, request: httpx.Request) -> aiohttp.ClientResponse:
        session = self._session or self._open()
        timeout = request.extensions.get("timeout") or {}
        data: Any
        headers = request.headers
        try:
            data = request.content or None
        except httpx.RequestNotRead:
            # A streamed body: aiohttp sends it chunked itself.
            data = request.stream
            headers = headers.copy()
            headers.pop("transfer-encoding", None)
        encoding = headers.encoding
        on_sent = request.extensions.get(ON_SENT)
        token = _on_sent.set(on_sent) if on_sent is not None else None
        try:
            response = await session.request(
                request.method,
                # httpx's URL is percent-encoded and normalised already: yarl need not
                # parse and requote it.
                yarl.URL(str(request.url), encoded=True),
                # multi_items() without its per-header lookups of the encoding.
                headers=[(k.decode(encoding), v.decode(encoding)) for k, v in headers.raw],
                data=data,
                allow_redirects=False,
                timeout=_client_timeout(
                    timeout.get("connect"), timeout.get("read"), timeout.get("pool")
                ),
            )
        except Exception as exc:
            error = _error_for(exc)
            if error is None:
                raise  # SendAborted, say: ours, not the connection's
            raise error(str(exc) or type(exc).__name__, request=request) from exc
        finally:
            if token is not None:
                _on_sent.reset(token)
        return response

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._send(request)
        return _reply(response, _ResponseStream(response, request))

    async def handle_read(self, request: httpx.Request) -> httpx.Response:
        """`handle_async_request` with the body read, for a caller that reads it all.

        One aiohttp read, where httpx's ``aread`` goes through three async iterators
        stacked over the stream. The reply is left read and closed, its body decoded
        (``Content-Encoding``), as ``aread`` leaves it.
        """
        response = await self._send(request)
        try:
            body = await response.read()  # the connection goes back to the pool
        except Exception as exc:
            error = _error_for(exc)
            if error is None:
                raise
            raise error(str(exc) or type(exc).__name__, request=request) from exc
        reply = _reply(response, httpx.ByteStream(body))
        reply.read()
        return reply

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
