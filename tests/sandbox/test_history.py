"""GET /v3/ai/generation-history and /v3/ai/generation-history/{id}."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sandbox_helpers import FROZEN, HISTORY_ITEM, Connect, generate

from getty_ai_async.sandbox import Sandbox


async def _history(client: httpx.AsyncClient, **params: str | int | list[str]) -> dict[str, Any]:
    reply = await client.get("/v3/ai/generation-history", params=params)
    assert reply.status_code == 200, reply.text
    payload: dict[str, Any] = reply.json()
    return payload


def _ids(payload: dict[str, Any]) -> list[str]:
    return [g["generation_request_id"] for g in payload["generations"]]


async def test_history_pages_newest_first(client: httpx.AsyncClient) -> None:
    made = [(await generate(client, prompt=f"p{i}"))["generation_request_id"] for i in range(5)]
    newest_first = made[::-1]

    first = await _history(client, page_size=2)
    assert first["result_count"] == 5
    assert _ids(first) == newest_first[:2]
    assert _ids(await _history(client, page_size=2, page=2)) == newest_first[2:4]
    assert _ids(await _history(client, page_size=2, page=3)) == newest_first[4:]
    assert _ids(await _history(client, page_size=2, page=4)) == []
    assert _ids(await _history(client)) == newest_first  # default page size 30


async def test_history_item_shape(client: httpx.AsyncClient) -> None:
    source = await generate(
        client,
        prompt="a fox",
        negative_prompt="dogs",
        aspect_ratio="4:3",
        media_type="photography",
        mood="warm",
        product_id=5,
        notes="n",
        project_code="pc",
        seed=9,
    )
    source_id = source["generation_request_id"]
    item = (await client.get(f"/v3/ai/generation-history/{source_id}")).json()
    assert set(item) <= HISTORY_ITEM
    assert item["generation_request_id"] == source_id
    assert item["generation_type"] == "text_to_image"
    assert item["prompt"] == "a fox"
    assert item["negative_prompt"] == "dogs"
    assert item["seed"] == 9
    assert item["product_id"] == 5
    assert (item["notes"], item["project_code"]) == ("n", "pc")
    assert item["generation_options"] == {
        "media_type": "photography",
        "aspect_ratio": "4:3",
        "mood": "warm",
    }
    assert "source_generation_request" not in item
    datetime.fromisoformat(item["generation_date"])
    assert item["generation_date"].endswith("Z")
    assert [set(r) for r in item["results"]] == [{"index", "is_blocked", "preview_urls"}] * 4

    variation = await client.post(
        f"/v3/ai/image-generations/{source_id}/images/2/variations", json={}
    )
    derived = (
        await client.get(f"/v3/ai/generation-history/{variation.json()['generation_request_id']}")
    ).json()
    assert derived["generation_type"] == "variation"
    assert derived["source_generation_request"] == {
        "source_generation_request_id": source_id,
        "source_generation_result_index": 2,
    }

    removal = await client.post(
        "/v3/ai/image-generations/background-removal", json={"reference_asset_id": "777"}
    )
    by_asset = (
        await client.get(f"/v3/ai/generation-history/{removal.json()['generation_request_id']}")
    ).json()
    assert by_asset["generation_type"] == "background_removal"
    assert by_asset["original_asset"] == {"id": "777"}


async def test_pending_generations_are_listed_without_results(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=5.0, time_scale=FROZEN)
    async with connect(sandbox) as client:
        await client.post("/v3/ai/image-generations", json={"prompt": "p"})
        (item,) = (await _history(client))["generations"]
        assert item["results"] == []
        sandbox.advance(5.0)
        (item,) = (await _history(client))["generations"]
        assert len(item["results"]) == 4


async def test_history_filters(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=0, require_token=False)
    async with connect(sandbox, token=False) as client:
        early = await generate(client, media_type="illustration", product_id=1)
        sandbox.advance(3 * 86400)
        late = await generate(client, media_type="photography", product_id=2)
        untyped = await generate(client)
        early_id, late_id = early["generation_request_id"], late["generation_request_id"]
        early_date = datetime.fromisoformat(
            (await client.get(f"/v3/ai/generation-history/{early_id}")).json()["generation_date"]
        )

        next_day = (early_date + timedelta(days=1)).isoformat()
        after = await _history(client, date_start=next_day)
        assert _ids(after) == [untyped["generation_request_id"], late_id]
        assert after["result_count"] == 2
        before = await _history(client, date_end=(early_date + timedelta(seconds=1)).isoformat())
        assert _ids(before) == [early_id]
        assert _ids(await _history(client, media_type="illustration")) == [early_id]
        assert _ids(await _history(client, product_ids="2")) == [late_id]
        # Generations made without product_id are recorded against the default product 1.
        both = await _history(client, product_ids=["1", "2"])
        assert _ids(both) == [untyped["generation_request_id"], late_id, early_id]


async def test_history_is_per_account(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=0)
    async with connect(sandbox) as client, connect(sandbox, key="other") as other:
        generation_id = (await generate(client))["generation_request_id"]
        assert (await _history(other))["result_count"] == 0
        assert (await other.get(f"/v3/ai/generation-history/{generation_id}")).status_code == 404


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"page": "0"}, 400, "page"),
        ({"page": "x"}, 400, "page"),
        ({"page_size": "1001"}, 400, "page_size"),
        ({"page_size": "0"}, 400, "page_size"),
        ({"date_start": "yesterday"}, 400, "date_start"),
        ({"date_end": "2024-13-01"}, 400, "date_end"),
        ({"media_type": "video"}, 400, "media_type"),
        ({"product_ids": "a"}, 400, "product_ids"),
        ({"company_generations": "maybe"}, 400, "company_generations"),
        ({"company_generations": "true"}, 403, "Company"),
    ],
)
async def test_history_query_refusals(
    client: httpx.AsyncClient, params: dict[str, str], status: int, field: str
) -> None:
    reply = await client.get("/v3/ai/generation-history", params=params)
    assert reply.status_code == status
    assert field in reply.json()["message"]


async def test_unknown_history_item_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v3/ai/generation-history/unknown")).status_code == 404


async def test_keep_history_false_records_nothing(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=0, keep_history=False)
    async with connect(sandbox) as client:
        generation_id = (await generate(client))["generation_request_id"]
        assert await _history(client) == {"generations": [], "result_count": 0}
        assert (await client.get(f"/v3/ai/generation-history/{generation_id}")).status_code == 404
        # The generation itself is still served: its id says everything needed.
        assert (await client.get(f"/v3/ai/image-generations/{generation_id}")).status_code == 200
