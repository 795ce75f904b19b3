"""Edges found in review: numbers past float32, sizes not bought, hosts for the CDN."""

from __future__ import annotations

import httpx
import pytest
from sandbox_helpers import generate

from getty_ai_async.sandbox import Sandbox
from getty_ai_async.sandbox._server import _urls


@pytest.mark.parametrize("value", [1e39, 1e308, -1e308])
async def test_numbers_past_float32_are_a_400_naming_the_field(
    client: httpx.AsyncClient, value: float
) -> None:
    reply = await client.post(
        "/v3/ai/image-generations/extend",
        json={"reference_asset_id": "1", "left_percentage": value},
    )
    assert reply.status_code == 400
    assert "left_percentage" in reply.json()["message"]


async def test_a_huge_but_valid_extension_keeps_a_sane_shape(client: httpx.AsyncClient) -> None:
    reply = await client.post(
        "/v3/ai/image-generations/extend",
        json={"reference_asset_id": "1", "left_percentage": 1e30},
    )
    assert reply.status_code == 200
    preview = reply.json()["results"][0]["preview_urls"][0]
    assert preview["width"] <= 8 * preview["height"]


async def test_the_cdn_serves_only_sizes_that_were_bought(
    sandbox: Sandbox, client: httpx.AsyncClient
) -> None:
    generation = await generate(client, prompt="a fox")
    path = f"/v3/ai/image-generations/{generation['generation_request_id']}/images/0/download"
    bought = await client.put(path, json={"size_name": "1k"})
    url = bought.json()["url"]
    assert (await client.get(url)).status_code == 200
    assert (await client.get(url.replace("/1k.png", "/4k.png"))).status_code == 404

    redownload = await client.post(
        "/v3/ai/redownloads",
        json={"generated_asset_id": bought.json()["generated_asset_id"], "size_name": "4k"},
    )
    assert (await client.get(redownload.json()["url"])).status_code == 200
    assert (await client.get(url)).status_code == 200  # still the 1k bought first


@pytest.mark.parametrize(
    ("host", "cdn"),
    [
        ("127.0.0.1", "http://localhost:8000"),
        ("localhost", "http://127.0.0.1:8000"),
        ("127.0.0.2", "http://2130706434:8000"),
        ("::1", "http://[0000:0000:0000:0000:0000:0000:0000:0001]:8000"),
    ],
)
def test_the_cdn_is_another_name_for_the_bound_address(host: str, cdn: str) -> None:
    served = _urls(host, 8000)
    assert served.cdn_base_url == cdn
    assert httpx.URL(served.cdn_base_url).host != httpx.URL(served.base_url).host
