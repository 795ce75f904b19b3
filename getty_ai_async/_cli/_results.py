"""The batch results file: one JSON line per input, written as each input finishes."""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from .._fanout import GenerationOutcome
from ..errors import (
    APIStatusError,
    GenerationTimeoutError,
    RateLimitError,
    RecordedError,
    SubmissionUncertainError,
    ValidationError,
)
from ._inputs import InputLine

__all__ = [
    "Remedy",
    "ResultsWriter",
    "Status",
    "bad_line_record",
    "outcome_record",
    "remedy_of",
    "status_of",
]

Status = Literal["done", "blocked", "failed"]

Remedy = Literal["retry_failed", "rerun", "fix_input", "uncertain"]
"""What gets a failed input done, given how the journal left it:

- ``retry_failed``: refused for sure (recorded as failed): ``--retry-failed`` submits it
  again;
- ``rerun``: nothing is lost and the same command picks it up (still pending at the
  service, or a 429 that left it unsent);
- ``fix_input``: the input itself is unusable;
- ``uncertain``: the POST's reply was lost and the history showed no generation for it
  yet; ``--retry-uncertain`` looks again and submits it if still missing.
"""

# Poll errors after which the journal keeps the generation pending (see GenerationRun).
_POLL_GONE = frozenset({404, 410})


def status_of(outcome: GenerationOutcome) -> Status:
    """``blocked`` when the generation came back with every image blocked by policy."""
    if outcome.generation is None:
        return "failed"
    return "done" if outcome.generation.images else "blocked"


def remedy_of(outcome: GenerationOutcome) -> Remedy | None:
    """How a failed input can still be done (None when it did not fail)."""
    error = outcome.error
    if error is None:
        return None
    if isinstance(error, SubmissionUncertainError):
        return "uncertain"
    if isinstance(error, ValidationError) or outcome.request is None:
        return "fix_input"
    if isinstance(error, RecordedError):
        return "retry_failed"  # replayed from the journal, where it is recorded as failed
    if isinstance(error, GenerationTimeoutError | RateLimitError):
        return "rerun"
    if (
        isinstance(error, APIStatusError)
        and error.response.request.method == "GET"
        and error.status_code not in _POLL_GONE
    ):
        return "rerun"  # a poll refused (401, 403, 400): the generation stays pending
    return "retry_failed"


def outcome_record(
    line: int,
    outcome: GenerationOutcome,
    *,
    files: list[str | None] | None = None,
    download_error: str | None = None,
    unsaved: list[int] | None = None,
) -> dict[str, Any]:
    """The result line of one input; `files` lines up with the generation's images.

    `unsaved` lists the images that were to be saved but were not (the batch was
    stopped first); a rerun saves them.
    """
    record: dict[str, Any] = {
        "line": line,
        "key": outcome.key,
        "status": status_of(outcome),
        "prompt": outcome.request.prompt if outcome.request is not None else None,
    }
    generation = outcome.generation
    if generation is not None:
        images = generation.images
        saved = files or [None] * len(images)
        record["generation_request_id"] = generation.generation_request_id
        record["seed"] = generation.seed
        record["images"] = [
            {"index": image.index, "url": image.url} | ({"file": file} if file else {})
            for image, file in zip(images, saved, strict=True)
        ]
        record["blocked"] = [image.index for image in generation.blocked]
    if outcome.error is not None:
        # A polling timeout still names the generation, so it can be fetched later.
        pending_id = getattr(outcome.error, "generation_request_id", None)
        if pending_id is not None:
            record["generation_request_id"] = pending_id
        error = outcome.error
        record["error_type"] = (
            error.kind if isinstance(error, RecordedError) else type(error).__name__
        )
        record["error"] = str(error)
    if download_error is not None:
        record["download_error"] = download_error
    if unsaved:
        record["unsaved"] = unsaved
    record["replayed"] = outcome.replayed
    return record


def bad_line_record(line: InputLine) -> dict[str, Any]:
    """The result line of an input line that could not be parsed."""
    return {
        "line": line.number,
        "key": None,
        "status": "failed",
        "prompt": None,
        "error_type": "InvalidLine",
        "error": line.error,
        "replayed": False,
    }


class ResultsWriter:
    """Writes result lines, flushed one by one so the file is useful during a long run."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = path.open("w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
