"""`client.generations`: every endpoint's 200 and 202 paths, polling and its deadline."""

from __future__ import annotations

from typing import Any

import pytest
import respx

from getty_ai_async import AsyncGettyAI, GeneratedImage, Generation, GenerationRequest, errors

from ._helpers import API_KEY, GEN_ID, ClientFactory, assert_api_auth, body, finished, pending, url

MASK = url("/v3/search/by-image/uploads/mask.jpg")
REF = {"generation_request_id": "gen-src", "index": 1}

# (method, kwargs, path, exact JSON body expected on the wire)
ENDPOINTS: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
    (
        "create",
        {
            "prompt": "a red fox in snow",
            "negative_prompt": "dogs",
            "seed": 7,
            "aspect_ratio": "16:9",
            "media_type": "photography",
            "mood": "black_and_white",
            "lens_type": "telephoto",
            "depth_of_field": "shallow",
            "product_id": 3,
            "project_code": "PC-1",
            "notes": "n",
        },
        "/v3/ai/image-generations",
        {
            "prompt": "a red fox in snow",
            "negative_prompt": "dogs",
            "seed": 7,
            "aspect_ratio": "16:9",
            "media_type": "photography",
            "mood": "black_and_white",
            "lens_type": "telephoto",
            "depth_of_field": "shallow",
            "product_id": 3,
            "project_code": "PC-1",
            "notes": "n",
        },
    ),
    (
        "variations",
        {"generation_request_id": "gen-src", "index": 2, "product_id": 5},
        "/v3/ai/image-generations/gen-src/images/2/variations",
        {"product_id": 5},
    ),
    (
        "refine",
        {"generation_request_id": "gen-src", "index": 1, "mask_url": MASK, "prompt": "sky"},
        "/v3/ai/image-generations/refine",
        {"reference_generation": REF, "mask_url": MASK, "prompt": "sky"},
    ),
    (
        "refine",
        {"asset_id": "1234567", "mask_url": MASK, "negative_prompt": "clouds"},
        "/v3/ai/image-generations/refine",
        {"reference_asset_id": "1234567", "mask_url": MASK, "negative_prompt": "clouds"},
    ),
    (
        "extend",
        {
            "generation_request_id": "gen-src",
            "index": 1,
            "left_percentage": 0.2,
            "top_percentage": 0.1,
            "prompt": "more sea",
        },
        "/v3/ai/image-generations/extend",
        {
            "reference_generation": REF,
            "left_percentage": 0.2,
            "top_percentage": 0.1,
            "prompt": "more sea",
        },
    ),
    (
        "remove_background",
        {"asset_id": "A1", "project_code": "PC"},
        "/v3/ai/image-generations/background-removal",
        {"reference_asset_id": "A1", "project_code": "PC"},
    ),
    (
        "remove_object",
        {"generation_request_id": "gen-src", "index": 1, "mask_url": MASK},
        "/v3/ai/image-generations/object-removal",
        {"reference_generation": REF, "mask_url": MASK},
    ),
    (
        "influence_color",
        {"file_registration_id": "F1", "noise_level": 0.3, "prompt": "autumn", "mood": "warm"},
        "/v3/ai/image-generations/influence-color-by-image",
        {
            "reference_file_registration_id": "F1",
            "noise_level": 0.3,
            "prompt": "autumn",
            "mood": "warm",
        },
    ),
    (
        "influence_composition",
        {"asset_id": "A2", "influence_level": 0.8, "seed": 9, "media_type": "illustration"},
        "/v3/ai/image-generations/influence-composition-by-image",
        {
            "reference_asset_id": "A2",
            "influence_level": 0.8,
            "seed": 9,
            "media_type": "illustration",
        },
    ),
    (
        "generate_background",
        {"file_registration_id": "F2", "prompt": "studio", "bottom_percentage": 0.5},
        "/beta/ai/image-generations/background-generations",
        {"reference_file_registration_id": "F2", "prompt": "studio", "bottom_percentage": 0.5},
    ),
]
IDS = [f"{name}-{i}" for i, (name, *_) in enumerate(ENDPOINTS)]


def call(client: AsyncGettyAI, name: str, kwargs: dict[str, Any], **extra: Any) -> Any:
    kwargs = kwargs | extra
    if name == "create":
        kwargs = dict(kwargs)
        return client.generations.create(kwargs.pop("prompt"), **kwargs)
    if name == "variations":
        kwargs = dict(kwargs)
        return client.generations.variations(
            kwargs.pop("generation_request_id"), kwargs.pop("index"), **kwargs
        )
    return getattr(client.generations, name)(**kwargs)


@pytest.mark.parametrize(("name", "kwargs", "path", "expected"), ENDPOINTS, ids=IDS)
async def test_endpoint_200(
    client: AsyncGettyAI,
    router: respx.MockRouter,
    name: str,
    kwargs: dict[str, Any],
    path: str,
    expected: dict[str, Any],
) -> None:
    route = router.post(url(path)).respond(200, json=finished("gen-new"))

    generation = await call(client, name, kwargs)

    assert route.call_count == 1
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.url.path == path
    assert request.headers["Content-Type"] == "application/json"
    assert body(request) == expected
    assert_api_auth(request)
    assert isinstance(generation, Generation)
    assert not generation.is_pending
    assert generation.generation_request_id == "gen-new"
    assert generation.seed == 42
    assert [image.index for image in generation.images] == [0, 1]
    assert generation.images[1].url == "https://cdn.example.net/gen-new/1.png"
    assert generation.images[0].preview_urls is not None
    assert generation.images[0].preview_urls[0].width == 10
    assert client.limiter.in_use == 0


@pytest.mark.parametrize(("name", "kwargs", "path", "expected"), ENDPOINTS, ids=IDS)
async def test_endpoint_202_polls_until_200(
    client: AsyncGettyAI,
    router: respx.MockRouter,
    name: str,
    kwargs: dict[str, Any],
    path: str,
    expected: dict[str, Any],
) -> None:
    post = router.post(url(path)).respond(202, json=pending("gen-new"))
    poll = router.get(url("/v3/ai/image-generations/gen-new")).mock(
        side_effect=[
            respx.MockResponse(202, json=pending("gen-new")),
            respx.MockResponse(202, json=pending("gen-new")),
            respx.MockResponse(200, json=finished("gen-new", n=4)),
        ]
    )

    generation = await call(client, name, kwargs)

    assert post.call_count == 1
    assert body(post.calls.last.request) == expected
    assert poll.call_count == 3
    for polled in poll.calls:
        assert polled.request.method == "GET"
        assert polled.request.content == b""
        assert_api_auth(polled.request)
    assert not generation.is_pending
    assert len(generation.results or []) == 4
    assert client.limiter.in_use == 0


@pytest.mark.parametrize(("name", "kwargs", "path", "expected"), ENDPOINTS, ids=IDS)
async def test_endpoint_wait_false_returns_pending(
    client: AsyncGettyAI,
    router: respx.MockRouter,
    name: str,
    kwargs: dict[str, Any],
    path: str,
    expected: dict[str, Any],
) -> None:
    router.post(url(path)).respond(202, json=pending("gen-new"))
    poll = router.get(url("/v3/ai/image-generations/gen-new")).respond(200, json=finished())

    generation = await call(client, name, kwargs, wait=False)

    assert generation.is_pending
    assert generation.generation_request_id == "gen-new"
    assert generation.results is None
    assert poll.call_count == 0


async def test_generate_is_create(client: AsyncGettyAI, router: respx.MockRouter) -> None:
    route = router.post(url("/v3/ai/image-generations")).respond(200, json=finished())
    generation = await client.generate("a lighthouse", aspect_ratio="4:3")
    assert body(route.calls.last.request) == {"prompt": "a lighthouse", "aspect_ratio": "4:3"}
    assert generation.generation_request_id == GEN_ID


async def test_create_accepts_prepared_request(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    route = router.post(url("/v3/ai/image-generations")).respond(200, json=finished())
    request = GenerationRequest(prompt="a cat", mood="vivid", seed=1)
    await client.generations.create(request)
    assert body(route.calls.last.request) == {"prompt": "a cat", "mood": "vivid", "seed": 1}


async def test_create_leaves_unset_fields_off_the_wire(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    route = router.post(url("/v3/ai/image-generations")).respond(200, json=finished())
    await client.generations.create("just a prompt")
    assert body(route.calls.last.request) == {"prompt": "just a prompt"}


async def test_get_200_and_202(client: AsyncGettyAI, router: respx.MockRouter) -> None:
    route = router.get(url(f"/v3/ai/image-generations/{GEN_ID}")).mock(
        side_effect=[
            respx.MockResponse(202, json=pending()),
            respx.MockResponse(200, json=finished()),
        ]
    )
    first = await client.generations.get(GEN_ID)
    second = await client.generations.get(GEN_ID)
    assert first.is_pending
    assert first.results is None
    assert not second.is_pending
    assert len(second.images) == 2
    assert route.call_count == 2
    assert_api_auth(route.calls.last.request)


async def test_wait_polls_immediately_then_at_interval(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    route = router.get(url(f"/v3/ai/image-generations/{GEN_ID}")).mock(
        side_effect=[
            respx.MockResponse(202, json=pending()),
            respx.MockResponse(202, json=pending()),
            respx.MockResponse(200, json=finished()),
        ]
    )
    generation = await client.generations.wait(GEN_ID, poll_interval=0.001)
    assert route.call_count == 3
    assert not generation.is_pending


async def test_wait_on_finished_generation_makes_one_request(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    route = router.get(url(f"/v3/ai/image-generations/{GEN_ID}")).respond(200, json=finished())
    await client.generations.wait(GEN_ID)
    assert route.call_count == 1


async def test_create_polling_deadline_raises_with_id(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    router.post(url("/v3/ai/image-generations")).respond(202, json=pending("gen-slow"))
    poll = router.get(url("/v3/ai/image-generations/gen-slow")).respond(
        202, json=pending("gen-slow")
    )

    with pytest.raises(errors.GenerationTimeoutError) as caught:
        await client.generations.create("slow", timeout=0.05)

    assert caught.value.generation_request_id == "gen-slow"
    assert isinstance(caught.value, TimeoutError)
    assert "gen-slow" in str(caught.value)
    # Gave up near the deadline: not at once, and not long after (one last poll at most).
    assert 0.04 <= caught.value.waited < 0.5
    assert poll.call_count >= 1
    # Still pending at the service: its lease stays until the poller sees it end.
    assert client.limiter.in_use == 1


async def test_wait_deadline_raises_with_id(client: AsyncGettyAI, router: respx.MockRouter) -> None:
    router.get(url(f"/v3/ai/image-generations/{GEN_ID}")).respond(202, json=pending())
    with pytest.raises(errors.GenerationTimeoutError) as caught:
        await client.generations.wait(GEN_ID, timeout=0.03, poll_interval=0.005)
    assert caught.value.generation_request_id == GEN_ID


async def test_blocked_images_are_separated(client: AsyncGettyAI, router: respx.MockRouter) -> None:
    payload = finished()
    payload["results"][0] = {"index": 0, "is_blocked": True}
    router.get(url(f"/v3/ai/image-generations/{GEN_ID}")).respond(200, json=payload)
    generation = await client.generations.get(GEN_ID)
    assert [image.index for image in generation.blocked] == [0]
    assert [image.index for image in generation.images] == [1]
    assert isinstance(generation.blocked[0], GeneratedImage)
    assert generation.blocked[0].url is None


async def test_unknown_response_fields_are_tolerated(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    router.get(url(f"/v3/ai/image-generations/{GEN_ID}")).respond(
        200, json=finished(brand_new_field={"x": 1})
    )
    generation = await client.generations.get(GEN_ID)
    assert generation.model_extra == {"brand_new_field": {"x": 1}}


async def test_base_url_path_prefix_is_kept(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    client = make_client(base_url="https://gateway.test/getty/")
    route = router.get(f"https://gateway.test/getty/v3/ai/image-generations/{GEN_ID}").respond(
        200, json=finished()
    )
    upload = router.put("https://gateway.test/getty/v3/search/by-image/uploads/m.jpg").respond(200)
    await client.generations.get(GEN_ID)
    assert await client.uploads.upload(b"x", file_name="m.jpg") == (
        "https://gateway.test/getty/v3/search/by-image/uploads/m.jpg"
    )
    assert route.calls.last.request.headers["Api-Key"] == API_KEY
    assert upload.call_count == 1


async def test_ids_are_percent_encoded_once(client: AsyncGettyAI, router: respx.MockRouter) -> None:
    route = router.get(url__regex=r"https://api\.test/v3/ai/image-generations/.*").respond(
        200, json=finished("gén+1")
    )
    await client.generations.get("gén+1")
    assert route.calls.last.request.url.raw_path == b"/v3/ai/image-generations/g%C3%A9n%2B1"
