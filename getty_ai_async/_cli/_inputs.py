"""Batch input: one prompt a line, or JSON Lines of request objects, read lazily.

In both formats blank lines and lines starting with ``#`` are skipped; the rest keep
their 1-based line numbers so that results and errors can point back at the file.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from ._errors import UsageError

__all__ = ["STDIN", "BatchInput", "InputFormat", "InputLine", "open_input"]

STDIN = "-"
_JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})


class InputFormat(StrEnum):
    TEXT = "text"
    JSONL = "jsonl"


@dataclass(frozen=True, slots=True)
class InputLine:
    """One input: a request for `generate_many`, or why its line is unusable."""

    number: int
    request: str | dict[str, Any] | None
    error: str | None = None


def _meaningful(raw: Iterable[bytes], name: str) -> Iterator[tuple[int, str]]:
    """(line number, stripped text) of each line that is neither blank nor a comment."""
    for number, data in enumerate(raw, 1):
        try:
            text = data.decode("utf-8-sig" if number == 1 else "utf-8").strip()
        except UnicodeDecodeError:
            raise UsageError(f"{name}: line {number} is not UTF-8 text") from None
        if text and not text.startswith("#"):
            yield number, text


class _JsonlParser:
    """Turns JSONL lines into request dicts; remembers keys to refuse duplicates."""

    def __init__(self) -> None:
        self._keys: dict[str, int] = {}

    def parse(self, number: int, text: str) -> InputLine:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            return InputLine(number, None, f"invalid JSON: {exc.msg} (column {exc.colno})")
        except (RecursionError, ValueError) as exc:
            return InputLine(number, None, f"unusable JSON: {type(exc).__name__}")
        if not isinstance(value, dict):
            return InputLine(number, None, f"expected a JSON object, got {type(value).__name__}")
        key = value.get("key")
        if key is None:
            return InputLine(number, value)
        if isinstance(key, bool) or not isinstance(key, str | int):
            return InputLine(number, None, "'key' must be a string or an integer")
        # A repeated key would share one journal record, i.e. one result for two inputs.
        first = self._keys.setdefault(str(key), number)
        if first != number:
            return InputLine(number, None, f"duplicate key {str(key)!r} (first on line {first})")
        return InputLine(number, {**value, "key": str(key)})


class BatchInput:
    """A batch file (or stdin, ``-``): its format, its size when known, its lines."""

    def __init__(
        self,
        source: str,
        input_format: InputFormat,
        total: int,
        texts: list[tuple[int, str]] | None = None,
    ) -> None:
        self.source = source
        self.format = input_format
        self.total = total
        """Number of inputs (meaningful lines)."""
        self._texts_read = texts

    def lines(self) -> Generator[InputLine, None, None]:
        """Every input in file order, parsed lazily (the file is read as it is consumed).

        An input without a ``key`` gets one from its content and how many times the same
        content came before, not from its position: fixing a bad line, or inserting one,
        must not change the journal keys of the others (a changed key means paying again).
        """
        parser = _JsonlParser()
        seen: Counter[str] = Counter()
        for number, text in self._texts():
            if self.format is InputFormat.TEXT:
                line = InputLine(number, {"prompt": text})
            else:
                line = parser.parse(number, text)
            if isinstance(line.request, dict) and "key" not in line.request:
                digest = hashlib.sha256(
                    json.dumps(line.request, sort_keys=True).encode()
                ).hexdigest()[:20]
                seen[digest] += 1
                line = InputLine(number, {**line.request, "key": f"{digest}#{seen[digest]}"})
            yield line

    def _texts(self) -> Iterator[tuple[int, str]]:
        if self._texts_read is not None:
            yield from self._texts_read
            return
        with _open(self.source) as file:
            yield from _meaningful(file, self.source)


def _open(source: str) -> IO[bytes]:
    try:
        return Path(source).open("rb")
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror or exc}") from None


def _sniff(first: str | None, source: str) -> InputFormat:
    if Path(source).suffix.lower() in _JSONL_SUFFIXES:
        return InputFormat.JSONL
    if Path(source).suffix.lower() == ".txt" or first is None:
        return InputFormat.TEXT
    return InputFormat.JSONL if first.startswith("{") else InputFormat.TEXT


def open_input(source: str, input_format: InputFormat | None = None) -> BatchInput:
    """Check that `source` is readable UTF-8, count its inputs and settle its format.

    The format comes from `input_format`, else the extension (``.jsonl``/``.ndjson``,
    ``.txt``), else the first input line (``{`` means JSONL). Stdin is read whole here:
    it can be read only once, and a pipe read later would block the event loop.
    """
    if source == STDIN:
        texts = list(_meaningful(sys.stdin.buffer, "stdin"))
        found = input_format or _sniff(texts[0][1] if texts else None, source)
        return BatchInput(source, found, len(texts), texts)
    if Path(source).is_dir():
        raise UsageError(f"cannot read {source}: it is a directory")
    if Path(source).exists() and not Path(source).is_file():
        # A pipe, FIFO or process substitution can be read once only: read it whole now.
        with _open(source) as file:
            texts = list(_meaningful(file, source))
        found = input_format or _sniff(texts[0][1] if texts else None, source)
        return BatchInput(source, found, len(texts), texts)
    total = 0
    first: str | None = None
    with _open(source) as file:
        for _, text in _meaningful(file, source):
            total += 1
            if first is None:
                first = text
    return BatchInput(source, input_format or _sniff(first, source), total)
