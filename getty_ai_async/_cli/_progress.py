"""Batch progress: live counters, and three ways to show them (rich, plain lines, quiet)."""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["BatchCounts", "PlainReporter", "QuietReporter", "Reporter", "RichReporter"]

_PROMPT_WIDTH = 48


@dataclass
class BatchCounts:
    """What a batch has done so far: the only input of a display."""

    total: int
    """Inputs in the file."""
    downloads: bool = False
    done: int = 0
    """Inputs whose generation has at least one image (and whose line is written)."""
    blocked: int = 0
    """Inputs whose every image was blocked by policy."""
    failed: int = 0
    """Inputs that failed, unusable lines included."""
    invalid: int = 0
    """Unusable input lines (bad JSON, duplicate key)."""
    replayed: int = 0
    """Inputs answered from the journal of an earlier run."""
    pending: int = 0
    submitted: int = 0
    """Generation POSTs sent (a 429 and its retry count twice)."""
    rate_limited: int = 0
    images_saved: int = 0
    """Images bought and saved."""
    images_present: int = 0
    """Images already on disk from an earlier run (not downloaded again)."""
    images_refetched: int = 0
    """Images an earlier run had bought, fetched again without buying them again."""
    images_failed: int = 0
    images_unsaved: int = 0
    """Images left unsaved because the batch was stopped (a rerun saves them)."""
    images_queued: int = 0
    cut_submissions: int = 0
    """Generation POSTs cut off by a second Ctrl-C (their inputs are uncertain now)."""
    remedies: Counter[str] = field(default_factory=Counter)
    """Failed inputs by what can still get them done (see `_results.Remedy`)."""
    started: float = field(default_factory=time.monotonic)

    @property
    def finished(self) -> int:
        """Inputs with a result line."""
        return self.done + self.blocked + self.failed

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def submit_rate(self) -> float:
        """Generation POSTs per second since the start."""
        return self.submitted / max(self.elapsed, 1e-9)

    def of_total(self) -> str:
        """``finished/total``, padded so that lines of a run line up."""
        return f"{self.finished:>{len(str(self.total))}}/{self.total}"

    def status_line(self) -> str:
        """A one-line snapshot, for logs."""
        line = (
            f"{self.finished}/{self.total} finished: {self.done} done, {self.blocked} blocked, "
            f"{self.failed} failed, {self.pending} pending, {self.submit_rate:.1f} submits/s"
        )
        if self.downloads:
            saved = self.images_saved + self.images_refetched
            line += f"; images: {saved} saved, {self.images_failed} failed"
        return line


class Reporter(Protocol):
    """Shows a batch as it runs. Raising KeyboardInterrupt from `finished` stops the batch."""

    def start(self, counts: BatchCounts) -> None:
        """The batch begins; `counts` is updated in place as it runs."""

    def refresh(self) -> None:
        """The counters moved (also called a few times a second)."""

    def finished(self, record: dict[str, Any]) -> None:
        """One input's result line was written."""

    def note(self, message: str) -> None:
        """Something the user must see now (e.g. how Ctrl-C is being handled)."""

    def stop(self) -> None:
        """The batch ended (or stopped): leave the terminal as it was."""


def _short(prompt: str | None) -> str:
    if not prompt:
        return ""
    text = " ".join(prompt.split())
    return text if len(text) <= _PROMPT_WIDTH else text[: _PROMPT_WIDTH - 1] + "…"


def describe_record(record: dict[str, Any]) -> str:
    """``line 3: <id>, 4 images: "a red fox…"`` or ``line 7: <error>``."""
    where = f"line {record['line']}"
    if record["status"] == "failed":
        return f"{where}: {record['error']}"
    images = record.get("images", [])
    detail = f"{len(images)} image{'s' if len(images) != 1 else ''}"
    saved = sum(1 for image in images if "file" in image)
    if saved:
        detail += f", {saved} saved"
    if record.get("unsaved"):
        detail += f", {len(record['unsaved'])} not saved yet"
    if record.get("replayed"):
        detail += ", from journal"
    if record.get("download_error"):
        detail += f", download failed: {record['download_error']}"
    return f"{where}: {record['generation_request_id']} ({detail}) {_short(record['prompt'])}"


class QuietReporter:
    """Shows nothing but notes (on stderr); the caller prints the summary."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def start(self, counts: BatchCounts) -> None:
        """Quiet: no display to start."""

    def refresh(self) -> None:
        """Quiet: nothing to redraw."""

    def finished(self, record: dict[str, Any]) -> None:
        """Quiet: results go to the results file only."""

    def note(self, message: str) -> None:
        print(message, file=self._stream or sys.stderr, flush=True)

    def stop(self) -> None:
        """Quiet: no display to stop."""


class PlainReporter(QuietReporter):
    """One line per finished input and a status line every `status_every` seconds.

    For logs and pipes: no cursor movement, nothing redrawn.
    """

    def __init__(self, stream: TextIO | None = None, *, status_every: float = 10.0) -> None:
        super().__init__()
        self._out = stream
        self._status_every = status_every
        self._counts = BatchCounts(total=0)
        self._last_status = time.monotonic()

    def _print(self, text: str) -> None:
        print(text, file=self._out or sys.stdout, flush=True)

    def start(self, counts: BatchCounts) -> None:
        self._counts = counts
        self._last_status = time.monotonic()

    def refresh(self) -> None:
        now = time.monotonic()
        if now - self._last_status >= self._status_every:
            self._last_status = now
            self._print(f"status  {self._counts.status_line()}")

    def finished(self, record: dict[str, Any]) -> None:
        self._print(f"{record['status']:<7} [{self._counts.of_total()}] {describe_record(record)}")


class RichReporter:
    """A live progress bar with counters, rate and ETA; failures are printed above it."""

    def __init__(self, console: Console) -> None:
        self._counts = BatchCounts(total=0)
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<11}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            refresh_per_second=8,
        )
        self._inputs: TaskID | None = None
        self._images: TaskID | None = None

    def start(self, counts: BatchCounts) -> None:
        self._counts = counts
        self._inputs = self._progress.add_task("generations", total=counts.total, detail="")
        if counts.downloads:
            self._images = self._progress.add_task("images", total=0, detail="")
        self._progress.start()
        self.refresh()

    def refresh(self) -> None:
        counts = self._counts
        if self._inputs is not None:
            failed = f"[red]failed {counts.failed}[/]" if counts.failed else "failed 0"
            detail = (
                f"pending {counts.pending} · done {counts.done} · blocked {counts.blocked} · "
                f"{failed} · {counts.submit_rate:.1f} submits/s"
            )
            self._progress.update(self._inputs, completed=counts.finished, detail=detail)
        if self._images is not None:
            saved = counts.images_saved + counts.images_refetched
            handled = saved + counts.images_present + counts.images_failed
            self._progress.update(
                self._images,
                completed=handled,
                total=counts.images_queued,
                detail=f"saved {saved} · already there {counts.images_present}"
                f" · failed {counts.images_failed}",
            )

    def finished(self, record: dict[str, Any]) -> None:
        if record["status"] == "failed" or record.get("download_error"):
            self._progress.console.print(f"[red]failed[/]  {escape(describe_record(record))}")
        self.refresh()

    def note(self, message: str) -> None:
        self._progress.console.print(f"[yellow]{escape(message)}[/]")

    def stop(self) -> None:
        self.refresh()
        self._progress.stop()
