"""Interrupting a batch and resuming it: nothing submitted twice, nothing lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from getty_ai_async import AsyncGettyAI
from getty_ai_async._cli._batch import BatchJob, run_batch
from getty_ai_async._cli._inputs import open_input
from getty_ai_async._cli._progress import BatchCounts, QuietReporter
from getty_ai_async.sandbox import Sandbox

from ._helpers import FAST_CLIENT, PYTHON, Cli, Served, fast_settings, write_lines

PROMPTS = 30


class InterruptAfter(QuietReporter):
    """Acts like Ctrl-C once `limit` inputs have finished."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.seen = 0

    def start(self, counts: BatchCounts) -> None:
        self.seen = 0

    def finished(self, record: dict[str, Any]) -> None:
        self.seen += 1
        if self.seen == self.limit:
            raise KeyboardInterrupt


def prompts_file(tmp_path: Path, count: int = PROMPTS) -> Path:
    return write_lines(tmp_path / "prompts.txt", *(f"prompt number {n}" for n in range(count)))


def results_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def test_resume_in_process_submits_each_prompt_once(sandbox: Sandbox, tmp_path: Path) -> None:
    source = prompts_file(tmp_path)
    out = tmp_path / "out"
    job = BatchJob(
        source=open_input(str(source)),
        out=out,
        results=out / "results.jsonl",
        journal=out / "journal.sqlite",
    )

    async with AsyncGettyAI.sandbox(sandbox, **FAST_CLIENT) as client:
        first = await run_batch(client, job, InterruptAfter(5))
    assert not first.complete
    assert first.exit_code == 130
    # Outcomes the run had ready when it stopped get their lines too (they are journaled).
    assert first.counts.finished >= 5
    assert len(results_of(job.results)) == first.counts.finished
    # Generations were in flight when the batch stopped: they must be resumed, not redone.
    assert sandbox.stats.submissions > 5

    job = BatchJob(
        source=open_input(str(source)), out=out, results=job.results, journal=job.journal
    )
    async with AsyncGettyAI.sandbox(sandbox, **FAST_CLIENT) as client:
        second = await run_batch(client, job, QuietReporter())

    assert second.complete
    assert second.exit_code == 0
    assert second.counts.replayed >= 5
    assert sandbox.stats.submissions == PROMPTS
    results = results_of(job.results)
    assert sorted(r["line"] for r in results) == list(range(1, PROMPTS + 1))
    assert {r["status"] for r in results} == {"done"}


def test_ctrl_c_then_rerun_resumes(served: Served, tmp_path: Path) -> None:
    """A real SIGINT to a real `getty-ai batch` process, then the same command again."""
    source = prompts_file(tmp_path)
    out = tmp_path / "out"
    cli = [PYTHON, "-m", "getty_ai_async._cli", "--poll-interval", "0.02"]
    command = [*cli, "batch", str(source), "--out", str(out)]
    env = os.environ | served.env()
    results = out / "results.jsonl"

    first = subprocess.Popen(  # noqa: S603 - our own interpreter and CLI
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 20
        while not (results.exists() and len(results.read_text().splitlines()) >= 3):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the batch never got going"
            time.sleep(0.02)
        # Freeze the sandbox's clock: nothing finishes any more, so the batch cannot end
        # on its own before Ctrl-C arrives.
        served.sandbox.config.time_scale = 1e9
        first.send_signal(signal.SIGINT)
        stdout, stderr = first.communicate(timeout=20)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()

    assert first.returncode == 130, stderr
    assert "Stopping: nothing new is submitted" in stderr
    summary = stdout.splitlines()[-1]
    assert summary.startswith("Interrupted after ")
    resume = f"getty-ai --poll-interval 0.02 batch {source} --out {out}"
    assert summary.endswith(f"run the same command: {resume}")
    assert served.sandbox.stats.submissions < PROMPTS

    served.sandbox.config.time_scale = 0.02
    second = subprocess.run(  # noqa: S603 - our own interpreter and CLI
        command, env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert second.returncode == 0, second.stderr
    assert served.sandbox.stats.submissions == PROMPTS
    assert len(results_of(results)) == PROMPTS
    assert {r["status"] for r in results_of(results)} == {"done"}


def test_retry_failed(cli: Cli, tmp_path: Path) -> None:
    failing = Sandbox(pending_seconds=0)
    failing.faults.route_error_rates["generate"] = 1.0
    source = prompts_file(tmp_path, 4)
    settings = fast_settings(failing)
    settings.client_options["max_retries"] = 0
    args = ("--sandbox", "batch", str(source), "--out", str(tmp_path))

    broken = cli(*args, settings=settings)
    assert broken.exit_code == 1
    assert "4 failed" in broken.stdout

    failing.faults.route_error_rates.clear()
    replayed = cli(*args, settings=settings)
    assert replayed.exit_code == 1
    assert "4 replayed from the journal; 4 failed" in replayed.stdout
    assert failing.stats.submissions == 0

    retried = cli(*args, "--retry-failed", settings=settings)
    assert retried.exit_code == 0, retried.output
    assert failing.stats.submissions == 4
