"""The aiohttp transport keeps every transport rule, over real loopback sockets.

A scripted HTTP/1.1 server (asyncio streams, in the test's loop) does what each test
needs after reading a request: answer, drop the connection, or never answer. Requests
go through the client's `Transport.send`, where the sent seam, error mapping and
retries meet, with ``http_backend="aiohttp"``. The loopback tests of the whole client
(test_client_loopback.py) run over both transports too.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import anyio
import httpx
import pytest
import respx

from getty_ai_async import AsyncGettyAI, RetryPolicy, errors
from getty_ai_async._aiohttp import AiohttpTransport, _error_for
from getty_ai_async._backends import AutoTransport
from getty_ai_async._routes import ROUTES
from getty_ai_async._sending import SendAborted
from getty_ai_async.sandbox import Sandbox, run_in_thread

NO_RETRY = RetryPolicy(max_retries=0)
BODY = b'{"generation_request_id": "gen-1"}'


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GETTY_HTTP_BACKEND", raising=False)


@dataclass
class Server:
    """What a scripted server saw: each request read, and how many connections."""

    base_url: str = ""
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0


@dataclass
class Conn:
    """One accepted connection, as a behaviour sees it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    server: Server

    async def next_request(self) -> bytes | None:
        """One whole request (head and body), recorded; None once the client hung up."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = 0
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        request = head + await self.reader.readexactly(length)
        self.server.requests.append(request)
        return request

    async def answer(self, body: bytes = BODY) -> None:
        self.writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        await self.writer.drain()


Behaviour = Callable[[Conn], Awaitable[None]]


@contextlib.asynccontextmanager
async def scripted(behaviour: Behaviour) -> AsyncIterator[Server]:
    """Serve `behaviour` on a free loopback port, one call per connection."""
    seen = Server()
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)  # type: ignore[arg-type]
        seen.connections += 1
        try:
            await behaviour(Conn(reader, writer, seen))
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    seen.base_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield seen
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def keep_answering(conn: Conn) -> None:
    while await conn.next_request() is not None:
        await conn.answer()


async def drop_after_reading(conn: Conn) -> None:
    await conn.next_request()


async def never_answer(conn: Conn) -> None:
    await conn.next_request()
    await anyio.sleep_forever()


def aiohttp_client(base_url: str, **options: object) -> AsyncGettyAI:
    # An Api-Key alone: no token endpoint in the way.
    return AsyncGettyAI(
        api_key="key-1",
        base_url=base_url,
        http_backend="aiohttp",
        retry_policy=NO_RETRY,
        **options,  # type: ignore[arg-type]
    )


@dataclass
class SentLog:
    calls: int = 0

    async def __call__(self) -> None:
        self.calls += 1


async def send_post(client: AsyncGettyAI, on_sent: SentLog | None) -> httpx.Response:
    transport = client._transport
    request = client._http.build_request(
        "POST", transport.url("/v3/ai/image-generations"), json={"prompt": "a fox"}
    )
    return await transport.send(request, on_sent=on_sent)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# ------------------------------------------------------------------ the sent seam


async def test_a_request_answered_is_sent_once_and_reported_before_it_leaves() -> None:
    async with scripted(keep_answering) as server, aiohttp_client(server.base_url) as client:
        on_sent = SentLog()
        response = await send_post(client, on_sent)
        again = await send_post(client, SentLog())

    assert response.json() == {"generation_request_id": "gen-1"}
    assert again.status_code == 200
    assert on_sent.calls == 1
    assert server.connections == 1, "the connection was kept alive and reused"
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    assert json.loads(body) == {"prompt": "a fox"}
    lines = head.decode().lower().split("\r\n")
    assert "api-key: key-1" in lines
    assert "content-type: application/json" in lines
    assert sum(line.startswith("host:") for line in lines) == 1
    assert any(line.startswith("user-agent: getty-ai-async/") for line in lines)


@pytest.mark.parametrize("traced", [True, False], ids=["with-on-sent", "without"])
async def test_a_refused_connection_was_not_sent(traced: bool) -> None:
    on_sent = SentLog() if traced else None
    async with aiohttp_client(f"http://127.0.0.1:{free_port()}") as client:
        with pytest.raises(errors.APIConnectionError) as caught:
            await send_post(client, on_sent)

    assert not caught.value.may_have_been_sent
    assert "ConnectError" in str(caught.value)
    assert on_sent is None or on_sent.calls == 0


@pytest.mark.parametrize("traced", [True, False], ids=["with-on-sent", "without"])
async def test_a_connection_dropped_after_the_request_was_read_may_have_been_sent(
    traced: bool,
) -> None:
    on_sent = SentLog() if traced else None
    async with scripted(drop_after_reading) as server, aiohttp_client(server.base_url) as client:
        with pytest.raises(errors.APIConnectionError) as caught:
            await send_post(client, on_sent)

    assert caught.value.may_have_been_sent
    assert not isinstance(caught.value, errors.APITimeoutError)
    assert "RemoteProtocolError" in str(caught.value)
    assert len(server.requests) == 1
    assert on_sent is None or on_sent.calls == 1


async def test_a_dropped_download_put_is_never_resent_by_aiohttp() -> None:
    # aiohttp resends an idempotent request once when a connection drops under it; a
    # download PUT is a purchase, so that resend is off.
    async with scripted(drop_after_reading) as server, aiohttp_client(server.base_url) as client:
        with pytest.raises(errors.APIConnectionError) as caught:
            await client._transport.request(
                ROUTES["download_create"],
                path_params={"generation_request_id": "gen-1", "index": 0},
                json={"size_name": "1k"},
            )

    assert caught.value.may_have_been_sent
    assert len(server.requests) == 1
    assert server.connections == 1


@pytest.mark.parametrize("traced", [True, False], ids=["with-on-sent", "without"])
async def test_a_read_timeout_may_have_been_sent(traced: bool) -> None:
    on_sent = SentLog() if traced else None
    async with (
        scripted(never_answer) as server,
        aiohttp_client(server.base_url, timeout=httpx.Timeout(5.0, read=0.1)) as client,
    ):
        with anyio.fail_after(5), pytest.raises(errors.APITimeoutError) as caught:
            await send_post(client, on_sent)

    assert caught.value.may_have_been_sent
    assert "ReadTimeout" in str(caught.value)
    assert on_sent is None or on_sent.calls == 1


async def test_waiting_for_a_pooled_connection_is_not_sending() -> None:
    release = asyncio.Event()

    async def hold_then_answer(conn: Conn) -> None:
        while await conn.next_request() is not None:
            await release.wait()
            await conn.answer()

    limits = httpx.Limits(max_connections=1)
    async with (
        scripted(hold_then_answer) as server,
        aiohttp_client(server.base_url, limits=limits, timeout=httpx.Timeout(5.0, pool=0.1)) as c,
        anyio.create_task_group() as group,
    ):
        group.start_soon(send_post, c, SentLog())  # holds the only connection
        while not server.requests:  # noqa: ASYNC110 - the server records it, no event
            await anyio.sleep(0.001)

        # Cancelled while queued for the connection: never sent.
        cancelled = SentLog()
        with anyio.move_on_after(0.05) as scope:
            await send_post(c, cancelled)
        assert scope.cancelled_caught

        transport = c._http._transport
        assert isinstance(transport, AiohttpTransport)
        assert transport._session is not None
        assert transport._session.connector is not None
        assert transport._session.connector.limit == 1, "limits reach aiohttp's pool"

        # Timed out while queued: an APITimeoutError that was not sent.
        timed_out = SentLog()
        with pytest.raises(errors.APITimeoutError) as caught:
            await send_post(c, timed_out)
        release.set()

    assert (cancelled.calls, timed_out.calls) == (0, 0)
    assert not caught.value.may_have_been_sent
    assert len(server.requests) == 1


async def test_send_aborted_keeps_the_request_and_the_connection() -> None:
    async def abort() -> None:
        raise SendAborted

    async with scripted(keep_answering) as server, aiohttp_client(server.base_url) as client:
        await send_post(client, None)  # a connection open and pooled
        transport = client._transport
        request = client._http.build_request("POST", transport.url("/x"), json={})
        with pytest.raises(SendAborted):
            await transport.send(request, on_sent=abort)
        after = await send_post(client, None)

    assert after.status_code == 200
    assert len(server.requests) == 2, "the aborted request never reached the server"
    assert server.connections == 1, "the connection went back to the pool unused"


# ------------------------------------------------------------------ streaming


async def test_a_response_body_streams_as_it_arrives() -> None:
    first_chunk_seen = asyncio.Event()

    async def in_two_parts(conn: Conn) -> None:
        await conn.next_request()
        conn.writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nfirst")
        await conn.writer.drain()
        await first_chunk_seen.wait()  # a transport that buffers the body never gets here
        conn.writer.write(b"-last")
        await conn.writer.drain()

    async with scripted(in_two_parts) as server, aiohttp_client(server.base_url) as client:
        chunks = []
        with anyio.fail_after(5):
            async with client._http.stream("GET", server.base_url + "/image.png") as response:
                async for chunk in response.aiter_raw():
                    chunks.append(chunk)
                    first_chunk_seen.set()

    assert b"".join(chunks) == b"first-last"
    assert chunks[0] == b"first"


async def test_a_body_cut_short_is_a_protocol_error() -> None:
    async def cut(conn: Conn) -> None:
        await conn.next_request()
        conn.writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this")
        await conn.writer.drain()

    async with scripted(cut) as server, aiohttp_client(server.base_url) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            async with client._http.stream("GET", server.base_url + "/image.png") as response:
                await response.aread()


@pytest.mark.parametrize("backend", ["auto", "aiohttp"])
async def test_a_reply_the_client_reads_whole_is_read_in_one_step(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Transport.send` reads replies through `handle_read`: decoded, read, closed."""
    packed = gzip.compress(BODY)

    async def gzipped(conn: Conn) -> None:
        while await conn.next_request() is not None:
            conn.writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(packed), packed)
            )
            await conn.writer.drain()

    async def streamed(self: AiohttpTransport, request: httpx.Request) -> httpx.Response:
        raise AssertionError("read through the stream")

    monkeypatch.setattr(AiohttpTransport, "handle_async_request", streamed)
    async with (
        scripted(gzipped) as server,
        AsyncGettyAI(
            api_key="key-1", base_url=server.base_url, http_backend=backend, retry_policy=NO_RETRY
        ) as client,
    ):
        response = await send_post(client, SentLog())
        again = await send_post(client, None)

    assert (response.content, response.is_closed, again.content) == (BODY, True, BODY)
    assert response.headers["content-length"] == str(len(packed))
    assert server.connections == 1  # the connection went back to the pool


async def test_a_reply_read_whole_and_cut_short_may_have_been_sent() -> None:
    async def cut(conn: Conn) -> None:
        await conn.next_request()
        conn.writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this")
        await conn.writer.drain()

    async with scripted(cut) as server, aiohttp_client(server.base_url) as client:
        with pytest.raises(errors.APIConnectionError, match="RemoteProtocolError") as caught:
            await send_post(client, SentLog())
    assert caught.value.may_have_been_sent


async def test_a_streamed_request_body_is_sent_chunked() -> None:
    async def read_chunked(conn: Conn) -> None:
        head = await conn.reader.readuntil(b"\r\n\r\n")
        body = await conn.reader.readuntil(b"0\r\n\r\n")
        conn.server.requests.append(head + body)
        await conn.answer()

    async def parts() -> AsyncIterator[bytes]:
        yield b"part one,"
        yield b"part two"

    async with scripted(read_chunked) as server, aiohttp_client(server.base_url) as client:
        request = client._http.build_request("PUT", server.base_url + "/upload", content=parts())
        response = await client._transport.send(request)

    assert response.status_code == 200
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.decode().lower().split("\r\n")
    assert lines.count("transfer-encoding: chunked") == 1
    assert b"part one," in body
    assert b"part two" in body


# ------------------------------------------------------------------ error table


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (aiohttp.ConnectionTimeoutError("pool or connect"), httpx.ConnectTimeout),
        (aiohttp.SocketTimeoutError("read"), httpx.ReadTimeout),
        (TimeoutError(), httpx.ReadTimeout),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.ClientPayloadError("cut short"), httpx.RemoteProtocolError),
        (aiohttp.ClientConnectionResetError("Cannot write to closing transport"), httpx.WriteError),
        (aiohttp.ClientOSError(32, "Can not write request body for http://x"), httpx.WriteError),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), httpx.ReadError),
        (aiohttp.ClientConnectionError("Connector is closed."), httpx.ReadError),
        (aiohttp.NonHttpUrlClientError("ftp://x"), httpx.UnsupportedProtocol),
        (ValueError("not aiohttp's"), None),
    ],
)
def test_aiohttp_errors_map_to_httpx_errors(
    raised: BaseException, expected: type[httpx.TransportError] | None
) -> None:
    assert _error_for(raised) is expected


def test_only_errors_raised_before_writing_count_as_not_sent() -> None:
    key = aiohttp.client_reqrep.ConnectionKey("h", 1, False, True, None, None, None)
    refused = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))
    assert _error_for(refused) is httpx.ConnectError
    for late in (aiohttp.ServerDisconnectedError(), aiohttp.ClientOSError(104, "reset")):
        assert _error_for(late) not in (httpx.ConnectError, httpx.ConnectTimeout)


# ------------------------------------------------------------------ which transport runs


def backend_of(client: AsyncGettyAI) -> str:
    transport = client._http._transport
    assert isinstance(transport, AutoTransport | AiohttpTransport)
    return transport.backend()


async def test_auto_picks_aiohttp_under_asyncio() -> None:
    async with scripted(keep_answering) as server:
        client = AsyncGettyAI(api_key="key-1", base_url=server.base_url)
        async with client:
            assert backend_of(client) == "undecided"
            await send_post(client, SentLog())
            assert backend_of(client) == "aiohttp"
            assert client._transport.reports_sending


def test_auto_falls_back_to_httpcore_under_trio() -> None:
    sandbox = Sandbox(pending_seconds=0)

    async def main(base_url: str, token_url: str) -> tuple[str, int]:
        async with AsyncGettyAI(
            api_key="k", api_secret="s", base_url=base_url, token_url=token_url
        ) as client:
            generation = await client.generate("a fox under trio")
            return backend_of(client), len(generation.images)

    with run_in_thread(sandbox) as served:
        backend, images = anyio.run(main, served.base_url, served.token_url, backend="trio")

    assert (backend, images) == ("httpcore", 4)


def test_forcing_aiohttp_under_trio_fails_before_sending() -> None:
    async def main() -> None:
        async with aiohttp_client(f"http://127.0.0.1:{free_port()}") as client:
            await send_post(client, None)

    with pytest.raises(RuntimeError, match="needs asyncio"):
        anyio.run(main, backend="trio")


async def test_respx_mocking_keeps_httpx_transport() -> None:
    with respx.mock(assert_all_mocked=True) as router:
        route = router.post("https://api.test/v3/ai/image-generations").respond(200, json={})
        async with AsyncGettyAI(api_key="key-1", base_url="https://api.test") as client:
            response = await send_post(client, SentLog())
            backend = backend_of(client)

    assert response.status_code == 200
    assert route.call_count == 1
    assert backend == "httpcore"


async def test_respx_using_httpx_mocks_the_aiohttp_transport_too() -> None:
    with respx.mock(using="httpx", assert_all_mocked=True) as router:
        route = router.post("https://api.test/v3/ai/image-generations").respond(200, json={})
        async with AsyncGettyAI(
            api_key="key-1", base_url="https://api.test", http_backend="aiohttp"
        ) as client:
            response = await send_post(client, SentLog())

    assert response.status_code == 200
    assert route.call_count == 1


def test_http_backend_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    def transport_of(**options: object) -> httpx.AsyncBaseTransport:
        client = AsyncGettyAI(api_key="k", **options)  # type: ignore[arg-type]
        return client._http._transport

    assert isinstance(transport_of(), AutoTransport)
    assert isinstance(transport_of(http_backend="aiohttp"), AiohttpTransport)
    assert isinstance(transport_of(http_backend="httpx"), httpx.AsyncHTTPTransport)
    monkeypatch.setenv("GETTY_HTTP_BACKEND", "httpx")
    assert isinstance(transport_of(), httpx.AsyncHTTPTransport)
    assert isinstance(transport_of(http_backend="auto"), AutoTransport), "the argument wins"

    # A caller's transport or client always wins, over the environment too.
    mock = httpx.MockTransport(lambda request: httpx.Response(200))
    monkeypatch.setenv("GETTY_HTTP_BACKEND", "aiohttp")
    assert transport_of(transport=mock) is mock
    http = httpx.AsyncClient(transport=mock)
    assert AsyncGettyAI(api_key="k", http_client=http)._http is http
    for clash in ({"transport": mock}, {"http_client": http}):
        with pytest.raises(errors.ValidationError, match="http_backend"):
            AsyncGettyAI(api_key="k", http_backend="httpx", **clash)  # type: ignore[arg-type]

    monkeypatch.setenv("GETTY_HTTP_BACKEND", "curl")
    with pytest.raises(errors.ValidationError, match="GETTY_HTTP_BACKEND"):
        transport_of()


def test_auto_uses_httpx_when_aiohttp_is_missing_or_a_proxy_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from getty_ai_async import _backends

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    client = AsyncGettyAI(api_key="k")
    assert isinstance(client._http._transport, httpx.AsyncHTTPTransport)
    assert client._http._mounts, "httpx went through the proxy, as before"

    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.setenv("NO_PROXY", "localhost")  # not a proxy
    monkeypatch.setattr(_backends, "_aiohttp_installed", lambda: False)
    assert isinstance(AsyncGettyAI(api_key="k")._http._transport, httpx.AsyncHTTPTransport)
    with pytest.raises(errors.ValidationError, match=r"getty-ai-async\[aiohttp\]"):
        AsyncGettyAI(api_key="k", http_backend="aiohttp")


async def test_aclose_closes_the_session() -> None:
    async with scripted(keep_answering) as server:
        client = aiohttp_client(server.base_url)
        await send_post(client, None)
        transport = client._http._transport
        assert isinstance(transport, AiohttpTransport)
        session = transport._session
        assert session is not None
        await client.aclose()

    assert session.closed
    with pytest.raises(RuntimeError):
        await transport.handle_async_request(httpx.Request("GET", server.base_url))
