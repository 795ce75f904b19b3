"""The sandbox tells the truth: served files match reported sizes; seeds vary by prompt."""

from __future__ import annotations

import struct
import zlib

import httpx
import pytest
from sandbox_helpers import Connect, generate

from getty_ai_async.sandbox import Sandbox


def png_header_and_rows(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG whose chunks, CRCs and image data length all check out."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, size = 8, b"", (0, 0)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height = size
    raw = zlib.decompress(idat)  # checks the Adler-32 of the whole image too
    assert len(raw) == height * (1 + 3 * width)
    assert all(raw[y * (1 + 3 * width)] <= 4 for y in range(height))
    return width, height


@pytest.mark.parametrize("aspect_ratio", ["1:1", "16:9", "9:16", "3:4"])
async def test_downloads_are_served_at_the_sizes_download_sizes_reports(
    client: httpx.AsyncClient, aspect_ratio: str
) -> None:
    generation_id = (await generate(client, aspect_ratio=aspect_ratio))["generation_request_id"]
    image = f"/v3/ai/image-generations/{generation_id}/images/0"
    reported = (await client.get(f"{image}/download-sizes")).json()["download_sizes"]
    assert {size["size_name"] for size in reported} == {"1k", "4k"}

    for size in reported:
        bought = await client.put(f"{image}/download", json={"size_name": size["size_name"]})
        assert bought.status_code == 200
        served = await client.get(bought.json()["url"])
        assert served.status_code == 200
        assert png_header_and_rows(served.content) == (size["width"], size["height"])
        assert len(served.content) < 200_000  # gradients: cheap to encode, cheap to send


async def test_first_generation_seed_depends_on_prompt_and_sandbox_seed(
    connect: Connect,
) -> None:
    async def first_seed(prompt: str, seed: int = 0) -> int:
        async with connect(Sandbox(pending_seconds=0, seed=seed)) as client:
            payload = await generate(client, prompt=prompt)
            return int(payload["seed"])

    fox, owl = await first_seed("a red fox"), await first_seed("an owl at night")

    assert fox != owl
    assert fox == await first_seed("a red fox")  # reproducible
    assert fox != await first_seed("a red fox", seed=1)
    assert 0 <= fox < 2**31


async def test_repeated_prompts_get_different_seeds_but_a_given_seed_is_kept(
    client: httpx.AsyncClient,
) -> None:
    seeds = [(await generate(client, prompt="a red fox"))["seed"] for _ in range(3)]
    assert len(set(seeds)) == 3
    assert (await generate(client, prompt="a red fox", seed=42))["seed"] == 42
