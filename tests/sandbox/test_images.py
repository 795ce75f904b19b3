"""PNG validity of every image the CDN serves, and the CDN's own rules."""

from __future__ import annotations

import struct
import zlib

import httpx
from sandbox_helpers import Connect, generate

from getty_ai_async.sandbox import Sandbox


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Check signature, chunk order and CRCs, IHDR and filters; return width, height, rows."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks.append((kind, body))
        pos += 12 + length
    assert pos == len(data)
    kinds = [kind for kind, _ in chunks]
    assert kinds[0] == b"IHDR"
    assert kinds[-1] == b"IEND"
    assert set(kinds[1:-1]) == {b"IDAT"}
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", chunks[0][1]
    )
    assert (depth, colour, compression, filtering, interlace) == (8, 2, 0, 0, 0)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = 3 * width
    assert len(raw) == height * (1 + stride)
    rows, previous = [], bytes(stride)
    for y in range(height):
        line = raw[y * (stride + 1) : (y + 1) * (stride + 1)]
        filter_type, encoded, row = line[0], line[1:], bytearray(stride)
        assert filter_type <= 4
        for i in range(stride):
            left = row[i - 3] if i >= 3 else 0
            up = previous[i]
            upper_left = previous[i - 3] if i >= 3 else 0
            predictor = (0, left, up, (left + up) // 2, _paeth(left, up, upper_left))[filter_type]
            row[i] = (encoded[i] + predictor) & 0xFF
        rows.append(bytes(row))
        previous = rows[-1]
    return width, height, rows


async def test_result_and_preview_urls_serve_valid_pngs_of_the_stated_size(
    client: httpx.AsyncClient,
) -> None:
    payload = await generate(client, aspect_ratio="9:16")
    for result in payload["results"]:
        image = await client.get(result["url"])
        assert image.status_code == 200
        assert image.headers["content-type"] == "image/png"
        width, height, rows = decode_png(image.content)
        assert (width, height) == (144, 256)
        assert len(set(rows)) > 1  # not a flat colour
        for preview in result["preview_urls"]:
            data = (await client.get(preview["image_url"])).content
            assert decode_png(data)[:2] == (preview["width"], preview["height"])


async def test_images_are_deterministic_per_prompt_seed_and_index(connect: Connect) -> None:
    async def images(prompt: str) -> list[bytes]:
        sandbox = Sandbox(pending_seconds=0)
        async with connect(sandbox) as client:
            payload = await generate(client, prompt=prompt, seed=7)
            return [(await client.get(r["url"])).content for r in payload["results"]]

    first = await images("a red fox")
    assert first == await images("a red fox")
    assert len(set(first)) == 4
    assert set(first).isdisjoint(await images("a blue fox"))


async def test_cdn_counts_requests_that_carry_credentials(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    url = (await generate(client))["results"][0]["url"]
    assert (await client.get(url)).status_code == 200  # client sends Api-Key + Authorization
    async with httpx.AsyncClient(transport=sandbox.transport()) as bare:
        assert (await bare.get(url)).status_code == 200
        assert (await bare.get(url, headers={"Api-Key": "key"})).status_code == 200
    assert sandbox.stats.cdn_requests == 3
    assert sandbox.stats.cdn_requests_with_credentials == 2


async def test_cdn_answers_404_for_unknown_images(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    generation_id = (await generate(client))["generation_request_id"]
    cdn = f"{sandbox.cdn_base_url}/cdn"
    for path in (
        f"images/{generation_id}/9.png",
        f"images/{generation_id}/x.png",
        f"images/{generation_id}/0.jpg",
        f"previews/{generation_id}/0/huge.png",
        "images/unknown/0.png",
        "files/unknown/small.png",
        "elsewhere",
    ):
        assert (await client.get(f"{cdn}/{path}")).status_code == 404, path
