"""``getty-ai batch``: a file of prompts through `generate_many`, with results and downloads.

Inputs are read lazily and fanned out under the pending cap; each finished input gets a
line in the results file, after its images are saved when downloads are on. Downloads
run beside the fan-out, a bounded number at a time. The journal makes a rerun of the
same command resume: finished inputs are replayed, pending ones polled, files already on
disk kept.
"""

from __future__ import annotations

import contextlib
import glob
import signal
from array import array
from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup

from .._client import AsyncGettyAI
from .._downloads import safe_filename
from .._fanout import GenerationOutcome, GenerationRun, RequestLike
from .._limiter import MaxPending
from .._models import GeneratedImage, SizeName
from ..errors import AuthenticationError, GettyAIError
from ._errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, describe
from ._inputs import BatchInput, InputLine
from ._progress import BatchCounts, Reporter
from ._results import ResultsWriter, bad_line_record, outcome_record

__all__ = ["DEFAULT_JOURNAL_NAME", "DEFAULT_RESULTS_NAME", "BatchJob", "BatchResult", "run_batch"]

DEFAULT_RESULTS_NAME: Final = "results.jsonl"
DEFAULT_JOURNAL_NAME: Final = ".getty-ai-journal.sqlite"
_TICK_SECONDS: Final = 0.125
_DRAIN_POLL_SECONDS: Final = 0.02
# Finished inputs whose images are still being saved; past this the fan-out waits, so a
# slow disk or CDN holds generations back instead of piling them up in memory.
_SAVE_BACKLOG: Final = 256


@dataclass(frozen=True, slots=True)
class BatchJob:
    """Everything `getty-ai batch` was asked to do."""

    source: BatchInput
    out: Path
    results: Path
    journal: Path | None
    download: SizeName | None = None
    images_per_prompt: int | None = None
    """Save at most this many images of each generation (None: all that are not blocked)."""
    max_pending: MaxPending | None = None
    retry_failed: bool = False
    save_concurrency: int = 16


@dataclass(frozen=True, slots=True)
class BatchResult:
    counts: BatchCounts
    complete: bool
    """Every input was read and has its result line."""
    fatal: BaseException | None = None
    """The error that stopped the batch early (authentication failed)."""

    @property
    def exit_code(self) -> int:
        """0 when every input succeeded, 1 when some failed, 130 when interrupted."""
        if self.fatal is not None:
            return EXIT_FAILED
        if not self.complete:
            return EXIT_INTERRUPTED
        counts = self.counts
        if counts.failed or counts.images_failed or counts.finished < counts.total:
            return EXIT_FAILED
        return EXIT_OK


def _existing_file(folder: Path, stem: str) -> Path | None:
    """A file an earlier run saved under `stem` (with whatever extension), if any."""
    for found in folder.glob(glob.escape(stem) + ".*"):
        return found
    plain = folder / stem
    return plain if plain.is_file() else None


class _Batch:
    def __init__(self, client: AsyncGettyAI, job: BatchJob, reporter: Reporter) -> None:
        self._client = client
        self._job = job
        self._reporter = reporter
        self.counts = BatchCounts(total=job.source.total, downloads=job.download is not None)
        # Line number of each input handed to generate_many, by its index there.
        self._line_of: array[int] = array("Q")
        self._rejected: deque[InputLine] = deque()
        self._input_read = False
        self._exhausted = False
        self._stopping = False
        self._interrupted = False
        self._fatal: BaseException | None = None
        self._work = anyio.CancelScope()
        self._saves = anyio.CapacityLimiter(job.save_concurrency)
        self._saving = 0
        """Downloads under way (past the limiter)."""
        self._backlog = anyio.Semaphore(_SAVE_BACKLOG)
        self._writer: ResultsWriter | None = None
        self._run: GenerationRun | None = None

    # ----------------------------------------------------------------- running

    async def run(self, handle_signals: bool) -> BatchResult:
        job = self._job
        lines = job.source.lines()
        requests = self._requests(lines)
        self._run = run = self._client.generate_many(
            requests,
            max_pending=job.max_pending,
            journal=job.journal,
            retry_failed=job.retry_failed,
        )
        self._reporter.start(self.counts)
        try:
            with ResultsWriter(job.results) as self._writer:
                async with anyio.create_task_group() as background:
                    background.start_soon(self._tick)
                    if handle_signals:
                        background.start_soon(self._watch_signals, background)
                    with self._work:
                        async with anyio.create_task_group() as saves:
                            async with run:
                                await self._consume(run, saves)
                            if not self._complete and not self._stopping:
                                saves.cancel_scope.cancel()
                    self._flush_rejected()
                    background.cancel_scope.cancel()
        finally:
            requests.close()
            lines.close()
            self._sync_stats()
            self._reporter.stop()
        return BatchResult(self.counts, self._complete, self._fatal)

    @property
    def _complete(self) -> bool:
        return self._exhausted and self._input_read and not self._interrupted

    def _requests(self, lines: Iterator[InputLine]) -> Generator[RequestLike, None, None]:
        for line in lines:
            if self._stopping:
                return
            if line.request is None:
                self._rejected.append(line)
                continue
            self._line_of.append(line.number)
            yield line.request
        self._input_read = True

    async def _consume(self, run: GenerationRun, saves: TaskGroup) -> None:
        async for outcome in run:
            self._flush_rejected()
            line = self._line_of[outcome.index]
            if isinstance(outcome.error, AuthenticationError):
                # Every other input would fail the same way: stop and say so once.
                self._fatal = outcome.error
                self._record(outcome_record(line, outcome))
                return
            images = self._images_to_save(outcome)
            if images:
                self.counts.images_queued += len(images)
                await self._backlog.acquire()
                saves.start_soon(self._save_and_record, line, outcome, images)
            else:
                self._record(outcome_record(line, outcome))
            if self._stopping or self._interrupted:
                return
        self._exhausted = True

    def _record(self, record: dict[str, Any]) -> None:
        counts = self.counts
        status = record["status"]
        if status == "done":
            counts.done += 1
        elif status == "blocked":
            counts.blocked += 1
        else:
            counts.failed += 1
        if record["replayed"]:
            counts.replayed += 1
        assert self._writer is not None
        self._writer.write(record)
        try:
            self._reporter.finished(record)
        except KeyboardInterrupt:
            self._interrupted = True
            self._work.cancel()

    def _flush_rejected(self) -> None:
        while self._rejected:
            self.counts.invalid += 1
            self._record(bad_line_record(self._rejected.popleft()))

    def _sync_stats(self) -> None:
        if self._run is not None:
            stats = self._run.stats
            self.counts.pending = stats.pending
            self.counts.submitted = stats.submitted
            self.counts.rate_limited = stats.rate_limited

    async def _tick(self) -> None:
        while True:
            self._sync_stats()
            self._reporter.refresh()
            await anyio.sleep(_TICK_SECONDS)

    # ------------------------------------------------------------------- Ctrl-C

    async def _watch_signals(self, background: TaskGroup) -> None:
        with contextlib.ExitStack() as stack:
            try:
                received = stack.enter_context(
                    anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM)
                )
            except (NotImplementedError, RuntimeError, ValueError):
                return  # not the main thread, or no signal handlers on this platform
            async for _ in received:
                if self._stopping:
                    self._reporter.note("Stopping now.")
                    self._work.cancel()
                    return
                self._stopping = True
                self._reporter.note(
                    "Stopping: nothing new is submitted; waiting for the requests in flight "
                    "(Ctrl-C again to stop at once)."
                )
                background.start_soon(self._drain)

    async def _drain(self) -> None:
        # A generation POST cut off mid-way leaves its input "uncertain" in the journal
        # (never resubmitted, to avoid paying twice), and a download cut off mid-way is
        # bought again on resume, so let both kinds in flight finish; nothing new starts.
        # Pending generations are safe to leave: the journal has their ids.
        # No event fires when the POSTs in flight are answered, hence polling (briefly:
        # these requests are quick).
        assert self._run is not None
        while self._run.stats.in_flight or self._saving:  # noqa: ASYNC110
            await anyio.sleep(_DRAIN_POLL_SECONDS)
        self._work.cancel()

    # ---------------------------------------------------------------- downloads

    def _images_to_save(self, outcome: GenerationOutcome) -> list[GeneratedImage]:
        if self._job.download is None or outcome.generation is None:
            return []
        images = outcome.generation.images
        limit = self._job.images_per_prompt
        return images if limit is None else images[:limit]

    async def _save_and_record(
        self, line: int, outcome: GenerationOutcome, images: list[GeneratedImage]
    ) -> None:
        try:
            assert outcome.generation is not None
            generation_id = outcome.generation.generation_request_id
            files: dict[int, str] = {}
            errors: list[str] = []
            async with anyio.create_task_group() as group:
                for image in images:
                    group.start_soon(self._save_image, generation_id, image.index, files, errors)
            if len(files) + len(errors) < len(images):
                return  # cut short by Ctrl-C: a rerun replays this input and saves the rest
            self._record(
                outcome_record(
                    line,
                    outcome,
                    files=[files.get(image.index) for image in outcome.generation.images],
                    download_error="; ".join(errors) or None,
                )
            )
        finally:
            self._backlog.release()

    async def _save_image(
        self, generation_id: str, index: int, files: dict[int, str], errors: list[str]
    ) -> None:
        job = self._job
        assert job.download is not None
        stem = safe_filename(f"{generation_id}_{index}_{job.download.value}")
        try:
            found = await anyio.to_thread.run_sync(_existing_file, job.out, stem)
            if found is not None:
                self.counts.images_present += 1
            else:
                async with self._saves:
                    if self._stopping:
                        return
                    self._saving += 1
                    try:
                        found = await self._client.downloads.save(
                            generation_id, index, job.out, size_name=job.download
                        )
                    finally:
                        self._saving -= 1
                self.counts.images_saved += 1
        except (GettyAIError, OSError) as exc:
            self.counts.images_failed += 1
            errors.append(f"image {index}: {describe(exc)[0]}")
            return
        files[index] = str(job.out / found.name)


async def run_batch(
    client: AsyncGettyAI, job: BatchJob, reporter: Reporter, *, handle_signals: bool = False
) -> BatchResult:
    """Run `job` with `client`, showing progress through `reporter`.

    With `handle_signals`, the first Ctrl-C (or SIGTERM) stops submitting and ends the run
    once the generation POSTs in flight have answered; a second one stops at once. Either
    way what is pending stays in the journal and the same command resumes it. A
    KeyboardInterrupt raised by the reporter stops the batch the same way.
    """
    return await _Batch(client, job, reporter).run(handle_signals)


def summary(result: BatchResult, job: BatchJob, resume_command: str) -> str:
    """The one line printed when a batch ends."""
    counts = result.counts
    total = counts.total
    if result.fatal is not None:
        return (
            f"Stopped: {describe(result.fatal)[0]}. Fix it, then resume with "
            f"--retry-failed added: {resume_command} --retry-failed"
        )
    if not result.complete:
        kept = f"; {counts.pending} pending generations are kept in {job.journal}"
        return (
            f"Interrupted after {counts.finished} of {total} inputs"
            f"{kept if job.journal is not None and counts.pending else ''}. "
            f"To resume, run the same command: {resume_command}"
        )
    head = f"{counts.done + counts.blocked} of {total} inputs succeeded in {counts.elapsed:.1f}s"
    if counts.blocked:
        head += f" ({counts.blocked} with every image blocked by policy)"
    parts = [head]
    if counts.replayed:
        parts.append(f"{counts.replayed} replayed from the journal")
    if counts.failed:
        invalid = f" ({counts.invalid} unusable lines)" if counts.invalid else ""
        parts.append(f"{counts.failed} failed{invalid}")
    if counts.downloads:
        images = f"images in {job.out}: {counts.images_saved} saved"
        if counts.images_present:
            images += f", {counts.images_present} already there"
        if counts.images_failed:
            images += f", {counts.images_failed} failed"
        parts.append(images)
    line = "; ".join(parts) + f". Results: {job.results}"
    if counts.failed or counts.images_failed:
        line += (
            ' (see "error" and "download_error" there; --retry-failed submits failed inputs again)'
        )
    return line
