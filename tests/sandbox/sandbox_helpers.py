"""Assertions shared by the sandbox tests."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import httpx

from getty_ai_async.sandbox import Sandbox

Connect = Callable[..., contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]
"""The ``connect`` fixture: ``async with connect(sandbox, key=...) as client``."""

FROZEN = 1000.0
"""A time_scale under which real time barely moves the sandbox clock: only advance() does."""

# Keys of the spec's response schemas (all additionalProperties: false).
IMAGE_GENERATIONS_RESPONSE = {"generation_request_id", "seed", "results", "original_asset"}
IMAGE_DATA_RESPONSE = {"index", "is_blocked", "preview_urls", "url"}
PREVIEW_URL = {"preview_size", "image_url", "width", "height"}
HISTORY_ITEM = {
    "generation_request_id",
    "seed",
    "generation_date",
    "product_revoked_date",
    "prompt",
    "negative_prompt",
    "product_id",
    "notes",
    "project_code",
    "generation_type",
    "generation_options",
    "source_generation_request",
    "original_asset",
    "results",
    "user",
}


def assert_generation_shape(payload: dict[str, Any], count: int = 4) -> None:
    """``payload`` is a finished ImageGenerationsResponse with ``count`` results."""
    assert set(payload) <= IMAGE_GENERATIONS_RESPONSE
    assert isinstance(payload["generation_request_id"], str)
    assert isinstance(payload["seed"], int)
    assert [r["index"] for r in payload["results"]] == list(range(count))
    for result in payload["results"]:
        assert set(result) == IMAGE_DATA_RESPONSE
        if result["is_blocked"]:
            assert result["url"] is None
            assert result["preview_urls"] == []
        else:
            assert isinstance(result["url"], str)
            for preview in result["preview_urls"]:
                assert set(preview) == PREVIEW_URL


async def generate(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    """POST a text-to-image generation that must finish at once; its payload."""
    body.setdefault("prompt", "a red fox in snow")
    reply = await client.post("/v3/ai/image-generations", json=body)
    assert reply.status_code == 200, reply.text
    payload: dict[str, Any] = reply.json()
    return payload


JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(32)) + b"\xff\xd9"
"""Enough of a JPEG for the upload route, which checks the first bytes."""
PNG = b"\x89PNG\r\n\x1a\n" + bytes(32)


async def upload(
    client: httpx.AsyncClient, sandbox: Sandbox, name: str = "mask.jpg", data: bytes = JPEG
) -> str:
    """PUT ``data`` to the upload route; the URL to use as mask_url / registration url."""
    reply = await client.put(
        f"/v3/search/by-image/uploads/{name}", content=data, headers={"Content-Type": "image/jpeg"}
    )
    assert reply.status_code == 200, reply.text
    return f"{sandbox.api_base_url}/v3/search/by-image/uploads/{name}"
