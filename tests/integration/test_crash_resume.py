"""Kill -9 a fan-out mid-run, rerun it with the same journal: nothing lost, nothing paid twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import anyio

from getty_ai_async import AsyncGettyAI, GenerationOutcome, errors
from getty_ai_async.sandbox import Sandbox, run_in_thread

N = 60

CHILD = textwrap.dedent(
    """
    import os, sys, anyio
    from getty_ai_async import AsyncGettyAI

    async def main() -> None:
        async with AsyncGettyAI(
            api_key="crash-key", api_secret="s", base_url=os.environ["BASE"],
            token_url=os.environ["TOKEN"], poll_interval=0.01, max_pending=8,
        ) as client:
            prompts = (f"crash prompt {i}" for i in range(int(os.environ["N"])))
            async for outcome in client.generate_many(prompts, journal=os.environ["JOURNAL"]):
                print(outcome.index, flush=True)

    anyio.run(main)
    """
)


def run_child_and_kill_after(lines: int, env: dict[str, str]) -> int:
    seen = 0
    with subprocess.Popen(  # noqa: S603 - our own interpreter running our own script
        [sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        for _ in child.stdout:
            seen += 1
            if seen == lines:
                os.kill(child.pid, signal.SIGKILL)
                break
        child.wait(timeout=30)
    return seen


async def rerun(
    base_url: str, token_url: str, journal: Path
) -> tuple[list[GenerationOutcome], Counter[str]]:
    async with AsyncGettyAI(
        api_key="crash-key",
        api_secret="s",
        base_url=base_url,
        token_url=token_url,
        poll_interval=0.01,
        max_pending=8,
    ) as client:
        prompts = (f"crash prompt {i}" for i in range(N))
        outcomes = [o async for o in client.generate_many(prompts, journal=journal)]
        created = Counter([item.prompt or "" async for item in client.history.list(page_size=50)])
    return outcomes, created


def test_sigkill_mid_run_then_resume(tmp_path: Path) -> None:
    journal = tmp_path / "crash.sqlite"
    sandbox = Sandbox(pending_seconds=(0.02, 0.3), pending_limit=8, seed=5, images_per_generation=1)
    with run_in_thread(sandbox) as served:
        env = os.environ | {
            "BASE": served.base_url,
            "TOKEN": served.token_url,
            "JOURNAL": str(journal),
            "N": str(N),
        }
        killed_after = run_child_and_kill_after(20, env)
        assert killed_after == 20
        before = sandbox.stats.submissions
        assert 20 <= before < N, "the kill must land mid-run"

        outcomes, created = anyio.run(rerun, served.base_url, served.token_url, journal)

    assert sorted(o.index for o in outcomes) == list(range(N))
    uncertain = [o for o in outcomes if isinstance(o.error, errors.SubmissionUncertainError)]
    assert all(o.ok for o in outcomes if o not in uncertain)
    # Nothing paid twice: every prompt was generated at most once...
    assert max(created.values()) == 1
    # ...and nothing lost: every input has its generation, or is reported as uncertain
    # (a POST the kill cut off, which may or may not have reached the service).
    assert {o.request.prompt for o in outcomes if o.ok and o.request} <= set(created)
    assert len(uncertain) <= 8
    assert sandbox.stats.submissions == len(created)
    assert sandbox.stats.submissions >= N - len(uncertain)
