"""Knowing whether a request left: the seam every HTTP transport feeds.

A POST that creates a generation costs credit, so the engine must tell one that never
left the machine (safe to send again) from one whose bytes started going out (its fate
is unknown until a reply comes). The moment is reported through one callback,
`OnSent`, whichever transport runs:

- httpcore (httpx's default transport) announces it through its ``trace`` extension
  (``http11.send_request_headers.started``): waiting for a pooled connection is not
  sending;
- a transport that implements the seam itself (the aiohttp one) calls the callback
  found under `ON_SENT` in the request's extensions;
- any other transport (ASGI, mocks) is assumed to send as soon as it is handed the
  request.

The callback may raise `SendAborted` to stop the request before a byte leaves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

__all__ = ["ON_SENT", "OnSent", "SendAborted", "SendWatch", "reports_sending"]

OnSent = Callable[[], Awaitable[None]]

ON_SENT = "getty_ai_async.on_sent"
"""Request extension a transport calls (awaits) right before the request starts leaving."""

_HEADERS_STARTED = ("http11.send_request_headers.started", "http2.send_request_headers.started")


class SendAborted(Exception):
    """Raised by an `OnSent` callback: the request must not leave (nothing was sent)."""


def reports_sending(http: httpx.AsyncClient, url: httpx.URL) -> bool:
    """Whether the transport `http` uses for `url` reports the moment a request leaves."""
    find = getattr(http, "_transport_for_url", None)
    transport = find(url) if find is not None else None
    return isinstance(transport, httpx.AsyncHTTPTransport) or bool(
        getattr(transport, "reports_sending", False)
    )


class SendWatch:
    """Calls `on_sent` once when one request starts leaving; remembers whether it did."""

    __slots__ = ("_on_sent", "_trace", "sent")

    def __init__(self, on_sent: OnSent | None) -> None:
        self._on_sent = on_sent
        self._trace: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None
        self.sent = False

    def install(self, request: httpx.Request) -> None:
        """Ask the transport to report the moment `request` starts leaving."""
        self._trace = request.extensions.get("trace")
        request.extensions["trace"] = self._traced
        request.extensions[ON_SENT] = self.fire

    async def fire(self) -> None:
        """The request is leaving now (called by the transport, or at hand-off)."""
        if self.sent:
            return
        if self._on_sent is not None:
            await self._on_sent()
        self.sent = True

    async def _traced(self, event: str, info: dict[str, Any]) -> None:
        if event in _HEADERS_STARTED:
            await self.fire()
        if self._trace is not None:
            await self._trace(event, info)
