"""Fixtures for every tier: no shared limiter from the environment, and a real redis-server.

The Redis integration tests run a ``redis-server`` of their own on a free loopback port
(no persistence: ``--save '' --appendonly no``). Without the binary they are skipped,
saying how to install it, unless ``GETTY_TEST_REDIS=required`` (set by ``.ci/run``),
which makes them fail instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS_REQUIRED = os.environ.get("GETTY_TEST_REDIS", "").lower() == "required"
INSTALL_HINT = (
    "redis-server not found; install it to run the Redis integration tests "
    "(Debian/Ubuntu: apt-get install -y redis-server)"
)


@pytest.fixture(autouse=True)
def _no_shared_limiter(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's GETTY_REDIS_URL must not turn every test's client into a Redis one."""
    monkeypatch.delenv("GETTY_REDIS_URL", raising=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A ``redis-server`` on loopback that a test can stop, start and restart (empty)."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - the redis-server binary found on PATH
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not answer within 10 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self, down_for: float = 0.0) -> None:
        """Stop, wait `down_for` seconds, start again on the same port, with no data."""
        self.stop()
        time.sleep(down_for)
        self.start()


@pytest.fixture(scope="session")
def redis_binary() -> str:
    binary = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if binary is None:
        if REDIS_REQUIRED:
            pytest.fail(INSTALL_HINT + " (GETTY_TEST_REDIS=required)")
        pytest.skip(INSTALL_HINT)
    return binary


@pytest.fixture
def redis_server(redis_binary: str, tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server for one test, stopped at its end."""
    server = RedisServer(redis_binary, tmp_path)
    try:
        server.start()  # one that started and never answered is stopped too
        yield server
    finally:
        server.stop()
