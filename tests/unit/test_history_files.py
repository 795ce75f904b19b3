"""`client.history` (lazy pagination), `client.files` and `client.uploads`."""

from __future__ import annotations

import datetime as dt
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
import respx

from getty_ai_async import AsyncGettyAI, FileRegistration, GenerationHistoryItem, errors

from ._helpers import assert_api_auth, body, url

HISTORY = url("/v3/ai/generation-history")


def history_page(ids: list[str], total: int) -> dict[str, Any]:
    return {
        "generations": [
            {
                "generation_request_id": gen_id,
                "seed": 1,
                "generation_date": "2025-01-02T03:04:05Z",
                "prompt": f"prompt {gen_id}",
                "generation_type": "text_to_image",
                "generation_options": {"aspect_ratio": "1:1", "mood": "warm"},
                "results": [{"index": 0, "is_blocked": False}],
                "user": {"username": "u"},
            }
            for gen_id in ids
        ],
        "result_count": total,
    }


@pytest.fixture
def three_pages(router: respx.MockRouter) -> respx.Route:
    pages = {
        "1": history_page(["g1", "g2"], 6),
        "2": history_page(["g3", "g4"], 6),
        "3": history_page(["g5", "g6"], 6),
    }

    def respond(request: Any) -> respx.MockResponse:
        return respx.MockResponse(200, json=pages[request.url.params["page"]])

    return router.get(HISTORY).mock(side_effect=respond)


async def test_list_fetches_lazily(client: AsyncGettyAI, three_pages: respx.Route) -> None:
    async with aclosing(client.history.list(page_size=2)) as items:  # type: ignore[type-var]
        first = await anext(items)
    assert first.generation_request_id == "g1"
    assert three_pages.call_count == 1
    assert three_pages.calls.last.request.url.params["page"] == "1"


async def test_list_second_page_only_when_needed(
    client: AsyncGettyAI, three_pages: respx.Route
) -> None:
    seen: list[str] = []
    async with aclosing(client.history.list(page_size=2)) as items:  # type: ignore[type-var]
        async for item in items:
            seen.append(item.generation_request_id)
            if len(seen) == 3:
                break
    assert seen == ["g1", "g2", "g3"]
    assert three_pages.call_count == 2


async def test_list_walks_every_page_then_stops(
    client: AsyncGettyAI, three_pages: respx.Route
) -> None:
    items = [item async for item in client.history.list(page_size=2)]
    assert [item.generation_request_id for item in items] == [f"g{i}" for i in range(1, 7)]
    assert all(isinstance(item, GenerationHistoryItem) for item in items)
    assert items[0].generation_date == dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert items[0].generation_options is not None
    assert items[0].generation_options.mood == "warm"
    assert [call.request.url.params["page"] for call in three_pages.calls] == ["1", "2", "3"]
    assert {call.request.url.params["page_size"] for call in three_pages.calls} == {"2"}


async def test_list_stops_on_empty_page(client: AsyncGettyAI, router: respx.MockRouter) -> None:
    route = router.get(HISTORY).mock(
        side_effect=[
            respx.MockResponse(200, json=history_page(["g1"], 99)),
            respx.MockResponse(200, json=history_page([], 99)),
        ]
    )
    items = [item async for item in client.history.list()]
    assert [item.generation_request_id for item in items] == ["g1"]
    assert route.call_count == 2


async def test_page_sends_every_filter(client: AsyncGettyAI, router: respx.MockRouter) -> None:
    route = router.get(HISTORY).respond(200, json=history_page(["g1"], 1))
    result = await client.history.page(
        2,
        page_size=50,
        date_start=dt.date(2025, 1, 1),
        date_end=dt.datetime(2025, 2, 1, 12, 0, tzinfo=dt.UTC),
        media_type="illustration",
        product_ids=[7, 8],
        company_generations=True,
    )
    request = route.calls.last.request
    assert_api_auth(request)
    params = request.url.params
    assert params["page"] == "2"
    assert params["page_size"] == "50"
    # The spec's date-time (RFC 3339), in UTC; a date starts at its first instant.
    assert params["date_start"] == "2025-01-01T00:00:00Z"
    assert params["date_end"] == "2025-02-01T12:00:00Z"
    assert params["media_type"] == "illustration"
    assert params.get_list("product_ids") == ["7", "8"]
    assert params["company_generations"] == "true"
    assert result.result_count == 1


async def test_page_leaves_unset_filters_out(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    route = router.get(HISTORY).respond(200, json=history_page([], 0))
    await client.history.page()
    assert dict(route.calls.last.request.url.params) == {"page": "1"}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"page": 0}, "page"),
        ({"page_size": 0}, "page_size"),
        ({"date_start": 20250101}, "date_start"),
    ],
)
async def test_page_validation(
    client: AsyncGettyAI, router: respx.MockRouter, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        await client.history.page(**kwargs)
    assert caught.value.field == field
    assert router.calls.call_count == 0


async def test_history_get(client: AsyncGettyAI, router: respx.MockRouter) -> None:
    route = router.get(url("/v3/ai/generation-history/g9")).respond(
        200, json=history_page(["g9"], 1)["generations"][0]
    )
    item = await client.history.get("g9")
    assert route.call_count == 1
    assert_api_auth(route.calls.last.request)
    assert item.generation_request_id == "g9"
    assert item.prompt == "prompt g9"


# ------------------------------------------------------------------------- files


async def test_files_register(client: AsyncGettyAI, router: respx.MockRouter) -> None:
    route = router.post(url("/beta/ai/file-registrations")).respond(200, json={"id": "F1"})
    upload_url = url("/v3/search/by-image/uploads/product.jpg")
    registration = await client.files.register(
        upload_url, rights_claimed=True, category="CustomerProduct"
    )
    request = route.calls.last.request
    assert body(request) == {
        "url": upload_url,
        "rights_claimed": True,
        "category": "CustomerProduct",
    }
    assert_api_auth(request)
    assert registration == FileRegistration(id="F1")


async def test_files_register_rejects_bad_category(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        await client.files.register("https://x", rights_claimed=True, category="Selfie")
    assert caught.value.field == "category"
    assert router.calls.call_count == 0


async def test_files_get(client: AsyncGettyAI, router: respx.MockRouter) -> None:
    route = router.get(url("/beta/ai/file-registrations/F1")).respond(
        200, json={"id": "F1", "preview_urls": [{"preview_size": "thumb", "image_url": "u"}]}
    )
    registration = await client.files.get("F1")
    assert route.call_count == 1
    assert_api_auth(route.calls.last.request)
    assert registration.preview_urls is not None
    assert registration.preview_urls[0].image_url == "u"


# ----------------------------------------------------------------------- uploads


async def test_upload_bytes(client: AsyncGettyAI, router: respx.MockRouter) -> None:
    route = router.put(url("/v3/search/by-image/uploads/mask.jpg")).respond(200)
    result = await client.uploads.upload(b"\xff\xd8jpeg", file_name="mask.jpg")
    request = route.calls.last.request
    assert request.method == "PUT"
    assert request.content == b"\xff\xd8jpeg"
    assert request.headers["Content-Type"] == "image/jpeg"
    assert_api_auth(request)
    assert result == url("/v3/search/by-image/uploads/mask.jpg")


async def test_upload_bytes_gets_a_unique_name(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    route = router.put(url__regex=r"https://api\.test/v3/search/by-image/uploads/[0-9a-f]{32}\.jpg")
    route.respond(200)
    first = await client.uploads.upload(b"a")
    second = await client.uploads.upload(b"b")
    assert route.call_count == 2
    assert first != second


async def test_upload_path(client: AsyncGettyAI, router: respx.MockRouter, tmp_path: Path) -> None:
    source = tmp_path / "my-mask.png"
    source.write_bytes(b"\x89PNG...")
    route = router.put(url("/v3/search/by-image/uploads/my-mask.png")).respond(200)
    result = await client.uploads.upload(source, content_type="image/png")
    request = route.calls.last.request
    assert request.content == b"\x89PNG..."
    assert request.headers["Content-Type"] == "image/png"
    assert result == url("/v3/search/by-image/uploads/my-mask.png")
    # str paths work too
    await client.uploads.upload(str(source), content_type="image/png")
    assert route.call_count == 2


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"source": b""}, "source"),
        ({"source": "/definitely/not/here.jpg"}, "source"),
        ({"source": b"x", "file_name": "../escape.jpg"}, "file_name"),
        ({"source": b"x", "file_name": "a?b.jpg"}, "file_name"),
    ],
)
async def test_upload_validation(
    client: AsyncGettyAI, router: respx.MockRouter, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        await client.uploads.upload(**kwargs)
    assert caught.value.field == field
    assert router.calls.call_count == 0
