"""Soak: the product's promise end to end, under faults, a crash and a service restart.

    python benchmarks/soak.py                       # 5,000 generations (a few minutes)
    python benchmarks/soak.py --prompts 300 --quick # the scaled-down run the test suite does

The sandbox runs in a process of its own, served by uvicorn on loopback, with 5% of
requests answered 503, 1% of connections dropped (half before the request takes
effect, half after), random latency, tokens that expire every few seconds and a QPS
limit. The client runs `generate_many` with a journal in another process:

1. midway it is SIGKILLed;
2. the sandbox process restarts (its state kept: the same simulator object);
3. the client reruns on the same journal to the end;
4. it reruns once more with ``retry_uncertain=True``, for inputs whose POST was lost
   before the service acted (the history showed no generation for them).

Then it checks: every input ends with exactly one outcome, the service created as many
generations as there are inputs, none was charged twice (each prompt appears once in
the history), no exception group reached the caller, and the client's leases and
tasks are back to zero. Exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from _host import Host

from getty_ai_async import AsyncGettyAI, RetryPolicy

CAP = 25
# The sandbox accepts any credentials; these only name the account.
CREDENTIALS = {"api_key": "soak-key", "api_secret": "soak-secret"}


def prompt(i: int) -> str:
    return f"soak prompt {i}"


def sandbox_config(quick: bool, seed: int) -> dict[str, Any]:
    """The service's rules and faults (see the module docstring)."""
    return {
        "seed": seed,
        "pending_seconds": [0.05, 0.2] if quick else [0.2, 0.8],
        "pending_limit": CAP,
        "qps": 400,
        "retry_after": 0.1,
        "token_ttl": 3.0,
        "images_per_generation": 1,
        "faults": {
            "error_rate": 0.05,
            "drop_rate": 0.01,
            "drop_after_processing": 0.5,
            "latency": [0.0, 0.02],
        },
    }


def say(*words: str) -> None:
    print(*words, flush=True)


# ---------------------------------------------------------------------------- client


def client(args: argparse.Namespace) -> None:
    """One run of `generate_many` over the prompts, on the journal."""

    async def main() -> dict[str, Any]:
        options: dict[str, Any] = {
            **CREDENTIALS,
            "base_url": args.base_url,
            "max_pending": CAP,
            "max_requests_per_second": 300,
            "poll_interval": 0.05 if args.quick else 0.1,
            "history_grace": 1.0,
            "retry_policy": RetryPolicy(max_retries=6, wait_initial=0.05, wait_max=1.0),
        }
        summary: collections.Counter[str] = collections.Counter()
        groups = 0
        async with AsyncGettyAI(**options) as client:
            run = client.generate_many(
                (prompt(i) for i in range(args.prompts)),
                journal=args.journal,
                retry_uncertain=args.retry_uncertain,
            )
            async with run:
                async for outcome in run:
                    kind = "ok" if outcome.ok else type(outcome.error).__name__
                    groups += isinstance(outcome.error, BaseExceptionGroup)
                    summary[kind] += 1
                    say("OUT", str(outcome.index), kind)
            stats = run.stats
            in_use = client.limiter.statistics().in_use
        await asyncio.sleep(0)
        tasks = len(asyncio.all_tasks()) - 1
        return {
            "outcomes": dict(summary),
            "exception_groups": groups,
            "leases_in_use": in_use,
            "tasks_left": tasks,
            "polls": stats.polls,
            "submitted": stats.submitted,
            "rate_limited": stats.rate_limited,
            "adopted": stats.adopted,
            "uncertain": stats.uncertain,
            "replayed": stats.replayed,
        }

    summary = asyncio.run(main())
    say("SUMMARY", json.dumps(summary))


# ---------------------------------------------------------------------- orchestrator


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_client(base: list[str], *extra: str, kill_after: int | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    process = spawn("client", *base, *extra)
    assert process.stdout is not None
    seen: set[int] = set()
    summary: dict[str, Any] = {}
    for line in process.stdout:
        parts = line.split()
        if parts[:1] == ["OUT"]:
            seen.add(int(parts[1]))
            if kill_after is not None and len(seen) >= kill_after:
                process.send_signal(signal.SIGKILL)
                break
        elif parts[:1] == ["SUMMARY"]:
            summary = json.loads(line.split(maxsplit=1)[1])
    _, stderr = process.communicate(timeout=600)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    summary["exit_code"] = process.returncode
    summary["stderr_groups"] = stderr.count("ExceptionGroup")
    summary["indexes"] = sorted(seen)
    return summary


async def history_prompts(base_url: str) -> collections.Counter[str]:
    async with AsyncGettyAI(
        **CREDENTIALS,
        base_url=base_url,
        retry_policy=RetryPolicy(max_retries=8, wait_initial=0.05, wait_max=1.0),
    ) as client:
        return collections.Counter(
            [item.prompt or "" async for item in client.history.list(page_size=1000)]
        )


def orchestrate(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir or tempfile.gettempdir()) / f"soak-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    journal = workdir / "soak.sqlite"
    quick = ["--quick"] if args.quick else []
    n = args.prompts
    with Host(args.port, sandbox_config(args.quick, args.seed)) as sandbox:
        base = ["--base-url", sandbox.base_url, "--journal", str(journal), "--prompts", str(n)]
        base += quick
        killed = run_client(base, kill_after=n // 2)
        sandbox.restart()
        resumed = run_client(base)
        # A resubmitted POST can be lost again (1% of them): retry until none is left.
        retries = [run_client(base, "--retry-uncertain")]
        while retries[-1]["outcomes"].get("SubmissionUncertainError") and len(retries) < 4:
            retries.append(run_client(base, "--retry-uncertain"))
        retried = retries[-1]
        prompts_seen = anyio.run(history_prompts, sandbox.base_url)
        stats = sandbox.stats()

    wanted = {prompt(i) for i in range(n)}
    twice = sorted(p for p, count in prompts_seen.items() if count > 1)
    final = retried
    checks = {
        "every input has one outcome in the last run": final["indexes"] == list(range(n)),
        "every input succeeded in the end": final["outcomes"].get("ok") == n,
        "generations created == inputs": stats["submissions"] == n,
        "no generation charged twice": not twice and set(prompts_seen) == wanted,
        "no exception group reached the caller": all(
            run["exception_groups"] == 0 and run["stderr_groups"] == 0
            for run in (resumed, *retries)
        ),
        "runs after the kill exited 0": all(run["exit_code"] == 0 for run in (resumed, *retries)),
        "leases back to zero": final["leases_in_use"] == 0 and resumed["leases_in_use"] == 0,
        "no task left": final["tasks_left"] == 0 and resumed["tasks_left"] == 0,
    }
    report = {
        "prompts": n,
        "killed_after_outcomes": len(killed["indexes"]),
        "phases_seconds": [run["seconds"] for run in (killed, resumed, *retries)],
        "retry_uncertain_passes": len(retries),
        "resumed": {k: resumed[k] for k in ("outcomes", "adopted", "uncertain", "replayed")},
        "retried": {k: retried[k] for k in ("outcomes", "adopted", "replayed")},
        "service": {
            "submissions": stats["submissions"],
            "submissions_attempted": stats["submissions_attempted"],
            "rate_limited_pending": stats["rate_limited_pending"],
            "rate_limited_qps": stats["rate_limited_qps"],
            "token_requests": stats["token_requests"],
            "faults_injected": stats["faults_injected"],
            "peak_pending": stats["peak_pending"],
        },
        "duplicates": twice[:10],
        "checks": checks,
    }
    print(json.dumps(report, indent=2))
    return 0 if all(checks.values()) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", nargs="?", default="soak", choices=["soak", "client"])
    parser.add_argument("--prompts", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="shorter pending times")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--base-url")
    parser.add_argument("--journal")
    parser.add_argument("--retry-uncertain", action="store_true")
    args = parser.parse_args()
    if args.role == "client":
        client(args)
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
