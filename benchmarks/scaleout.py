"""Scale-out: K worker processes on one account, sharing its cap through Redis.

    python benchmarks/scaleout.py                 # every scenario, about twelve minutes
    python benchmarks/scaleout.py --prompts 400   # a smoke run
    python benchmarks/scaleout.py --redis redis://127.0.0.1:6379/15   # an existing Redis

The sandbox runs in a process of its own, served by uvicorn on loopback, with an account
cap of 16 and a generation pending 0.8 s (40 simulated seconds at time scale 0.02),
polled every 0.05 s (``--pending`` and ``--poll`` change both).
Without ``--redis`` a throwaway ``redis-server`` is started (``--save '' --appendonly
no``). Each scenario runs the 2,000 prompts through K=4 ``getty-ai batch --shard i/4``
processes started together, against a fresh sandbox:

  single-16     one worker alone (--shard 0/1), --max-pending 16: the reference for what
                one process gets out of this machine at the moment (no target)
  shared-16     --redis, --max-pending 16: sandbox peak pending <= 16, zero 429s,
                makespan <= 1.15 x ideal (ceil(2000/16) x 0.8 s = 100 s)
  shared-auto   --redis, --max-pending auto (the cap is unknown): 429s <= 1% of submissions
  alone-16      no Redis, --max-pending 16 each: what the same workers do on their own
  alone-auto    no Redis, --max-pending auto each
  kill          shared-16, worker 0 SIGKILLed a third of the way through its share and
                restarted at once on its journal: zero duplicate submissions, every input
                one outcome

Redis round trips are counted by the server (``INFO commandstats``, reset before each
scenario) and by each worker (its limiter logs them when it closes). Exits 1 if a target
is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

CAP = 16
K = 4
TIME_SCALE = 0.02
PENDING = 0.8
POLL = 0.05
KEY = "scaleout-bench-key"


def say(*words: str) -> None:
    print(*words, flush=True)


# ------------------------------------------------------------------------------ host


def host(args: argparse.Namespace) -> None:
    """Serve one fresh sandbox; print its stats and the history's duplicates on "stats"."""
    import anyio

    from getty_ai_async import AsyncGettyAI
    from getty_ai_async.sandbox import Sandbox, serve

    sandbox = Sandbox(
        pending_seconds=args.pending / TIME_SCALE,
        time_scale=TIME_SCALE,
        pending_limit=CAP,
        images_per_generation=1,
        seed=args.seed,
    )

    async def main() -> None:
        async with anyio.create_task_group() as group:
            url = await group.start(serve, sandbox, "127.0.0.1", args.port)
            say("ready", url)
            await anyio.to_thread.run_sync(sys.stdin.readline)
            async with AsyncGettyAI(
                api_key=KEY,
                api_secret="s",  # noqa: S106 - the sandbox takes any
                base_url=url,
                max_pending=1,
            ) as client:
                prompts = Counter(
                    [item.prompt async for item in client.history.list(page_size=1000)]
                )
            stats = sandbox.stats.snapshot()
            stats["history"] = sum(prompts.values())
            stats["duplicates"] = sum(count - 1 for count in prompts.values() if count > 1)
            say("stats", json.dumps(stats))
            group.cancel_scope.cancel()

    asyncio.run(main())


# ---------------------------------------------------------------------- orchestrator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def expect(stream: IO[str], word: str) -> str:
    while True:
        line = stream.readline()
        if not line:
            raise RuntimeError(f"process ended before saying {word!r}")
        if line.startswith(word + " "):
            return line.split(" ", 1)[1].strip()


class Redis:
    """The Redis the workers share: ours (a throwaway redis-server) or the caller's."""

    def __init__(self, url: str | None) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        if url is None:
            binary = shutil.which("redis-server")
            if binary is None:
                sys.exit(
                    "redis-server not found (apt-get install -y redis-server), or pass --redis"
                )
            port = free_port()
            self.process = subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                stdout=subprocess.DEVNULL,
            )
            url = f"redis://127.0.0.1:{port}/0"
        self.url = url
        import redis

        self.client = redis.Redis.from_url(url)
        for _ in range(200):
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)

    def reset(self) -> None:
        for key in self.client.scan_iter("getty-ai:*"):
            self.client.delete(key)
        self.client.config_resetstat()

    def commands(self) -> dict[str, int]:
        stats = self.client.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}

    def close(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait()


def worker_command(
    base_url: str,
    prompts: Path,
    out: Path,
    shard: int,
    max_pending: str,
    redis_url: str | None,
    workers: int = K,
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "getty_ai_async._cli",
        "--base-url",
        base_url,
        "--max-pending",
        max_pending,
        "--poll-interval",
        str(POLL),
        "batch",
        str(prompts),
        "--out",
        str(out),
        "--shard",
        f"{shard}/{workers}",
    ]
    if redis_url is not None:
        command += ["--redis", redis_url]
    return command


class Worker:
    def __init__(self, command: list[str]) -> None:
        env = os.environ | {"GETTY_API_KEY": KEY, "GETTY_API_SECRET": "s", "GETTY_LOG": "info"}
        env.pop("GETTY_REDIS_URL", None)
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.lines = 0
        self.stderr = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._errors = threading.Thread(target=self._read_errors, daemon=True)
        self._errors.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for _ in self.process.stdout:
            self.lines += 1

    def _read_errors(self) -> None:
        assert self.process.stderr is not None
        self.stderr = self.process.stderr.read()

    def wait(self) -> int:
        code = self.process.wait(timeout=1800)
        self._reader.join()
        self._errors.join()
        return code

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.wait()

    def round_trips(self) -> Counter[str]:
        found: Counter[str] = Counter()
        for match in re.finditer(r"Redis round trips of worker \S+: (\{.*\})", self.stderr):
            found.update(json.loads(match.group(1)))
        return found


def run_scenario(
    name: str,
    prompts: Path,
    n: int,
    redis: Redis,
    *,
    shared: bool,
    max_pending: str,
    kill: bool = False,
    seed: int = 1,
    workers: int = K,
) -> dict[str, Any]:
    port = free_port()
    sandbox = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "host",
            "--port",
            str(port),
            "--seed",
            str(seed),
            "--pending",
            str(PENDING),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sandbox.stdout is not None
    assert sandbox.stdin is not None
    base_url = expect(sandbox.stdout, "ready")
    redis.reset()
    out = Path(tempfile.mkdtemp(prefix=f"scaleout-{name}-"))
    redis_url = redis.url if shared else None
    commands = [
        worker_command(base_url, prompts, out, shard, max_pending, redis_url, workers)
        for shard in range(workers)
    ]
    started = time.perf_counter()
    procs = [Worker(command) for command in commands]
    restarted: Worker | None = None
    codes: list[int] = []
    if kill:
        share = n / workers
        while procs[0].lines < share / 3:
            if procs[0].process.poll() is not None:
                break
            time.sleep(0.01)
        killed_after = procs[0].lines
        procs[0].kill()
        restarted = Worker(commands[0])
        codes.append(restarted.wait())
    codes += [worker.wait() for worker in (procs if not kill else procs[1:])]
    makespan = time.perf_counter() - started
    sandbox.stdin.write("stats\n")
    sandbox.stdin.flush()
    stats = json.loads(expect(sandbox.stdout, "stats"))
    sandbox.wait(timeout=60)
    results = [
        json.loads(line)
        for path in sorted(out.glob(f"results.*of{workers}.jsonl"))
        for line in path.read_text().splitlines()
    ]
    lines = Counter(record["line"] for record in results)
    trips: Counter[str] = Counter()
    for worker in [*procs, *([restarted] if restarted else [])]:
        trips.update(worker.round_trips())
    commands_seen = redis.commands() if shared else {}
    attempted = stats["submissions_attempted"]
    result: dict[str, Any] = {
        "name": name,
        "makespan": makespan,
        "ratio": makespan / (math.ceil(n / CAP) * PENDING),
        "exit_codes": codes,
        "submissions": stats["submissions"],
        "attempted": attempted,
        "429s": stats["rate_limited_pending"] + stats["rate_limited_qps"],
        "429_share": (stats["rate_limited_pending"] + stats["rate_limited_qps"])
        / max(1, attempted),
        "peak_pending": stats["peak_pending"],
        "duplicates": stats["duplicates"],
        "outcomes": sum(lines.values()),
        "every_input_once": sorted(lines) == list(range(1, n + 1)) and set(lines.values()) == {1},
        "ok": sum(1 for record in results if record["status"] == "done"),
        "round_trips": dict(trips),
        "redis_commands": sum(commands_seen.values()) - commands_seen.get("info", 0),
        "evalsha": commands_seen.get("evalsha", 0),
    }
    if kill:
        result["killed_after_outcomes"] = killed_after
    shutil.rmtree(out, ignore_errors=True)
    return result


def show(result: dict[str, Any], n: int) -> None:
    trips = result["round_trips"]
    per_generation = sum(trips.values()) / n if trips else 0.0
    print(
        f"{result['name']:12} makespan {result['makespan']:6.1f}s = {result['ratio']:.3f} x ideal; "
        f"{result['429s']:5d} 429s ({100 * result['429_share']:.2f}% of {result['attempted']} "
        f"submissions); peak pending {result['peak_pending']:3d}; {result['submissions']} created, "
        f"{result['duplicates']} duplicates; {result['ok']}/{n} done"
        + (f"; Redis calls/generation {per_generation:.2f}" if trips else "")
    )


def main() -> int:
    global PENDING, POLL
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", nargs="?", default="bench", choices=["bench", "host"])
    parser.add_argument("--prompts", type=int, default=2000)
    parser.add_argument("--redis", default=None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", default=None, help="comma-separated scenario names")
    parser.add_argument("--pending", type=float, default=PENDING, help="real seconds pending")
    parser.add_argument("--poll", type=float, default=POLL, help="workers' poll interval")
    args = parser.parse_args()
    PENDING, POLL = args.pending, args.poll
    if args.role == "host":
        host(args)
        return 0
    n = args.prompts
    workdir = Path(tempfile.mkdtemp(prefix="scaleout-"))
    prompts = workdir / "prompts.txt"
    prompts.write_text("".join(f"scale-out prompt {i}\n" for i in range(n)))
    redis = Redis(args.redis)
    scenarios: dict[str, dict[str, Any]] = {
        "single-16": {"shared": False, "max_pending": str(CAP), "workers": 1},
        "shared-16": {"shared": True, "max_pending": str(CAP)},
        "shared-auto": {"shared": True, "max_pending": "auto"},
        "alone-16": {"shared": False, "max_pending": str(CAP)},
        "alone-auto": {"shared": False, "max_pending": "auto"},
        "kill": {"shared": True, "max_pending": str(CAP), "kill": True},
    }
    wanted = args.only.split(",") if args.only else list(scenarios)
    ideal = math.ceil(n / CAP) * PENDING
    print(
        f"N={n} over K={K} workers (getty-ai batch --shard i/{K}), account cap {CAP}, "
        f"pending {PENDING}s, poll {POLL}s; ideal {ideal:.1f}s; Redis {redis.url}"
    )
    results: dict[str, dict[str, Any]] = {}
    try:
        for name in wanted:
            results[name] = run_scenario(name, prompts, n, redis, **scenarios[name])
            show(results[name], n)
    finally:
        redis.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    for name, result in results.items():
        if result["round_trips"]:
            trips = result["round_trips"]
            per = {kind: round(count / n, 3) for kind, count in sorted(trips.items())}
            print(
                f"{name}: Redis calls per generation by kind {per}; the server saw "
                f"{result['evalsha'] / n:.2f} EVALSHA per generation "
                f"({result['redis_commands'] / n:.1f} commands counting those the scripts ran)"
            )
    checks: list[tuple[str, bool]] = []
    if "shared-16" in results:
        r = results["shared-16"]
        lease_trips = r["round_trips"].get("batch", 0)  # acquire, bind, release, batched
        checks += [
            ("shared-16: sandbox peak pending <= 16", r["peak_pending"] <= CAP),
            ("shared-16: zero 429s", r["429s"] == 0),
            ("shared-16: makespan <= 1.15 x ideal", r["ratio"] <= 1.15),
            ("shared-16: every input done", r["ok"] == n),
            ("shared-16: lease calls (batched) <= 3 per generation", lease_trips <= 3 * n),
        ]
    if "shared-auto" in results:
        r = results["shared-auto"]
        checks += [
            ("shared-auto: 429s <= 1% of submissions", r["429_share"] <= 0.01),
            ("shared-auto: every input done", r["ok"] == n),
        ]
    if "kill" in results:
        r = results["kill"]
        checks += [
            ("kill: zero duplicate submissions", r["duplicates"] == 0 and r["submissions"] == n),
            ("kill: every input one outcome", r["every_input_once"]),
            ("kill: sandbox peak pending <= 16", r["peak_pending"] <= CAP),
        ]
    print()
    for label, ok in checks:
        print(("PASS  " if ok else "FAIL  ") + label)
    print("\nraw:", json.dumps(results))
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
