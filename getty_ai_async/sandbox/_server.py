"""Serving a Sandbox on a loopback socket with uvicorn (in the ``cli`` and ``server`` extras)."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from ._app import Sandbox
from ._faults import DroppedConnection

if TYPE_CHECKING:
    import uvicorn

__all__ = ["MISSING_UVICORN", "ServedSandbox", "run_in_thread", "serve"]

_GRACEFUL_SHUTDOWN_SECONDS = 2
MISSING_UVICORN = (
    "serving the sandbox needs uvicorn, which comes with the 'cli' extra: "
    "pip install 'getty-ai-async[cli]'"
)


@dataclass(frozen=True)
class ServedSandbox:
    """Where a served sandbox listens."""

    base_url: str
    """API base URL, e.g. ``http://127.0.0.1:8000``."""
    token_url: str
    """``<base_url>/oauth2/token``."""
    cdn_base_url: str
    """Same server under another host name (``http://localhost:8000``), so clients must
    treat image URLs as a foreign host."""


def _bind(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY only on sockets whose
    # proto says TCP, and without it every reply written in two parts (head, then body)
    # waits out the client's delayed ACK: about 40 ms per request on one connection.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _other_name(host: str) -> str:
    """Another spelling of the bound address, so that the CDN is a different host name.

    Clients must treat the CDN as foreign (no credentials) yet reach the same socket.
    """
    if host == "localhost":
        return "127.0.0.1"
    address = ipaddress.ip_address(host)
    if address.version == 6:
        return "[" + address.exploded + "]"  # "::1" and "0000:...:0001" differ as names
    if address == ipaddress.ip_address("127.0.0.1"):
        return "localhost"
    # Any other IPv4 literal: its integer form names the same address.
    return str(int(address))


def _urls(host: str, port: int) -> ServedSandbox:
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    cdn_host = _other_name(host)
    base_url = f"http://{netloc}"
    return ServedSandbox(base_url, f"{base_url}/oauth2/token", f"http://{cdn_host}:{port}")


@contextlib.contextmanager
def _published(sandbox: Sandbox, served: ServedSandbox) -> Iterator[None]:
    # Upload URLs and image URLs the sandbox hands out must point at the socket.
    config = sandbox.config
    saved = config.api_base_url, config.token_url, config.cdn_base_url
    config.api_base_url, config.token_url = served.base_url, served.token_url
    config.cdn_base_url = served.cdn_base_url
    try:
        yield
    finally:
        config.api_base_url, config.token_url, config.cdn_base_url = saved


def _not_a_drop(record: logging.LogRecord) -> bool:
    # Injected drops are deliberate; uvicorn would log each one as an app crash.
    exc = record.exc_info[1] if record.exc_info else None
    return not isinstance(exc, DroppedConnection)


def _uvicorn_server(sandbox: Sandbox) -> uvicorn.Server:
    try:
        import uvicorn
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] != "uvicorn":
            raise
        raise ModuleNotFoundError(MISSING_UVICORN, name="uvicorn") from None

    config = uvicorn.Config(
        sandbox,
        lifespan="off",
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_SECONDS,
    )
    logging.getLogger("uvicorn.error").addFilter(_not_a_drop)
    return uvicorn.Server(config)


async def serve(
    sandbox: Sandbox,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``sandbox`` with uvicorn until cancelled (asyncio only).

    ``port=0`` picks a free port. Reports the API base URL through
    ``task_status.started`` once listening, so ``url = await tg.start(serve, sb, ...)``
    works. While serving, the sandbox's URLs point at the socket (see ServedSandbox).
    """
    server = _uvicorn_server(sandbox)
    sock = _bind(host, port)
    served = _urls(host, sock.getsockname()[1])
    finished = False

    async def run() -> None:
        nonlocal finished
        # Shielded so that cancelling serve() shuts uvicorn down gracefully instead
        # of abandoning its listeners mid-flight.
        with anyio.CancelScope(shield=True):
            try:
                await server.serve(sockets=[sock])
            finally:
                finished = True

    with sock, _published(sandbox, served):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            try:
                while not server.started:
                    if finished:
                        raise RuntimeError("uvicorn stopped before it started listening")
                    await anyio.sleep(0.005)
                task_status.started(served.base_url)
                await anyio.sleep_forever()
            finally:
                server.should_exit = True


@contextlib.contextmanager
def run_in_thread(
    sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0
) -> Iterator[ServedSandbox]:
    """Serve ``sandbox`` with uvicorn on a background thread for the ``with`` block."""
    server = _uvicorn_server(sandbox)
    sock = _bind(host, port)
    served = _urls(host, sock.getsockname()[1])
    with sock, _published(sandbox, served):
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="getty-ai-sandbox", daemon=True
        )
        thread.start()
        try:
            while not server.started:
                if not thread.is_alive():
                    raise RuntimeError("uvicorn stopped before it started listening")
                time.sleep(0.005)
            yield served
        finally:
            server.should_exit = True
            thread.join()
