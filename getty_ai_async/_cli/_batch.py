"""``getty-ai batch``: a file of prompts through `generate_many`, with results and downloads.

Inputs are read lazily and fanned out under the pending cap; each finished input gets a
line in the results file, after its images are saved when downloads are on. Downloads
run beside the fan-out, a bounded number at a time. The journal makes a rerun of the
same command resume: finished inputs are replayed, pending ones polled, files already on
disk kept.
"""

from __future__ import annotations

import contextlib
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
from .._fanout import GenerationOutcome, GenerationRun, RequestLike
from .._limiter import MaxPending
from .._models import GeneratedImage, SizeName
from ..errors import AuthenticationError, GettyAIError
from ._errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, describe
from ._inputs import BatchInput, InputLine
from ._progress import BatchCounts, Reporter
from ._results import Remedy, ResultsWriter, bad_line_record, outcome_record, remedy_of
from ._saving import DownloadLedger, save_image

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
    retry_uncertain: bool = False
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
        self._received = 0
        """Outcomes taken from the run."""
        self._background: TaskGroup | None = None
        self._ledger = DownloadLedger(job.out)

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
            retry_uncertain=job.retry_uncertain,
        )
        self._reporter.start(self.counts)
        try:
            with ResultsWriter(job.results) as self._writer, self._ledger:
                async with anyio.create_task_group() as background:
                    self._background = background
                    background.start_soon(self._tick)
                    if handle_signals:
                        background.start_soon(self._watch_signals)
                    with self._work:
                        async with anyio.create_task_group() as saves:
                            async with run:
                                await self._consume(run, saves)
                            if not self._complete and not self._stopping:
                                saves.cancel_scope.cancel()
                    if not self._complete:
                        await self._record_the_rest(run)
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
            self._received += 1
            self._flush_rejected()
            line = self._line_of[outcome.index]
            if isinstance(outcome.error, AuthenticationError):
                # Every other input would fail the same way: stop and say so once.
                self._fatal = outcome.error
                self._record(outcome_record(line, outcome), remedy_of(outcome))
                return
            images = self._images_to_save(outcome)
            if images and not self._stopping:
                self.counts.images_queued += len(images)
                try:
                    await self._backlog.acquire()
                except BaseException:
                    # Stopped at once: the result line is written all the same.
                    self._record_unsaved(line, outcome, images)
                    raise
                saves.start_soon(self._save_and_record, line, outcome, images)
            else:
                self._record_unsaved(line, outcome, images)
            if self._stopping or self._interrupted:
                return
        self._exhausted = True

    async def _record_the_rest(self, run: GenerationRun) -> None:
        """After a stop: write the lines of outcomes the run had already produced.

        Their results are in the journal; without their lines, the results file and the
        counts would say less was done than was paid for. The run is closed by now, so
        this only hands over what it holds (no request is made).
        """
        stats = run.stats
        while self._received < stats.done + stats.failed:
            try:
                outcome = await run.__anext__()
            except StopAsyncIteration:
                return
            self._received += 1
            line = self._line_of[outcome.index]
            self._record_unsaved(line, outcome, self._images_to_save(outcome))

    def _record_unsaved(
        self, line: int, outcome: GenerationOutcome, images: list[GeneratedImage]
    ) -> None:
        """The result line of an input whose images (if any) were not saved this time."""
        unsaved = [image.index for image in images]
        self.counts.images_unsaved += len(unsaved)
        self._record(outcome_record(line, outcome, unsaved=unsaved), remedy_of(outcome))

    def _record(self, record: dict[str, Any], remedy: Remedy | None = None) -> None:
        counts = self.counts
        status = record["status"]
        if status == "done":
            counts.done += 1
        elif status == "blocked":
            counts.blocked += 1
        else:
            counts.failed += 1
            if remedy is not None:
                counts.remedies[remedy] += 1
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
            self._record(bad_line_record(self._rejected.popleft()), "fix_input")

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

    async def _watch_signals(self) -> None:
        with contextlib.ExitStack() as stack:
            try:
                received = stack.enter_context(
                    anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM)
                )
            except (NotImplementedError, RuntimeError, ValueError):
                return  # not the main thread, or no signal handlers on this platform
            async for _ in received:
                if self.interrupt():
                    return

    def interrupt(self) -> bool:
        """What Ctrl-C does: the first stops gracefully, the second at once (True then)."""
        if self._stopping:
            self._reporter.note("Stopping now.")
            assert self._run is not None
            # Generation POSTs cut off now leave their inputs "uncertain".
            self.counts.cut_submissions = self._run.stats.in_flight
            self._interrupted = True  # whatever was cut (downloads, POSTs), it was cut
            self._work.cancel()
            return True
        self._stopping = True
        self._reporter.note(
            "Stopping: nothing new is submitted; waiting for the requests in flight "
            "(Ctrl-C again to stop at once)."
        )
        assert self._background is not None
        self._background.start_soon(self._drain)
        return False

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
        assert outcome.generation is not None
        generation_id = outcome.generation.generation_request_id
        product_id = outcome.request.product_id if outcome.request is not None else None
        files: dict[int, str] = {}
        errors: dict[int, str] = {}
        try:
            async with anyio.create_task_group() as group:
                for image in images:
                    group.start_soon(
                        self._save_image, generation_id, image.index, product_id, files, errors
                    )
        finally:
            # Written even when Ctrl-C cut the saving short: the generation is paid for and
            # the journal has it. Images not saved yet are listed; a rerun saves them.
            unsaved = [i.index for i in images if i.index not in files and i.index not in errors]
            self.counts.images_unsaved += len(unsaved)
            self._record(
                outcome_record(
                    line,
                    outcome,
                    files=[files.get(image.index) for image in outcome.generation.images],
                    download_error="; ".join(errors[i] for i in sorted(errors)) or None,
                    unsaved=unsaved,
                ),
                remedy_of(outcome),
            )
            self._backlog.release()

    async def _save_image(
        self,
        generation_id: str,
        index: int,
        product_id: int | None,
        files: dict[int, str],
        errors: dict[int, str],
    ) -> None:
        job = self._job
        assert job.download is not None
        try:
            async with self._saves:
                if self._stopping:
                    return  # Ctrl-C: nothing new starts; a rerun saves it
                self._saving += 1
                try:
                    saved = await save_image(
                        self._client,
                        self._ledger,
                        generation_id,
                        index,
                        job.download,
                        job.out,
                        product_id=product_id,
                    )
                finally:
                    self._saving -= 1
        except (GettyAIError, OSError) as exc:
            self.counts.images_failed += 1
            errors[index] = f"image {index}: {describe(exc)[0]}"
            return
        if saved.how == "present":
            self.counts.images_present += 1
        elif saved.how == "bought":
            self.counts.images_saved += 1
        else:
            self.counts.images_refetched += 1
        files[index] = str(job.out / saved.path.name)


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


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _interrupted(
    result: BatchResult, job: BatchJob, resume_command: str, in_process_sandbox: bool
) -> str:
    counts = result.counts
    parts = [f"Interrupted after {counts.finished} of {counts.total} inputs"]
    if in_process_sandbox:
        # The simulated service lived inside this command: nothing it knew survives.
        left = []
        if counts.pending:
            left.append(_plural(counts.pending, "pending generation"))
        if counts.images_unsaved:
            left.append(_plural(counts.images_unsaved, "unsaved image"))
        lost = f" ({' and '.join(left)} would come back as 404s)" if left else ""
        return (
            f"{parts[0]}. --sandbox ran a sandbox inside this command and it is gone, so "
            f"rerunning only replays what finished{lost}. To interrupt and resume for real, "
            "run `getty-ai sandbox serve` and point GETTY_BASE_URL and GETTY_TOKEN_URL at it"
        )
    if job.journal is not None and counts.pending:
        parts.append(f"{_plural(counts.pending, 'pending generation')} are kept in {job.journal}")
    if counts.images_unsaved:
        parts.append(f"{_plural(counts.images_unsaved, 'image')} not saved yet")
    if counts.cut_submissions:
        parts.append(
            f"{_plural(counts.cut_submissions, 'submission')} cut off mid-request: the rerun "
            "looks them up in the history (what it finds is not paid for twice)"
        )
    return "; ".join(parts) + f". To resume, run the same command: {resume_command}"


def _failure_hints(counts: BatchCounts) -> list[str]:
    """What to do about the failures, promising only what each remedy really does."""
    remedies = counts.remedies
    hints = ['see "error" and "download_error" there']
    if remedies["retry_failed"]:
        hints.append(
            f"--retry-failed submits the {_plural(remedies['retry_failed'], 'refused input')} again"
        )
    if remedies["rerun"]:
        hints.append(
            f"rerunning the same command resumes {_plural(remedies['rerun'], 'input')} "
            "still pending or never sent"
        )
    if remedies["uncertain"]:
        hints.append(
            f"{_plural(remedies['uncertain'], 'input')} lost their reply and the history "
            "showed no generation for them: a minute or more from now, --retry-uncertain "
            "looks again and submits those still missing (or check `getty-ai history`)"
        )
    if remedies["fix_input"]:
        hints.append(f"fix the {_plural(remedies['fix_input'], 'unusable input')}")
    if counts.images_failed:
        hints.append(
            f"rerunning saves the {_plural(counts.images_failed, 'image')} that failed, "
            "without buying anything twice"
        )
    return hints


def summary(
    result: BatchResult, job: BatchJob, resume_command: str, *, in_process_sandbox: bool = False
) -> str:
    """The one line printed when a batch ends.

    `in_process_sandbox`: the batch ran with ``--sandbox``, whose simulated service ends
    with the command (so there is nothing to resume against).
    """
    counts = result.counts
    total = counts.total
    if result.fatal is not None:
        return (
            f"Stopped: {describe(result.fatal)[0]}. Fix it, then resume with "
            f"--retry-failed added: {resume_command} --retry-failed"
        )
    if not result.complete:
        return _interrupted(result, job, resume_command, in_process_sandbox)
    head = f"{counts.done + counts.blocked} of {total} inputs succeeded in {counts.elapsed:.1f}s"
    if counts.blocked:
        head += f" ({counts.blocked} with every image blocked by policy)"
    parts = [head]
    if counts.replayed:
        parts.append(f"{counts.replayed} replayed from the journal")
    if counts.failed:
        details = []
        if counts.invalid:
            details.append(f"{counts.invalid} unusable lines")
        if counts.remedies["uncertain"]:
            details.append(f"{counts.remedies['uncertain']} uncertain")
        parts.append(f"{counts.failed} failed" + (f" ({', '.join(details)})" if details else ""))
    if counts.downloads:
        images = f"images in {job.out}: {counts.images_saved} saved"
        if counts.images_refetched:
            images += f", {counts.images_refetched} fetched again without buying"
        if counts.images_present:
            images += f", {counts.images_present} already there"
        if counts.images_failed:
            images += f", {counts.images_failed} failed"
        parts.append(images)
    line = "; ".join(parts) + f". Results: {job.results}"
    if counts.failed or counts.images_failed:
        line += f" ({'; '.join(_failure_hints(counts))})"
    return line
