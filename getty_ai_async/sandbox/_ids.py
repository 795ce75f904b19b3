"""Self-describing generation ids.

A generation request id carries every immutable fact the sandbox needs to answer for it
(creation and ready times, result count, blocked mask, seed, image shape), packed as
varints, signed with a keyed hash and base32-encoded. So a finished generation costs no
memory at all unless history is kept, and every lookup is O(1).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

__all__ = ["GenerationKey", "IdCodec"]

_TAG_SIZE = 4
_ID_PATTERN = re.compile(r"[a-z2-7]{8,120}")


@dataclass(frozen=True, slots=True)
class GenerationKey:
    """Immutable facts about one generation, recoverable from its id."""

    seq: int
    created_ms: int
    ready_ms: int
    count: int
    blocked: int
    """Bit ``i`` set means result ``i`` is blocked."""
    seed: int
    look: int
    """Picks the PNG pattern; derived from the prompt."""
    width: int
    """Width at the "4k" size (longest side 4096)."""
    height: int

    def is_blocked(self, index: int) -> bool:
        """Whether result ``index`` was blocked by the content policy."""
        return bool(self.blocked >> index & 1)

    def is_ready(self, now_ms: int) -> bool:
        """Whether the generation has finished at simulated time ``now_ms``."""
        return now_ms >= self.ready_ms


def _put_varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)


def _take_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]  # IndexError on truncated input, handled by the caller
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 70:
            raise ValueError("varint too long")


def _zigzag(value: int) -> int:
    return value * 2 if value >= 0 else -value * 2 - 1


def _unzigzag(value: int) -> int:
    return value // 2 if value % 2 == 0 else -(value + 1) // 2


class IdCodec:
    """Encodes GenerationKeys as opaque lower-case base32 ids and checks them on the way back."""

    def __init__(self, seed: int) -> None:
        self._secret = hashlib.sha256(f"getty-ai-sandbox ids {seed}".encode()).digest()

    def _tag(self, payload: bytes) -> bytes:
        return hashlib.blake2b(payload, key=self._secret, digest_size=_TAG_SIZE).digest()

    def encode(self, key: GenerationKey) -> str:
        """The id for ``key``."""
        payload = bytearray()
        for value in (
            key.seq,
            key.created_ms,
            key.ready_ms - key.created_ms,
            key.count,
            key.blocked,
            _zigzag(key.seed),
            key.look,
            key.width,
            key.height,
        ):
            _put_varint(payload, value)
        raw = bytes(payload) + self._tag(bytes(payload))
        return base64.b32encode(raw).decode("ascii").rstrip("=").lower()

    def decode(self, text: str) -> GenerationKey | None:
        """The key behind ``text``, or None when this sandbox never issued it."""
        if not _ID_PATTERN.fullmatch(text):
            return None
        try:
            raw = base64.b32decode(text + "=" * (-len(text) % 8), casefold=True)
        except (binascii.Error, ValueError):
            return None
        payload, tag = raw[:-_TAG_SIZE], raw[-_TAG_SIZE:]
        if len(payload) == 0 or self._tag(payload) != tag:
            return None
        fields: list[int] = []
        pos = 0
        try:
            for _ in range(9):
                value, pos = _take_varint(payload, pos)
                fields.append(value)
        except (IndexError, ValueError):
            return None
        if pos != len(payload):
            return None
        seq, created, delay, count, blocked, seed, look, width, height = fields
        return GenerationKey(
            seq=seq,
            created_ms=created,
            ready_ms=created + delay,
            count=count,
            blocked=blocked,
            seed=_unzigzag(seed),
            look=look,
            width=width,
            height=height,
        )
