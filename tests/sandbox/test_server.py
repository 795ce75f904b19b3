"""The sandbox on a real loopback socket, under uvicorn."""

from __future__ import annotations

import asyncio
import socket

import anyio
import httpx
import pytest

from getty_ai_async.sandbox import Sandbox, run_in_thread, serve
from getty_ai_async.sandbox._server import _bind


def _token(client: httpx.Client, token_url: str) -> str:
    reply = client.post(
        token_url, data={"grant_type": "client_credentials", "client_id": "k", "client_secret": "s"}
    )
    reply.raise_for_status()
    return f"Bearer {reply.json()['access_token']}"


def test_run_in_thread_serves_the_api_and_a_foreign_cdn_host() -> None:
    sandbox = Sandbox(pending_seconds=0, download_pending_seconds=0)
    with run_in_thread(sandbox) as served:
        port = served.base_url.rsplit(":", 1)[1]
        assert served.base_url == f"http://127.0.0.1:{port}"
        assert served.token_url == f"http://127.0.0.1:{port}/oauth2/token"
        assert served.cdn_base_url == f"http://localhost:{port}"
        assert sandbox.api_base_url == served.base_url

        with httpx.Client(base_url=served.base_url, headers={"Api-Key": "k"}) as client:
            client.headers["Authorization"] = _token(client, served.token_url)
            mask = client.put(
                "/v3/search/by-image/uploads/m.png",
                content=b"\x89PNG\r\n\x1a\n mask",
                headers={"Content-Type": "image/png"},
            )
            assert mask.status_code == 200
            generated = client.post("/v3/ai/image-generations", json={"prompt": "p"})
            assert generated.status_code == 200
            generation_id = generated.json()["generation_request_id"]
            refined = client.post(
                "/v3/ai/image-generations/refine",
                json={
                    "reference_generation": {"generation_request_id": generation_id, "index": 0},
                    "mask_url": f"{served.base_url}/v3/search/by-image/uploads/m.png",
                },
            )
            assert refined.status_code == 200
            download = client.put(
                f"/v3/ai/image-generations/{generation_id}/images/0/download",
                json={"size_name": "1k"},
            )
            url = download.json()["url"]
            assert url.startswith(f"{served.cdn_base_url}/cdn/")

        with httpx.Client() as cdn:
            image = cdn.get(url)
        assert image.status_code == 200
        assert image.content.startswith(b"\x89PNG")
        assert sandbox.stats.cdn_requests_with_credentials == 0

    # Stopped, and the in-process URLs are back.
    assert sandbox.api_base_url == Sandbox.IN_PROCESS_BASE_URL
    assert sandbox.cdn_base_url == Sandbox.IN_PROCESS_CDN_BASE_URL
    with pytest.raises(httpx.ConnectError), httpx.Client() as client:
        client.get(f"{served.base_url}/v3/ai/generation-history")


def test_drops_over_a_socket_are_protocol_errors() -> None:
    sandbox = Sandbox(pending_seconds=0, require_token=False)
    with (
        run_in_thread(sandbox) as served,
        httpx.Client(base_url=served.base_url, headers={"Api-Key": "k"}) as client,
    ):
        sandbox.faults.drop_rate = 1.0
        with pytest.raises(httpx.RemoteProtocolError):
            client.post("/v3/ai/image-generations", json={"prompt": "p"})
        sandbox.faults.drop_after_processing = True
        with pytest.raises(httpx.RemoteProtocolError):
            client.post("/v3/ai/image-generations", json={"prompt": "p"})
        sandbox.faults.drop_rate = 0.0
        history = client.get("/v3/ai/generation-history").json()
    assert history["result_count"] == 1
    assert sandbox.stats.faults_injected["drop"] == 2


async def test_serve_reports_its_url_and_stops_on_cancel() -> None:
    sandbox = Sandbox(pending_seconds=5.0, time_scale=0.01)
    async with anyio.create_task_group() as tg:
        base_url = await tg.start(serve, sandbox, "127.0.0.1", 0)
        assert base_url == sandbox.api_base_url
        assert base_url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(base_url=base_url, headers={"Api-Key": "k"}) as client:
            token = await client.post(
                sandbox.token_url,
                data={"grant_type": "client_credentials", "client_id": "k", "client_secret": "s"},
            )
            client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
            posted = await client.post("/v3/ai/image-generations", json={"prompt": "p"})
            assert posted.status_code == 202
            path = f"/v3/ai/image-generations/{posted.json()['generation_request_id']}"
            await anyio.sleep(0.1)  # more than 5 simulated seconds at time_scale 0.01
            assert (await client.get(path)).status_code == 200

            sandbox.faults.drop_rate = 1.0
            sandbox.faults.drop_after_processing = True
            with pytest.raises(httpx.RemoteProtocolError):
                await client.post("/v3/ai/image-generations", json={"prompt": "p"})
            assert sandbox.stats.submissions == 2
        tg.cancel_scope.cancel()
    assert sandbox.api_base_url == Sandbox.IN_PROCESS_BASE_URL


async def test_accepted_connections_get_tcp_nodelay() -> None:
    # Without it, a reply written in two parts waits ~40 ms for the client's delayed ACK.
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    sock = _bind("127.0.0.1", 0)
    server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
    async with server:
        port = sock.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(accepted, 5) == 1
        writer.close()
