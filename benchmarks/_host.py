"""A sandbox in a process of its own, served by uvicorn on loopback, for the benchmarks.

    python benchmarks/_host.py --port 8765 --config '{"pending_seconds": 0.5, ...}'

`--config` holds `Sandbox` keyword arguments (a ``"faults"`` key holds `FaultConfig`
ones). It prints ``ready <base-url>`` once listening, then obeys lines on stdin:
``restart`` stops serving for a moment and serves the same simulator again (its state
kept); ``stats`` prints ``stats <json>`` (the simulator's counters and this process's
CPU seconds); ``cap N`` sets the account's pending cap to N and prints ``cap N``; end of
input stops it. `Host` drives one from another process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio

from getty_ai_async.sandbox import FaultConfig, Sandbox, serve


def _say(*words: str) -> None:
    print(*words, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--config", default="{}")
    args = parser.parse_args()
    config = json.loads(args.config)
    faults = config.pop("faults", {})
    for name in ("pending_seconds", "latency"):
        for where in (config, faults):
            if isinstance(where.get(name), list):
                where[name] = tuple(where[name])
    sandbox = Sandbox(faults=FaultConfig(**faults), **config)

    async def run() -> None:
        while True:
            async with anyio.create_task_group() as group:
                url = await group.start(serve, sandbox, "127.0.0.1", args.port)
                _say("ready", url)
                command = ""
                while command not in ("restart", "quit"):
                    line = await anyio.to_thread.run_sync(sys.stdin.readline)
                    command = line.strip() if line else "quit"
                    if command == "stats":
                        stats = sandbox.stats.snapshot()
                        stats["cpu_seconds"] = time.process_time()
                        _say("stats", json.dumps(stats))
                    elif command.startswith("cap "):
                        sandbox.config.pending_limit = int(command.split()[1])
                        _say("cap", str(sandbox.config.pending_limit))
                group.cancel_scope.cancel()
            if command == "quit":
                return
            await anyio.sleep(0.3)  # down for a moment: connections refused

    asyncio.run(run())


class Host:
    """A `_host.py` process: ``with Host(port, config) as host: host.base_url``."""

    def __init__(self, port: int, config: dict[str, Any]) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__)),
                "--port",
                str(port),
                "--config",
                json.dumps(config),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.base_url = self._expect("ready")

    def _expect(self, word: str) -> str:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            head, _, rest = line.partition(" ")
            if head == word:
                return rest.strip()
        raise RuntimeError(f"sandbox host ended before saying {word!r}")

    def _send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def restart(self) -> None:
        self._send("restart")
        self._expect("ready")

    def set_cap(self, cap: int) -> None:
        """Change the account's pending cap; returns once the sandbox has it."""
        self._send(f"cap {cap}")
        self._expect("cap")

    def stats(self) -> dict[str, Any]:
        self._send("stats")
        result: dict[str, Any] = json.loads(self._expect("stats"))
        return result

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()


if __name__ == "__main__":
    main()
