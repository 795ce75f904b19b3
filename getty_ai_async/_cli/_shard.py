"""``getty-ai batch --shard I/K``: worker I of K takes the inputs whose key hashes to I.

Every worker reads the whole file and keeps its share, so K workers started on the same
file (on one machine or many) split it without talking to each other; with ``--redis``
they also share the account's pending cap. The key is the input's journal key (its own
``key``, or one derived from its content), so a rerun gives each input to the same
worker, whose journal knows it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator
from pathlib import Path

from ._errors import UsageError
from ._inputs import BatchInput, InputLine

__all__ = ["Shard", "parse_shard", "shard_input", "shard_of"]

Shard = tuple[int, int]
"""(index, count): worker `index` (0-based) of `count`."""


def parse_shard(value: str) -> Shard:
    """``I/K`` with 0 <= I < K."""
    index, slash, count = value.partition("/")
    try:
        shard = (int(index), int(count))
    except ValueError:
        shard = (-1, 0)
    if not slash or not 0 <= shard[0] < shard[1]:
        raise UsageError(f"--shard: expected I/K with 0 <= I < K (e.g. 0/4), got {value!r}")
    return shard


def shard_of(key: str, count: int) -> int:
    """Which of `count` workers takes the input with journal key `key` (stable everywhere)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % count


def shard_path(path: Path, shard: Shard) -> Path:
    """A default output name of one worker: ``results.jsonl`` -> ``results.1of4.jsonl``."""
    index, count = shard
    return path.with_name(f"{path.stem}.{index}of{count}{path.suffix}")


class _ShardedInput(BatchInput):
    def __init__(self, inner: BatchInput, shard: Shard) -> None:
        super().__init__(inner.source, inner.format, 0, inner._texts_read)
        self.shard = shard
        self.total = sum(1 for _ in self.lines())

    def lines(self) -> Generator[InputLine, None, None]:
        index, count = self.shard
        for line in super().lines():
            key = line.request.get("key") if isinstance(line.request, dict) else None
            # An unusable line has no key: its line number says which worker reports it.
            if shard_of(str(key) if key is not None else f"line {line.number}", count) == index:
                yield line


def shard_input(source: BatchInput, shard: Shard) -> BatchInput:
    """The inputs of `source` that worker ``shard[0]`` of ``shard[1]`` takes."""
    return _ShardedInput(source, shard)
