"""Download sizes, the PUT/GET download process, 409s and re-downloads."""

from __future__ import annotations

import struct

import httpx
import pytest
from sandbox_helpers import FROZEN, Connect, generate

from getty_ai_async.sandbox import Sandbox


def _png_size(data: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_download_sizes_follow_the_aspect_ratio(client: httpx.AsyncClient) -> None:
    generation_id = (await generate(client, aspect_ratio="16:9"))["generation_request_id"]
    reply = await client.get(f"/v3/ai/image-generations/{generation_id}/images/2/download-sizes")
    assert reply.status_code == 200
    assert reply.json() == {
        "download_sizes": [
            {"size_name": "1k", "width": 1024, "height": 576},
            {"size_name": "4k", "width": 4096, "height": 2304},
        ]
    }


async def test_download_answers_200_at_once_and_serves_a_png(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    generation_id = (await generate(client, aspect_ratio="3:4"))["generation_request_id"]
    path = f"/v3/ai/image-generations/{generation_id}/images/1/download"

    reply = await client.put(path, json={"size_name": "4k", "notes": "n", "project_code": "p"})
    assert reply.status_code == 200
    payload = reply.json()
    assert set(payload) == {"url", "generated_asset_id"}
    assert payload["url"].startswith(f"{sandbox.cdn_base_url}/cdn/")

    image = await client.get(payload["url"])
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert _png_size(image.content) == (3072, 4096)  # what download-sizes reports
    assert len(image.content) < 200_000
    assert sandbox.stats.downloads == 1

    again = await client.get(path)
    assert again.status_code == 200
    assert again.json() == payload


async def test_download_is_202_until_ready_and_409_while_in_progress(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=0, download_pending_seconds=3.0, time_scale=FROZEN)
    async with connect(sandbox) as client:
        generation_id = (await generate(client))["generation_request_id"]
        path = f"/v3/ai/image-generations/{generation_id}/images/0/download"

        assert (await client.get(path)).status_code == 404  # nothing started yet
        started = await client.put(path, json={"size_name": "1k"})
        assert started.status_code == 202
        assert started.content == b""
        busy = await client.put(path, json={"size_name": "1k"})
        assert busy.status_code == 409
        assert "in progress" in busy.json()["message"]
        polled = await client.get(path)
        assert polled.status_code == 202
        assert polled.content == b""

        sandbox.advance(3.0)
        done = await client.get(path)
        assert done.status_code == 200
        image = await client.get(done.json()["url"])
        assert _png_size(image.content) == (1024, 1024)

        # A finished download can be started again; the asset id stays.
        restarted = await client.put(path, json={"size_name": "4k"})
        assert restarted.status_code == 202
        sandbox.advance(3.0)
        assert (await client.get(path)).json()["generated_asset_id"] == done.json()[
            "generated_asset_id"
        ]


async def test_cdn_serves_a_download_only_once_it_is_ready(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=0, download_pending_seconds=0)
    async with connect(sandbox) as client:
        generation_id = (await generate(client))["generation_request_id"]
        url = f"{sandbox.cdn_base_url}/cdn/downloads/{generation_id}/0/1k.png"
        assert (await client.get(url)).status_code == 404
        path = f"/v3/ai/image-generations/{generation_id}/images/0/download"
        assert (await client.put(path, json={"size_name": "1k"})).status_code == 200
        assert (await client.get(url)).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "size_name"),
        ({"size_name": "2k"}, "size_name"),
        ({"size_name": None}, "size_name"),
        ({"size_name": "1k", "size": "1k"}, "size"),
    ],
)
async def test_download_validates_its_body(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    generation_id = (await generate(client))["generation_request_id"]
    reply = await client.put(
        f"/v3/ai/image-generations/{generation_id}/images/0/download", json=body
    )
    assert reply.status_code == 400
    assert f"'{field}'" in reply.json()["message"]


async def test_download_path_errors(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=5.0, time_scale=FROZEN)
    async with connect(sandbox) as client:
        pending = (await client.post("/v3/ai/image-generations", json={"prompt": "p"})).json()
        pending_path = f"/v3/ai/image-generations/{pending['generation_request_id']}/images/0"
        assert (await client.get(f"{pending_path}/download-sizes")).status_code == 404
        assert (
            await client.put(f"{pending_path}/download", json={"size_name": "1k"})
        ).status_code == 404

        sandbox.advance(5.0)
        for index, status in (
            ("4", 404),
            ("-1", 404),
            ("x", 400),
            ("1.0", 400),
            ("99999999999", 400),
        ):
            reply = await client.get(f"{pending_path[:-1]}{index}/download-sizes")
            assert reply.status_code == status, index
        unknown = "/v3/ai/image-generations/unknown/images/0/download"
        assert (await client.put(unknown, json={"size_name": "1k"})).status_code == 404


async def test_redownload(client: httpx.AsyncClient, sandbox: Sandbox) -> None:
    generation_id = (await generate(client))["generation_request_id"]
    downloaded = await client.put(
        f"/v3/ai/image-generations/{generation_id}/images/3/download", json={"size_name": "1k"}
    )
    asset_id = downloaded.json()["generated_asset_id"]

    reply = await client.post(
        "/v3/ai/redownloads",
        json={"generated_asset_id": asset_id, "size_name": "4k", "product_id": 3},
    )
    assert reply.status_code == 200
    assert reply.json()["generated_asset_id"] == asset_id
    assert reply.json()["url"].endswith("/3/4k.png")
    assert (await client.get(reply.json()["url"])).status_code == 200
    assert sandbox.stats.redownloads == 1

    unknown = await client.post(
        "/v3/ai/redownloads", json={"generated_asset_id": "nope", "size_name": "4k"}
    )
    assert unknown.status_code == 404
    invalid = await client.post("/v3/ai/redownloads", json={"generated_asset_id": asset_id})
    assert invalid.status_code == 400
    assert "'size_name'" in invalid.json()["message"]
    null_product = await client.post(
        "/v3/ai/redownloads",
        json={"generated_asset_id": asset_id, "size_name": "1k", "product_id": None},
    )
    assert null_product.status_code == 400

    sandbox.config.retention_seconds = 0.0
    sandbox.advance(1.0)
    gone = await client.post(
        "/v3/ai/redownloads", json={"generated_asset_id": asset_id, "size_name": "1k"}
    )
    assert gone.status_code == 410
