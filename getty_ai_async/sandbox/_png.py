"""Small deterministic PNG images, built with zlib and struct only."""

from __future__ import annotations

import functools
import random
import struct
import zlib

__all__ = ["fit", "render_png"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SUB_FILTER = b"\x01"


def fit(width: int, height: int, longest: int) -> tuple[int, int]:
    """Scale ``width`` x ``height`` so the longest side is ``longest`` (each side >= 1)."""
    scale = longest / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def _delta(after: bytes, before: bytes) -> bytes:
    return bytes((a - b) & 0xFF for a, b in zip(after, before, strict=True))


class _Gradient:
    """Colour ``base + x * dx + y * dy`` (per channel, mod 256)."""

    def __init__(self, rng: random.Random) -> None:
        self.base = bytes(rng.randrange(256) for _ in range(3))
        self.dx = bytes(rng.randrange(-3, 4) & 0xFF for _ in range(3))
        self.dy = bytes(rng.randrange(-3, 4) & 0xFF for _ in range(3))

    def at(self, x: int, y: int) -> bytes:
        return bytes(
            (b + x * dx + y * dy) & 0xFF
            for b, dx, dy in zip(self.base, self.dx, self.dy, strict=True)
        )


@functools.lru_cache(maxsize=512)
def render_png(look: int, seed: int, index: int, width: int, height: int) -> bytes:
    """An RGB PNG of a background gradient with a differently shaded box in it.

    Every row uses PNG's Sub filter, so a run of pixels with a constant step is one
    repeated 3-byte delta: building a row costs a few bytes operations, and the image
    compresses to a few kilobytes even at 512 px.
    """
    rng = random.Random(f"{look}:{seed}:{index}")
    background, box = _Gradient(rng), _Gradient(rng)
    x0, x1 = rng.randrange(max(1, width // 2)), rng.randrange(width // 2 + 1, width + 1)
    y0, y1 = rng.randrange(max(1, height // 2)), rng.randrange(height // 2 + 1, height + 1)
    rows = bytearray()
    for y in range(height):
        # (start x, gradient) segments of this row; each spans up to the next start.
        segments = [(0, background)]
        if y0 <= y < y1:
            segments += [(x0, box), (x1, background)]
        previous = b"\x00\x00\x00"
        rows += _SUB_FILTER
        for i, (start, gradient) in enumerate(segments):
            end = segments[i + 1][0] if i + 1 < len(segments) else width
            if end <= start:
                continue
            first = gradient.at(start, y)
            rows += _delta(first, previous)
            rows += gradient.dx * (end - start - 1)
            previous = gradient.at(end - 1, y)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        _SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(bytes(rows), 6))
        + _chunk(b"IEND", b"")
    )
