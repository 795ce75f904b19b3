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


_UP_FILTER = b"\x02"
_ADLER_MOD = 65521
_BLOCK_BYTES = 1 << 18
"""Input compressed once and repeated as is (see `_zlib_of_runs`)."""


def _adler32_combine(first: int, second: int, second_length: int) -> int:
    """Adler-32 of A + B from those of A and B (zlib's ``adler32_combine``)."""
    remainder = second_length % _ADLER_MOD
    sum1 = first & 0xFFFF
    sum2 = (remainder * sum1) % _ADLER_MOD
    sum1 += (second & 0xFFFF) + _ADLER_MOD - 1
    sum2 += (first >> 16) + (second >> 16) + _ADLER_MOD - remainder
    sum1 %= _ADLER_MOD
    sum2 %= _ADLER_MOD
    return sum1 | (sum2 << 16)


def _adler32_repeated(adler: int, data: bytes, count: int) -> int:
    """Adler-32 after `count` more copies of `data`, in O(log count) steps."""
    unit, length = zlib.adler32(data), len(data)
    while count:
        if count & 1:
            adler = _adler32_combine(adler, unit, length)
        unit = _adler32_combine(unit, unit, length)
        length *= 2
        count >>= 1
    return adler


def _deflate_block(data: bytes) -> bytes:
    """Raw deflate of `data`, ending on a byte boundary with nothing to refer back to."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH)


def _zlib_of_runs(runs: list[tuple[bytes, int]]) -> bytes:
    """A zlib stream of ``data * count`` for each run, without compressing every copy.

    A full flush leaves a deflate block that refers to nothing before it, so a block of
    k copies, compressed once, can be repeated verbatim; the checksum is combined
    arithmetically. Even a 4096 x 4096 image costs a few milliseconds.
    """
    out = bytearray(b"\x78\x01")  # deflate, 32 KiB window
    adler = 1
    for data, count in runs:
        if count <= 0:
            continue
        per_block = max(1, min(count, _BLOCK_BYTES // len(data)))
        repeats, rest = divmod(count, per_block)
        out += _deflate_block(data * per_block) * repeats
        if rest:
            out += _deflate_block(data * rest)
        adler = _adler32_repeated(adler, data, count)
    out += zlib.compressobj(6, zlib.DEFLATED, -15).flush()  # the final, empty block
    out += struct.pack(">I", adler)
    return bytes(out)


@functools.lru_cache(maxsize=64)
def render_png(look: int, seed: int, index: int, width: int, height: int) -> bytes:
    """An RGB PNG of a background gradient with a differently shaded box in it.

    Rows fall into three bands (above, across and below the box). The first row of a
    band uses PNG's Sub filter (a run of pixels with a constant step is one repeated
    3-byte delta); every other row of the band uses the Up filter, which makes them all
    the same bytes: ``dy`` of each segment, repeated. So the image data is a handful of
    distinct rows, each repeated, and `_zlib_of_runs` encodes it in milliseconds at any
    size, to a few kilobytes per thousand pixels of height.
    """
    rng = random.Random(f"{look}:{seed}:{index}")
    background, box = _Gradient(rng), _Gradient(rng)
    x0, x1 = rng.randrange(max(1, width // 2)), rng.randrange(width // 2 + 1, width + 1)
    y0, y1 = rng.randrange(max(1, height // 2)), rng.randrange(height // 2 + 1, height + 1)
    plain = [(0, background)]
    boxed = [(0, background), (x0, box), (x1, background)]
    runs: list[tuple[bytes, int]] = []
    for top, bottom, segments in ((0, y0, plain), (y0, y1, boxed), (y1, height, plain)):
        if bottom <= top:
            continue
        spans = [
            (start, segments[i + 1][0] if i + 1 < len(segments) else width, gradient)
            for i, (start, gradient) in enumerate(segments)
        ]
        spans = [(start, end, gradient) for start, end, gradient in spans if end > start]
        first = bytearray(_SUB_FILTER)
        previous = b"\x00\x00\x00"
        for start, end, gradient in spans:
            first += _delta(gradient.at(start, top), previous)
            first += gradient.dx * (end - start - 1)
            previous = gradient.at(end - 1, top)
        runs.append((bytes(first), 1))
        rest = b"".join(gradient.dy * (end - start) for start, end, gradient in spans)
        runs.append((_UP_FILTER + rest, bottom - top - 1))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        _SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", _zlib_of_runs(runs))
        + _chunk(b"IEND", b"")
    )
