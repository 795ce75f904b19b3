"""Ctrl-C twice: results and counts match what was paid for, and nothing is bought twice."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from getty_ai_async import AsyncGettyAI
from getty_ai_async._cli import _batch_command
from getty_ai_async._cli._batch import BatchJob, _Batch, run_batch, summary
from getty_ai_async._cli._inputs import open_input
from getty_ai_async._cli._progress import QuietReporter
from getty_ai_async._models import SizeName
from getty_ai_async.sandbox import Sandbox

from ._helpers import (
    FAST_CLIENT,
    PROMPTS_FILE,
    PROMPTS_IN_FILE,
    PYTHON,
    Cli,
    Served,
    fast_settings,
)

IMAGES = 4 * PROMPTS_IN_FILE
RESUME = "getty-ai batch prompts.txt --out out --download 1k"


def results_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def job_for(out: Path, download: SizeName | None = SizeName.SIZE_1K) -> BatchJob:
    return BatchJob(
        source=open_input(str(PROMPTS_FILE)),
        out=out,
        results=out / "results.jsonl",
        journal=out / "journal.sqlite",
        download=download,
    )


async def wait_until(condition: Any, seconds: float = 10.0) -> None:
    with anyio.fail_after(seconds):
        while not condition():  # noqa: ASYNC110 - the sandbox has no event for this
            await anyio.sleep(0.005)


async def test_second_ctrl_c_during_downloads_keeps_results_and_never_rebuys(
    tmp_path: Path,
) -> None:
    # Generations finish at once; downloads stay pending (1000 simulated s), so Ctrl-C
    # arrives while 16 purchases are being prepared.
    sandbox = Sandbox(pending_seconds=0, download_pending_seconds=1000, time_scale=0.02)
    out = tmp_path / "out"
    async with AsyncGettyAI.sandbox(sandbox, **FAST_CLIENT) as client:
        batch = _Batch(client, job_for(out), QuietReporter())
        async with anyio.create_task_group() as group:

            async def run() -> None:
                batch.result = await batch.run(handle_signals=False)  # type: ignore[attr-defined]

            group.start_soon(run)
            await wait_until(lambda: sandbox.stats.downloads == 16)
            assert not batch.interrupt()  # first Ctrl-C: waits for the requests in flight
            # The generation POSTs in flight are answered (the downloads never will be),
            # and every generation created is handed over (on a loaded machine an answer
            # can still be on its way to the journal when the POSTs are all back).
            await wait_until(
                lambda: (
                    batch._run is not None
                    and not batch._run.stats.in_flight
                    and batch._run.stats.done >= sandbox.stats.submissions
                )
            )
            assert batch.interrupt()  # second: stops at once
    first = batch.result  # type: ignore[attr-defined]

    assert not first.complete
    assert first.exit_code == 130
    assert first.counts.cut_submissions == 0
    # Every generation created (and paid for) finished at once and is journaled as done:
    # each has its result line, listing the images not saved, and the counts say so.
    created = sandbox.stats.submissions
    assert created >= 4
    results = results_of(out / "results.jsonl")
    assert len(results) == first.counts.finished == created
    assert {r["status"] for r in results} == {"done"}
    unsaved = sum(len(r["unsaved"]) for r in results)
    assert unsaved == 4 * created == first.counts.images_unsaved
    line = summary(first, job_for(out), RESUME)
    assert line.startswith(f"Interrupted after {created} of {PROMPTS_IN_FILE} inputs")
    assert f"{unsaved} images not saved yet" in line
    assert not list(out.glob("*.png"))

    # The purchases the first run started are picked up, not bought again.
    sandbox.advance(2000)
    sandbox.config.download_pending_seconds = 0.5
    async with AsyncGettyAI.sandbox(sandbox, **FAST_CLIENT) as client:
        second = await run_batch(client, job_for(out), QuietReporter())

    assert second.complete
    assert second.exit_code == 0
    assert sandbox.stats.downloads == IMAGES
    assert sandbox.stats.submissions == PROMPTS_IN_FILE
    assert len(list(out.glob("*.png"))) == IMAGES
    assert second.counts.images_refetched == 16
    assert second.counts.images_saved == IMAGES - 16
    assert len(results_of(out / "results.jsonl")) == PROMPTS_IN_FILE


async def test_images_bought_before_come_back_by_free_redownload(tmp_path: Path) -> None:
    sandbox = Sandbox(pending_seconds=0, download_pending_seconds=0)
    out = tmp_path / "out"
    async with AsyncGettyAI.sandbox(sandbox, **FAST_CLIENT) as client:
        first = await run_batch(client, job_for(out), QuietReporter())
        assert first.exit_code == 0
        assert sandbox.stats.downloads == IMAGES

        # Files lost after they were bought (or a fetch cut off by Ctrl-C).
        for file in out.glob("*.png"):
            file.unlink()
        again = await run_batch(client, job_for(out), QuietReporter())

    assert again.exit_code == 0
    assert sandbox.stats.downloads == IMAGES
    assert sandbox.stats.redownloads == IMAGES
    assert again.counts.images_refetched == IMAGES
    assert len(list(out.glob("*.png"))) == IMAGES
    line = summary(again, job_for(out), RESUME)
    assert f"0 saved, {IMAGES} fetched again without buying" in line


async def test_second_ctrl_c_cutting_a_submission_is_reported_honestly(tmp_path: Path) -> None:
    sandbox = Sandbox(pending_seconds=0, time_scale=0.02)
    out = tmp_path / "out"
    job = job_for(out, download=None)
    async with AsyncGettyAI.sandbox(sandbox, **FAST_CLIENT, max_pending=1) as client:
        await client.history.page()  # the token, before replies are held
        sandbox.faults.slow = True  # every reply now waits 1000 simulated s after taking effect
        sandbox.faults.slow_seconds = 1000
        batch = _Batch(client, job, QuietReporter())
        async with anyio.create_task_group() as group:

            async def run() -> None:
                batch.result = await batch.run(handle_signals=False)  # type: ignore[attr-defined]

            group.start_soon(run)
            await wait_until(lambda: sandbox.stats.submissions == 1)
            batch.interrupt()
            batch.interrupt()
    first = batch.result  # type: ignore[attr-defined]

    assert first.counts.cut_submissions == 1
    line = summary(first, job, RESUME)
    assert "1 submission cut off mid-request" in line
    assert "looks them up in the history" in line

    sandbox.faults.slow = False
    async with AsyncGettyAI.sandbox(sandbox, **FAST_CLIENT) as client:
        job = dataclasses.replace(job, source=open_input(str(PROMPTS_FILE)))
        second = await run_batch(client, job, QuietReporter())

    # The cut-off POST did create a generation: the rerun found it in the history and
    # adopted it instead of paying again, and nothing is left uncertain.
    assert sandbox.stats.submissions == PROMPTS_IN_FILE
    assert second.counts.remedies["uncertain"] == 0
    assert second.counts.done + second.counts.blocked == PROMPTS_IN_FILE
    line = summary(second, job, RESUME)
    assert "--retry-failed" not in line


@pytest.mark.parametrize("retry_failed", [False, True])
def test_summary_promises_retry_failed_only_for_what_it_resubmits(
    cli: Cli, tmp_path: Path, retry_failed: bool
) -> None:
    sandbox = Sandbox(pending_seconds=0)
    settings = fast_settings(sandbox)
    settings.client_options["max_retries"] = 0
    # A generation POST whose reply is lost before the service acts: the history shows
    # nothing, so the input is uncertain (nothing may resubmit it blindly).
    sandbox.faults.route_drop_rates["generate"] = 1.0
    source = tmp_path / "prompts.txt"
    source.write_text("a fox\n", encoding="utf-8")
    args = ["--sandbox", "batch", str(source), "--out", str(tmp_path / "out")]

    first = cli(*args, settings=settings)
    sandbox.faults.route_drop_rates.clear()
    again = cli(*args, *(["--retry-failed"] if retry_failed else []), settings=settings)

    for result in (first, again):
        assert result.exit_code == 1
        summary_line = result.stdout.splitlines()[-1]
        assert "1 failed (1 uncertain)" in summary_line
        assert "--retry-failed" not in summary_line
        assert "--retry-uncertain" in summary_line
    assert sandbox.stats.submissions == 0

    retried = cli(*args, "--retry-uncertain", settings=settings)
    assert retried.exit_code == 0, retried.output
    assert sandbox.stats.submissions == 1


def test_summary_still_offers_retry_failed_for_refused_inputs(cli: Cli, tmp_path: Path) -> None:
    sandbox = Sandbox(pending_seconds=0)
    sandbox.faults.route_error_rates["generate"] = 1.0
    settings = fast_settings(sandbox)
    settings.client_options["max_retries"] = 0
    source = tmp_path / "prompts.txt"
    source.write_text("a fox\n", encoding="utf-8")

    result = cli("--sandbox", "batch", str(source), "--out", str(tmp_path), settings=settings)

    assert result.exit_code == 1
    assert "--retry-failed submits the 1 refused input again" in result.stdout.splitlines()[-1]


def test_ctrl_c_twice_on_a_real_process_then_resume(served: Served, tmp_path: Path) -> None:
    """Two real SIGINTs while purchases are being prepared, then the same command again."""
    sandbox = served.sandbox
    sandbox.config.pending_seconds = 0
    sandbox.config.download_pending_seconds = 1000  # 20 s of real time: still pending at ^C^C
    out = tmp_path / "out"
    command = [
        PYTHON, "-m", "getty_ai_async._cli", "--poll-interval", "0.02",
        "batch", str(PROMPTS_FILE), "--download", "1k", "--out", str(out),
    ]  # fmt: skip
    env = os.environ | served.env()

    first = subprocess.Popen(  # noqa: S603 - our own interpreter and CLI
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 20
        while sandbox.stats.downloads < 16:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "no download was ever started"
            time.sleep(0.01)
        first.send_signal(signal.SIGINT)
        assert first.stderr is not None
        note = first.stderr.readline()
        assert note.startswith("Stopping: nothing new is submitted"), note
        time.sleep(0.5)  # the generation POSTs in flight are answered within milliseconds
        first.send_signal(signal.SIGINT)
        stdout, stderr = first.communicate(timeout=20)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()

    assert first.returncode == 130, stderr
    created = sandbox.stats.submissions
    results = results_of(out / "results.jsonl")
    assert len(results) == created
    assert stdout.splitlines()[-1].startswith(
        f"Interrupted after {created} of {PROMPTS_IN_FILE} inputs"
    )

    sandbox.advance(2000)
    sandbox.config.download_pending_seconds = 0.5
    second = subprocess.run(  # noqa: S603 - our own interpreter and CLI
        command, env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert second.returncode == 0, second.stderr
    assert sandbox.stats.submissions == PROMPTS_IN_FILE
    assert sandbox.stats.downloads == IMAGES  # nothing bought twice
    assert len(list(out.glob("*.png"))) == IMAGES


class InterruptAfter(QuietReporter):
    """Acts like Ctrl-C once `limit` inputs have finished."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.seen = 0

    def finished(self, record: dict[str, Any]) -> None:
        self.seen += 1
        if self.seen == self.limit:
            raise KeyboardInterrupt


def test_an_interrupted_sandbox_batch_does_not_offer_to_resume(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --sandbox: the simulated service ends with the command; its ids mean nothing later.
    monkeypatch.setattr(_batch_command, "_reporter", lambda quiet: InterruptAfter(3))

    result = cli("--sandbox", "batch", str(PROMPTS_FILE), "--out", str(tmp_path))

    assert result.exit_code == 130
    line = result.stdout.splitlines()[-1]
    assert line.startswith("Interrupted after ")
    assert "run the same command" not in line
    assert "getty-ai sandbox serve" in line
    # What was pending when it stopped (if anything: on a loaded machine the interrupt can
    # come while the next POSTs are still out) is named as lost with the sandbox.
    assert "rerunning only replays what finished" in line


def test_an_interrupted_batch_on_a_lasting_service_offers_to_resume(
    cli: Cli, sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_batch_command, "_reporter", lambda quiet: InterruptAfter(3))
    args = ("--sandbox", "batch", str(PROMPTS_FILE), "--out", str(tmp_path))

    result = cli(*args, settings=fast_settings(sandbox))  # one sandbox for every command

    assert result.exit_code == 130
    assert "To resume, run the same command: getty-ai --sandbox batch" in result.stdout
