"""The soak of benchmarks/soak.py, scaled down: faults, a SIGKILL, a service restart."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).parents[2] / "benchmarks" / "soak.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_soak_keeps_the_promise_through_a_crash_and_a_restart(tmp_path: Path) -> None:
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [
            sys.executable,
            str(SOAK),
            "--prompts",
            "300",
            "--quick",
            "--port",
            str(free_port()),
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = json.loads(done.stdout)
    assert done.returncode == 0, json.dumps(report["checks"]) + done.stderr[-2000:]
    assert all(report["checks"].values())
    assert report["killed_after_outcomes"] >= 150
    assert report["service"]["submissions"] == 300
    assert report["service"]["peak_pending"] <= 25
