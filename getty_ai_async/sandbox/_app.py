"""The Sandbox: a plain ASGI app wrapping the route table with faults and stats."""

from __future__ import annotations

import dataclasses
from http import HTTPStatus
from typing import Any, ClassVar
from urllib.parse import parse_qs

import httpx

from ._auth import authenticate
from ._config import (
    IN_PROCESS_BASE_URL,
    IN_PROCESS_CDN_BASE_URL,
    IN_PROCESS_TOKEN_URL,
    FaultConfig,
    SandboxConfig,
)
from ._core import Core
from ._faults import DroppedConnection, plan_faults
from ._files import MAX_UPLOAD_BYTES
from ._http import (
    ApiError,
    Receive,
    Request,
    Response,
    Scope,
    Send,
    check_json_content_type,
    json_response,
)
from ._routes import Route, match_route
from ._stats import DROPPED, SandboxStats

__all__ = ["Sandbox"]


class _Disconnected(Exception):
    """The client went away before its request body arrived."""


async def _read_body(receive: Receive) -> bytes:
    # Reading stops one byte past the upload limit: enough to know the body is too big.
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_UPLOAD_BYTES or not message.get("more_body", False):
            return b"".join(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _send(send: Send, response: Response) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": response.raw_headers(),
        }
    )
    await send({"type": "http.response.body", "body": response.body})


async def _drop(send: Send, response: Response | None) -> None:
    # Start a reply that promises a body, then fail: neither httpx.ASGITransport nor
    # uvicorn can turn that into a complete response, so the client gets a
    # RemoteProtocolError, as with a real connection drop.
    status = response.status if response is not None else 500
    length = max(1, len(response.body)) if response is not None else 1
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(length).encode())],
        }
    )
    raise DroppedConnection


class Sandbox:
    """A stateful in-memory simulator of the Getty Images AI Generator API.

    The instance is itself the ASGI app. Use it in process through ``transport()``, or
    on loopback with ``serve`` / ``run_in_thread``. ``config`` and ``faults`` are live:
    changing a field changes how the next request is answered.

    ``Sandbox(SandboxConfig(...))``, ``Sandbox(pending_seconds=0)`` (fields of
    SandboxConfig as keywords) and ``Sandbox(config, faults=FaultConfig(...))`` all work.
    """

    IN_PROCESS_BASE_URL: ClassVar[str] = IN_PROCESS_BASE_URL
    IN_PROCESS_TOKEN_URL: ClassVar[str] = IN_PROCESS_TOKEN_URL
    IN_PROCESS_CDN_BASE_URL: ClassVar[str] = IN_PROCESS_CDN_BASE_URL

    def __init__(
        self,
        config: SandboxConfig | None = None,
        /,
        *,
        faults: FaultConfig | None = None,
        **fields: Any,
    ) -> None:
        if config is None:
            config = SandboxConfig(**fields)
        elif fields:
            config = dataclasses.replace(config, **fields)
        self._core = Core(config, faults if faults is not None else FaultConfig())

    def __repr__(self) -> str:
        return f"Sandbox(api_base_url={self.api_base_url!r}, seed={self.config.seed!r})"

    @property
    def config(self) -> SandboxConfig:
        """The live rules (mutable)."""
        return self._core.config

    @property
    def faults(self) -> FaultConfig:
        """The live fault settings (mutable)."""
        return self._core.faults

    @property
    def stats(self) -> SandboxStats:
        """Live counters."""
        return self._core.stats

    @property
    def api_base_url(self) -> str:
        """Base URL for API calls."""
        return self._core.config.api_base_url

    @property
    def token_url(self) -> str:
        """URL of the OAuth2 token endpoint."""
        return self._core.config.token_url

    @property
    def cdn_base_url(self) -> str:
        """Base of the image URLs handed out (a different host from the API's)."""
        return self._core.config.cdn_base_url

    def advance(self, seconds: float) -> None:
        """Move the virtual clock forward (expire tokens, finish generations, age ids)."""
        self._core.clock.advance(seconds)

    def transport(self) -> httpx.AsyncBaseTransport:
        """An httpx transport that calls this app in process (no sockets)."""
        return httpx.ASGITransport(app=self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "http":
            try:
                await self._http(scope, receive, send)
            except _Disconnected:
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        core = self._core
        raw_path = scope.get("raw_path") or scope["path"].encode()
        route, params = match_route(scope["method"], raw_path.decode("latin-1"))
        name = route.name
        if route.creates:
            core.stats.submissions_attempted += 1
        request = Request(
            params=params,
            query=parse_qs(
                scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True
            ),
            headers={k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
            body=await _read_body(receive),
        )
        plan = plan_faults(core.faults, core.faults_rng, name)
        if plan.latency > 0:
            core.stats.record_fault("latency")
            await core.clock.sleep(plan.latency)
        if plan.drop and not plan.drop_after_processing:
            core.stats.record_fault("drop")
            core.stats.record_request(name, DROPPED)
            await _drop(send, None)
        if plan.error_status is not None:
            core.stats.record_fault("error")
            phrase = HTTPStatus(plan.error_status).phrase
            response = json_response(plan.error_status, {"message": phrase})
        else:
            response = self._handle(route, request)
        if plan.slow > 0:
            core.stats.record_fault("slow")
            await core.clock.sleep(plan.slow)
        if plan.drop:
            core.stats.record_fault("drop")
            core.stats.record_request(name, DROPPED)
            await _drop(send, response)
        core.stats.record_request(name, response.status)
        await _send(send, response)

    def _handle(self, route: Route, request: Request) -> Response:
        try:
            if route.api:
                authenticate(self._core, request)
            if route.json_body:
                check_json_content_type(request)
            return route.handler(self._core, request)
        except ApiError as exc:
            return exc.response()
