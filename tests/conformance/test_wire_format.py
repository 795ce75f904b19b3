"""The client's requests and the sandbox's replies, validated against the OpenAPI spec.

openapi-core checks every request the client sends and every reply the sandbox gives
during a tour of all 19 operations (18 paths), so neither side can drift from the wire
format unnoticed. The rules the spec states but a lenient simulator would not enforce
(JSON media types, image uploads, date-times, non-nullable enums) are tested directly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import httpx
import pytest

from getty_ai_async import AsyncGettyAI, errors
from getty_ai_async._models import Category
from getty_ai_async.sandbox import Sandbox

from ._spec import SpecCheckingTransport, json_body_operations, operations

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(48)) + b"\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(48)
FROZEN = 1e9
"""time_scale that stops the sandbox's clock: only `advance` moves it."""


def checked_client(sandbox: Sandbox) -> tuple[AsyncGettyAI, SpecCheckingTransport]:
    transport = SpecCheckingTransport(sandbox.transport(), httpx.URL(sandbox.api_base_url).host)
    client = AsyncGettyAI(
        api_key="conformance-key",
        api_secret="conformance-secret",
        base_url=sandbox.api_base_url,
        token_url=sandbox.token_url,
        transport=transport,
        poll_interval=0.01,
        max_retries=0,
    )
    return client, transport


async def test_every_operation_sent_and_answered_as_the_spec_says() -> None:
    sandbox = Sandbox(pending_seconds=0, download_pending_seconds=0, blocked_rate=0.3, seed=5)
    client, spec = checked_client(sandbox)
    async with client:
        generation = await client.generate("a red fox in snow", aspect_ratio="16:9", mood="warm")
        plain = await client.generate("a lighthouse at dusk")  # no options: none may be null
        gid = plain.generation_request_id
        await client.generations.get(generation.generation_request_id)
        await client.downloads.sizes(gid, 0)
        bought = await client.downloads.create(gid, 0, size_name="1k")
        await client.downloads.get(gid, 0)
        assert bought.generated_asset_id is not None
        await client.downloads.redownload(bought.generated_asset_id, size_name="1k")
        await client.generations.variations(gid, 1, notes="n")

        mask = await client.uploads.upload(JPEG, file_name="mask.jpg")
        product = await client.uploads.upload(
            PNG, file_name="product.png", content_type="image/png"
        )
        await client.generations.refine(
            generation_request_id=gid, index=0, mask_url=mask, prompt="a hat"
        )
        await client.generations.extend(asset_id="1234567", left_percentage=0.2, prompt="sea")
        await client.generations.remove_background(generation_request_id=gid, index=2)
        await client.generations.remove_object(asset_id="1234567", mask_url=mask)
        reference = await client.files.register(
            url=mask, rights_claimed=True, category=Category.IMAGE_REFERENCE
        )
        await client.files.get(reference.id)
        await client.generations.influence_color(
            file_registration_id=reference.id, prompt="autumn", noise_level=0.4, seed=7
        )
        await client.generations.influence_composition(
            generation_request_id=gid, index=0, prompt="city", influence_level=0.6
        )
        registered = await client.files.register(
            url=product, rights_claimed=True, category=Category.CUSTOMER_PRODUCT
        )
        await client.generations.generate_background(
            file_registration_id=registered.id, prompt="on a beach", top_percentage=0.1
        )

        # History, with every filter, dates given as date, naive datetime and string.
        items = [
            item
            async for item in client.history.list(
                page_size=3,
                date_start=dt.date(2020, 1, 1),
                date_end=dt.datetime(2099, 1, 1, 12, 0),
                product_ids=[1, 2],
            )
        ]
        assert len(items) == sandbox.stats.submissions
        await client.history.page(date_start="2020-01-01", media_type="photography")
        await client.history.get(gid)

        # Errors are answered with documented statuses too.
        with pytest.raises(errors.NotFoundError):
            await client.generations.get("a" * 36)
        with pytest.raises(errors.PermissionDeniedError):
            await client.history.page(company_generations=True)

    assert spec.problems() == []
    assert spec.operations_seen() == {(method, path) for method, path, _ in operations()}


async def test_pending_replies_and_gone_generations_are_as_the_spec_says() -> None:
    sandbox = Sandbox(pending_seconds=5, download_pending_seconds=5, time_scale=FROZEN)
    client, spec = checked_client(sandbox)
    async with client:
        pending = await client.generations.create("an owl", wait=False)
        assert pending.is_pending
        assert (await client.generations.get(pending.generation_request_id)).is_pending
        sandbox.advance(5)
        gid = pending.generation_request_id
        started = await client.downloads.create(gid, 0, size_name="4k", wait=False)
        assert started.is_pending
        assert (await client.downloads.get(gid, 0)).is_pending
        sandbox.advance(181 * 86_400)  # past the six months a generation is kept
        with pytest.raises(errors.GoneError):
            await client.generations.get(gid)

    assert spec.problems() == []
    assert {exchange.status for exchange in spec.exchanges} >= {202, 410}


# -------------------------------------------------------------- rules the spec states


@pytest.fixture
async def raw(sandbox: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    """An authenticated httpx client of `sandbox`, sending exactly what a test says."""
    async with httpx.AsyncClient(
        transport=sandbox.transport(), base_url=sandbox.api_base_url
    ) as client:
        reply = await client.post(
            sandbox.token_url,
            data={"grant_type": "client_credentials", "client_id": "k", "client_secret": "s"},
        )
        client.headers["Api-Key"] = "k"
        client.headers["Authorization"] = f"Bearer {reply.json()['access_token']}"
        yield client


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox(pending_seconds=0, download_pending_seconds=0)


@pytest.mark.parametrize(("method", "path"), json_body_operations())
@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", None])
async def test_json_bodies_in_other_media_types_are_refused(
    raw: httpx.AsyncClient, method: str, path: str, content_type: str | None
) -> None:
    url = path.replace("{generationRequestId}", "a" * 36).replace("{index}", "0")
    request = raw.build_request(method, url, content=b'{"prompt": "a fox", "size_name": "1k"}')
    request.headers.pop("Content-Type", None)
    if content_type is not None:
        request.headers["Content-Type"] = content_type

    reply = await raw.send(request)

    assert reply.status_code == 415, reply.text
    assert "Content-Type" in reply.json()["message"]


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "text/json", "application/x+json"],
)
async def test_json_bodies_in_the_specs_media_types_are_read(
    raw: httpx.AsyncClient, sandbox: Sandbox, content_type: str
) -> None:
    reply = await raw.post(
        "/v3/ai/image-generations",
        content=b'{"prompt": "a fox"}',
        headers={"Content-Type": content_type},
    )

    assert reply.status_code == 200, reply.text
    assert sandbox.stats.submissions == 1


@pytest.mark.parametrize(
    ("content_type", "content", "status"),
    [
        ("image/jpeg", JPEG, 200),
        ("image/png", PNG, 200),
        ("image/jpeg", PNG, 400),
        ("image/png", JPEG, 400),
        ("image/jpeg", b"any bytes at all", 400),
        ("image/png", b"<svg></svg>", 400),
    ],
)
async def test_uploads_must_be_the_image_they_claim_to_be(
    raw: httpx.AsyncClient, content_type: str, content: bytes, status: int
) -> None:
    reply = await raw.put(
        "/v3/search/by-image/uploads/mask",
        content=content,
        headers={"Content-Type": content_type},
    )

    assert reply.status_code == status, reply.text


async def test_history_dates_are_date_times(raw: httpx.AsyncClient) -> None:
    history = "/v3/ai/generation-history"
    for accepted in ("2020-01-01T00:00:00Z", "2020-01-01T10:00:00.5+02:00"):
        assert (await raw.get(history, params={"date_start": accepted})).status_code == 200
    for refused in ("2020-01-01", "2020-01-01T00:00:00", "yesterday"):
        reply = await raw.get(history, params={"date_end": refused})
        assert reply.status_code == 400, refused
        assert "date_end" in reply.json()["message"]


async def test_client_sends_history_dates_as_date_times() -> None:
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 1800})
        return httpx.Response(200, json={"generations": [], "result_count": 0})

    async with AsyncGettyAI(
        api_key="k", api_secret="s", transport=httpx.MockTransport(record)
    ) as client:
        await client.history.page(date_start=dt.date(2020, 1, 1), date_end=dt.date(2020, 1, 31))
        async for _ in client.history.list(date_start=dt.datetime(2020, 1, 1, 8, 30)):
            pass
        with pytest.raises(errors.ValidationError, match="date_end"):
            await client.history.page(date_end="the day after")

    pages = [request for request in sent if "generation-history" in request.url.path]
    assert [dict(page.url.params) for page in pages] == [
        {
            "page": "1",
            "date_start": "2020-01-01T00:00:00Z",
            "date_end": "2020-01-31T23:59:59.999999Z",
        },
        {"page": "1", "date_start": "2020-01-01T08:30:00Z"},
    ]


async def test_history_generation_options_leave_out_what_was_not_given(
    raw: httpx.AsyncClient,
) -> None:
    await raw.post("/v3/ai/image-generations", json={"prompt": "a fox"})
    await raw.post("/v3/ai/image-generations", json={"prompt": "an owl", "mood": "warm"})

    items = (await raw.get("/v3/ai/generation-history")).json()["generations"]

    options = [item["generation_options"] for item in items]
    assert options == [{"aspect_ratio": "1:1", "mood": "warm"}, {"aspect_ratio": "1:1"}]
    assert all(None not in item.values() for item in options)
