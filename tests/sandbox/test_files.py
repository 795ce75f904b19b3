"""Uploads to by-image/uploads and file registrations."""

from __future__ import annotations

import httpx
import pytest
from sandbox_helpers import JPEG, PNG, Connect, upload

from getty_ai_async.sandbox import Sandbox


@pytest.mark.parametrize(("content_type", "content"), [("image/jpeg", JPEG), ("image/png", PNG)])
async def test_upload_stores_the_bytes(
    client: httpx.AsyncClient, sandbox: Sandbox, content_type: str, content: bytes
) -> None:
    reply = await client.put(
        "/v3/search/by-image/uploads/my%20mask.jpg",
        content=content,
        headers={"Content-Type": content_type},
    )
    assert reply.status_code == 200
    assert reply.content == b""
    assert sandbox.stats.uploads == 1


@pytest.mark.parametrize(
    ("content", "content_type", "message"),
    [
        (b"data", "text/plain", "Content-Type"),
        (b"data", None, "Content-Type"),
        (b"", "image/jpeg", "empty"),
        (b"x" * (10 * 1024 * 1024 + 1), "image/jpeg", "10MB"),
    ],
)
async def test_upload_refusals(
    client: httpx.AsyncClient, content: bytes, content_type: str | None, message: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    reply = await client.put("/v3/search/by-image/uploads/m.jpg", content=content, headers=headers)
    assert reply.status_code == 400
    assert message in reply.json()["message"]


async def test_upload_needs_credentials(sandbox: Sandbox) -> None:
    async with httpx.AsyncClient(
        transport=sandbox.transport(), base_url=sandbox.api_base_url
    ) as bare:
        reply = await bare.put(
            "/v3/search/by-image/uploads/m.jpg", content=b"x", headers={"Content-Type": "image/png"}
        )
    assert reply.status_code == 401


async def test_file_registration_round_trip(client: httpx.AsyncClient, sandbox: Sandbox) -> None:
    url = await upload(client, sandbox, "product.png")
    created = await client.post(
        "/beta/ai/file-registrations",
        json={"url": url, "rights_claimed": True, "category": "CustomerProduct"},
    )
    assert created.status_code == 200
    assert set(created.json()) == {"id"}
    registration_id = created.json()["id"]

    fetched = await client.get(f"/beta/ai/file-registrations/{registration_id}")
    assert fetched.status_code == 200
    assert set(fetched.json()) == {"id", "preview_urls"}
    assert fetched.json()["id"] == registration_id
    preview = fetched.json()["preview_urls"][0]
    assert set(preview) == {"preview_size", "image_url", "width", "height"}
    image = await client.get(preview["image_url"])
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"

    assert (await client.get("/beta/ai/file-registrations/unknown")).status_code == 404
    assert sandbox.stats.file_registrations == 1


async def test_file_registrations_are_per_api_key(connect: Connect) -> None:
    sandbox = Sandbox()
    async with connect(sandbox) as client, connect(sandbox, key="other") as other:
        url = await upload(client, sandbox)
        created = await client.post(
            "/beta/ai/file-registrations", json={"url": url, "rights_claimed": True}
        )
        registration_id = created.json()["id"]
        assert (
            await other.get(f"/beta/ai/file-registrations/{registration_id}")
        ).status_code == 404
        foreign = await other.post(
            "/beta/ai/file-registrations", json={"url": url, "rights_claimed": True}
        )
        assert foreign.status_code == 400


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rights_claimed": True}, "url"),
        ({"url": "UPLOADED"}, "rights_claimed"),
        ({"url": "UPLOADED", "rights_claimed": False}, "rights_claimed"),
        ({"url": "UPLOADED", "rights_claimed": "yes"}, "rights_claimed"),
        ({"url": "UPLOADED", "rights_claimed": True, "category": "Other"}, "category"),
        ({"url": "https://example.com/x.jpg", "rights_claimed": True}, "url"),
        ({"url": "MISSING", "rights_claimed": True}, "url"),
    ],
)
async def test_file_registration_refusals(
    client: httpx.AsyncClient, sandbox: Sandbox, body: dict[str, object], field: str
) -> None:
    uploaded = await upload(client, sandbox, "a.jpg")
    replacements = {"UPLOADED": uploaded, "MISSING": uploaded.replace("a.jpg", "b.jpg")}
    if isinstance(body.get("url"), str):
        body = {**body, "url": replacements.get(str(body["url"]), body["url"])}
    reply = await client.post("/beta/ai/file-registrations", json=body)
    assert reply.status_code == 400
    assert f"'{field}'" in reply.json()["message"]
