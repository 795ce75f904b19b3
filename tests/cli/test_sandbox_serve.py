"""`getty-ai sandbox serve`: a real server process, used by another getty-ai command."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import httpx
import pytest

from getty_ai_async.sandbox import Sandbox, run_in_thread

from ._helpers import PYTHON, Cli


def test_serve_prints_settings_serves_and_stops_on_ctrl_c(cli: Cli) -> None:
    server = subprocess.Popen(  # noqa: S603 - our own interpreter and CLI
        [
            PYTHON,
            "-m",
            "getty_ai_async._cli",
            "sandbox",
            "serve",
            "--port",
            "0",
            "--pending-seconds",
            "1",
            "--time-scale",
            "0.01",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        banner = [server.stdout.readline() for _ in range(5)]
        exports = banner[4].split()
        assert exports[0] == "export"
        env = dict(item.split("=", 1) for item in exports[1:])
        base_url = env["GETTY_BASE_URL"]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
        assert env["GETTY_TOKEN_URL"] == f"{base_url}/oauth2/token"
        assert banner[0].startswith(f"Getty AI sandbox listening on {base_url}")

        token = httpx.post(
            env["GETTY_TOKEN_URL"],
            data={"grant_type": "client_credentials", "client_id": "k", "client_secret": "s"},
        )
        assert token.status_code == 200

        result = cli("--poll-interval", "0.01", "generate", "a fox", "--json", env=env)
        assert result.exit_code == 0, result.output

        server.send_signal(signal.SIGINT)
        stdout, stderr = server.communicate(timeout=20)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()

    assert server.returncode == 0, stderr
    assert stdout.strip().endswith("1 generations, 0 downloads.")


def test_serve_refuses_other_hosts(cli: Cli) -> None:
    result = cli("sandbox", "serve", "--host", "0.0.0.0")  # noqa: S104 - refused, never bound

    assert result.exit_code == 2
    assert "loopback" in result.stderr


def test_serve_rejects_bad_settings(cli: Cli) -> None:
    for args in (["--time-scale", "0"], ["--fault-rate", "2"], ["--port", "70000"]):
        result = cli("sandbox", "serve", *args)
        assert result.exit_code == 2, args
        assert "listening" not in result.stdout


def test_serve_without_uvicorn_names_the_extra(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    # As after an install without the extra that brings uvicorn: one line saying what to add.
    monkeypatch.setitem(sys.modules, "uvicorn", None)

    result = cli("sandbox", "serve", "--port", "0")

    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("getty-ai: error: ")
    assert "uvicorn" in lines[0]
    assert "pip install 'getty-ai-async[cli]'" in lines[0]
    assert "unexpected" not in lines[0]


def test_serve_in_code_without_uvicorn_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)

    with (
        pytest.raises(ModuleNotFoundError, match=r"getty-ai-async\[cli\]"),
        run_in_thread(Sandbox()),
    ):
        pass  # pragma: no cover
