"""The batch displays: rich on a terminal, plain lines otherwise."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from getty_ai_async import AsyncGettyAI, SizeName
from getty_ai_async._cli._batch import BatchJob, run_batch
from getty_ai_async._cli._inputs import open_input
from getty_ai_async._cli._progress import BatchCounts, PlainReporter, RichReporter
from getty_ai_async.sandbox import Sandbox

from ._helpers import FAST_CLIENT, PROMPTS_FILE, PROMPTS_IN_FILE


def job_in(tmp_path: Path, download: SizeName | None = None) -> BatchJob:
    return BatchJob(
        source=open_input(str(PROMPTS_FILE)),
        out=tmp_path,
        results=tmp_path / "results.jsonl",
        journal=None,
        download=download,
    )


async def test_rich_display(sandbox: Sandbox, tmp_path: Path) -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=200, color_system=None)
    async with AsyncGettyAI.sandbox(sandbox, **FAST_CLIENT) as client:
        job = job_in(tmp_path, SizeName.SIZE_1K)
        result = await run_batch(client, job, RichReporter(console))

    assert result.exit_code == 0
    shown = screen.getvalue()
    assert "\x1b[" in shown  # drawn and redrawn in place
    for expected in (
        "generations",
        f"{PROMPTS_IN_FILE}/{PROMPTS_IN_FILE}",
        f"done {PROMPTS_IN_FILE}",
        "submits/s",
        "ETA",
        f"saved {4 * PROMPTS_IN_FILE}",
    ):
        assert expected in shown


async def test_plain_status_lines(sandbox: Sandbox, tmp_path: Path) -> None:
    out = io.StringIO()
    async with AsyncGettyAI.sandbox(sandbox, **FAST_CLIENT) as client:
        await run_batch(client, job_in(tmp_path), PlainReporter(out, status_every=0))

    lines = out.getvalue().splitlines()
    assert sum(line.startswith("done    [") for line in lines) == PROMPTS_IN_FILE
    assert any(line.startswith("status  ") and "pending" in line for line in lines)


def test_status_line() -> None:
    counts = BatchCounts(total=10, downloads=True, done=3, failed=1, pending=2, images_saved=12)

    assert counts.status_line().startswith("4/10 finished: 3 done, 0 blocked, 1 failed, 2 pending")
    assert counts.status_line().endswith("images: 12 saved, 0 failed")
