"""Generation-creating routes, polling, the pending cap, 404/410 and request validation."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sandbox_helpers import FROZEN, Connect, assert_generation_shape, generate, upload

from getty_ai_async.sandbox import Sandbox
from getty_ai_async.sandbox._config import SandboxConfig


async def test_generate_answers_200_at_once_when_pending_time_is_zero(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    payload = await generate(client, aspect_ratio="16:9", seed=42)

    assert_generation_shape(payload)
    assert payload["seed"] == 42
    assert "original_asset" not in payload
    first = payload["results"][0]
    assert first["url"].startswith(f"{sandbox.cdn_base_url}/cdn/")
    sizes = {p["preview_size"]: (p["width"], p["height"]) for p in first["preview_urls"]}
    assert sizes == {"small": (64, 36), "medium": (128, 72)}


async def test_generation_answers_202_until_ready_then_200(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=2.0, time_scale=FROZEN)
    async with connect(sandbox) as client:
        posted = await client.post("/v3/ai/image-generations", json={"prompt": "a fox"})
        assert posted.status_code == 202
        generation_id = posted.json()["generation_request_id"]
        assert posted.json() == {"generation_request_id": generation_id}

        poll = await client.get(f"/v3/ai/image-generations/{generation_id}")
        assert poll.status_code == 202
        assert poll.json() == {"generation_request_id": generation_id}

        sandbox.advance(2.0)
        done = await client.get(f"/v3/ai/image-generations/{generation_id}")
        assert done.status_code == 200
        assert done.json()["generation_request_id"] == generation_id
        assert_generation_shape(done.json())
    assert sandbox.stats.polls == 2
    assert sandbox.stats.polls_pending == 1


async def test_pending_time_range_is_respected(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=(1.0, 3.0), pending_limit=None, seed=3, time_scale=FROZEN)
    async with connect(sandbox) as client:
        ids = []
        for _ in range(10):
            reply = await client.post("/v3/ai/image-generations", json={"prompt": "p"})
            ids.append(reply.json()["generation_request_id"])

        sandbox.advance(0.99)
        statuses = [(await client.get(f"/v3/ai/image-generations/{i}")).status_code for i in ids]
        assert statuses == [202] * 10
        sandbox.advance(2.02)
        statuses = [(await client.get(f"/v3/ai/image-generations/{i}")).status_code for i in ids]
        assert statuses == [200] * 10


async def test_pending_cap_answers_429_and_creates_nothing(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=10.0, pending_limit=2, time_scale=FROZEN)
    async with connect(sandbox) as client, connect(sandbox, key="other") as other:
        for _ in range(2):
            assert (
                await client.post("/v3/ai/image-generations", json={"prompt": "p"})
            ).status_code == 202

        refused = await client.post("/v3/ai/image-generations", json={"prompt": "p"})
        assert refused.status_code == 429
        assert refused.content == b'{"message":"Too Many Requests"}'
        assert refused.headers["content-type"] == "application/json"
        assert "retry-after" not in refused.headers
        assert sandbox.stats.submissions == 2
        assert sandbox.stats.submissions_attempted == 3
        assert sandbox.stats.rate_limited_pending == 1

        # The cap is per account (Api-Key).
        assert (
            await other.post("/v3/ai/image-generations", json={"prompt": "p"})
        ).status_code == 202

        sandbox.advance(10.0)
        assert (
            await client.post("/v3/ai/image-generations", json={"prompt": "p"})
        ).status_code == 202
    assert sandbox.stats.peak_pending_by_account == {"key": 2, "other": 1}


async def test_pending_cap_applies_to_derived_generations(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=0, pending_limit=1)
    async with connect(sandbox) as client:
        source = await generate(client)
        sandbox.config.pending_seconds = 5.0
        path = f"/v3/ai/image-generations/{source['generation_request_id']}/images/0/variations"
        assert (await client.post(path, json={})).status_code == 202
        assert (await client.post(path, json={})).status_code == 429


async def test_unknown_and_malformed_ids_answer_404(client: httpx.AsyncClient) -> None:
    payload = await generate(client)
    tampered = payload["generation_request_id"][:-2] + "aa"
    for generation_id in ("nope", tampered, "x" * 40, "%2F..%2F"):
        reply = await client.get(f"/v3/ai/image-generations/{generation_id}")
        assert reply.status_code == 404, generation_id
        assert "message" in reply.json()


async def test_ids_from_a_sandbox_that_has_not_issued_them_are_unknown(connect: Connect) -> None:
    first, second = Sandbox(pending_seconds=0), Sandbox(pending_seconds=0)
    async with connect(first) as client:
        generation_id = (await generate(client))["generation_request_id"]
    async with connect(second) as client:
        assert (await client.get(f"/v3/ai/image-generations/{generation_id}")).status_code == 404


async def test_generations_past_retention_answer_410(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=0, retention_seconds=100.0, time_scale=FROZEN)
    async with connect(sandbox) as client:
        generation_id = (await generate(client))["generation_request_id"]
        sandbox.advance(99.0)
        assert (await client.get(f"/v3/ai/image-generations/{generation_id}")).status_code == 200
        sandbox.advance(2.0)
        for path in (
            f"/v3/ai/image-generations/{generation_id}",
            f"/v3/ai/image-generations/{generation_id}/images/0/download-sizes",
            f"/v3/ai/image-generations/{generation_id}/images/0/download",
            f"/v3/ai/generation-history/{generation_id}",
        ):
            assert (await client.get(path)).status_code == 410, path
        reply = await client.post(
            f"/v3/ai/image-generations/{generation_id}/images/0/variations", json={}
        )
        assert reply.status_code == 410


async def test_default_retention_is_six_months(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=0, require_token=False)
    async with connect(sandbox, token=False) as client:
        generation_id = (await generate(client))["generation_request_id"]
        sandbox.advance(179 * 86400)
        assert (await client.get(f"/v3/ai/image-generations/{generation_id}")).status_code == 200
        sandbox.advance(2 * 86400)
        assert (await client.get(f"/v3/ai/image-generations/{generation_id}")).status_code == 410


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": None}, "prompt"),
        ({"prompt": 5}, "prompt"),
        ({"prompt": "x", "aspect_ratio": "2:1"}, "aspect_ratio"),
        ({"prompt": "x", "media_type": "video"}, "media_type"),
        ({"prompt": "x", "media_type": None}, "media_type"),
        ({"prompt": "x", "mood": "sad"}, "mood"),
        ({"prompt": "x", "lens_type": "fisheye"}, "lens_type"),
        ({"prompt": "x", "depth_of_field": "medium"}, "depth_of_field"),
        ({"prompt": "x", "seed": "7"}, "seed"),
        ({"prompt": "x", "seed": 1.5}, "seed"),
        ({"prompt": "x", "seed": 2**31}, "seed"),
        ({"prompt": "x", "product_id": True}, "product_id"),
        ({"prompt": "x", "notes": 1}, "notes"),
        ({"prompt": "x", "colour": "red"}, "colour"),
    ],
)
async def test_generate_rejects_invalid_bodies_naming_the_field(
    client: httpx.AsyncClient, sandbox: Sandbox, body: dict[str, Any], field: str
) -> None:
    reply = await client.post("/v3/ai/image-generations", json=body)
    assert reply.status_code == 400
    assert f"'{field}'" in reply.json()["message"]
    assert sandbox.stats.submissions == 0


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2]", b'"prompt"', b"NaN"])
async def test_generate_rejects_bodies_that_are_not_json_objects(
    client: httpx.AsyncClient, content: bytes
) -> None:
    reply = await client.post(
        "/v3/ai/image-generations", content=content, headers={"Content-Type": "application/json"}
    )
    assert reply.status_code == 400
    assert "message" in reply.json()


async def test_all_optional_generate_fields_are_accepted(client: httpx.AsyncClient) -> None:
    await generate(
        client,
        prompt="a lighthouse",
        negative_prompt="people",
        seed=-12,
        aspect_ratio="9:16",
        media_type="illustration",
        mood="black_and_white",
        lens_type="telephoto",
        depth_of_field="shallow",
        product_id=7,
        project_code="P1",
        notes="n",
    )


async def test_variations_of_a_finished_image(client: httpx.AsyncClient) -> None:
    source = (await generate(client, aspect_ratio="4:3"))["generation_request_id"]
    base = f"/v3/ai/image-generations/{source}/images"

    reply = await client.post(f"{base}/1/variations", json={"notes": "more"})
    assert reply.status_code == 200
    assert_generation_shape(reply.json())
    assert reply.json()["generation_request_id"] != source
    assert reply.json()["results"][0]["preview_urls"][0]["width"] == 64
    assert reply.json()["results"][0]["preview_urls"][0]["height"] == 48
    # The body is optional.
    assert (await client.post(f"{base}/1/variations")).status_code == 200

    assert (await client.post(f"{base}/4/variations", json={})).status_code == 404
    assert (await client.post(f"{base}/-1/variations", json={})).status_code == 404
    bad_index = await client.post(f"{base}/one/variations", json={})
    assert bad_index.status_code == 400
    assert "'index'" in bad_index.json()["message"]
    unknown = "/v3/ai/image-generations/unknown/images/0/variations"
    assert (await client.post(unknown, json={})).status_code == 404
    extra = await client.post(f"{base}/0/variations", json={"prompt": "x"})
    assert extra.status_code == 400
    assert "'prompt'" in extra.json()["message"]


async def test_derived_routes_answer_404_for_a_pending_source(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=5.0, time_scale=FROZEN)
    async with connect(sandbox) as client:
        posted = await client.post("/v3/ai/image-generations", json={"prompt": "p"})
        source = posted.json()["generation_request_id"]
        variation = f"/v3/ai/image-generations/{source}/images/0/variations"
        assert (await client.post(variation, json={})).status_code == 404
        removal = await client.post(
            "/v3/ai/image-generations/background-removal",
            json={"reference_generation": {"generation_request_id": source, "index": 0}},
        )
        assert removal.status_code == 404


async def test_refine_needs_an_uploaded_mask_and_one_reference(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    source = (await generate(client))["generation_request_id"]
    reference = {"generation_request_id": source, "index": 2}
    mask_url = await upload(client, sandbox, "mask-1.jpg")

    reply = await client.post(
        "/v3/ai/image-generations/refine",
        json={"reference_generation": reference, "mask_url": mask_url, "prompt": "a hat"},
    )
    assert reply.status_code == 200
    assert_generation_shape(reply.json())

    by_asset = await client.post(
        "/v3/ai/image-generations/refine",
        json={"reference_asset_id": "1234567", "mask_url": mask_url},
    )
    assert by_asset.status_code == 200
    assert by_asset.json()["original_asset"] == {"id": "1234567"}

    for body, field in [
        ({"reference_generation": reference}, "mask_url"),
        ({"reference_generation": reference, "mask_url": ""}, "mask_url"),
        ({"reference_generation": reference, "mask_url": f"{mask_url}x"}, "mask_url"),
        ({"reference_generation": reference, "mask_url": "https://example.com/m.jpg"}, "mask_url"),
        ({"mask_url": mask_url}, "reference_asset_id"),
        (
            {"reference_generation": reference, "reference_asset_id": "1", "mask_url": mask_url},
            "reference_generation",
        ),
        ({"reference_generation": {"index": 0}, "mask_url": mask_url}, "generation_request_id"),
        ({"id": "1", "mask_url": mask_url}, "id"),
    ]:
        refused = await client.post("/v3/ai/image-generations/refine", json=body)
        assert refused.status_code == 400, body
        assert field in refused.json()["message"], (body, refused.json())


async def test_masks_are_per_api_key_and_expire(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=0, upload_ttl=60.0, time_scale=FROZEN)
    async with connect(sandbox) as client, connect(sandbox, key="other") as other:
        source = (await generate(client))["generation_request_id"]
        mask_url = await upload(client, sandbox)
        body = {
            "reference_generation": {"generation_request_id": source, "index": 0},
            "mask_url": mask_url,
        }
        assert (
            await other.post("/v3/ai/image-generations/object-removal", json=body)
        ).status_code == 400
        assert (
            await client.post("/v3/ai/image-generations/object-removal", json=body)
        ).status_code == 200
        sandbox.advance(61.0)
        expired = await client.post("/v3/ai/image-generations/object-removal", json=body)
        assert expired.status_code == 400
        assert "expired" in expired.json()["message"]


async def test_extend_checks_percentages_and_changes_the_shape(client: httpx.AsyncClient) -> None:
    source = (await generate(client, aspect_ratio="1:1"))["generation_request_id"]
    reference = {"generation_request_id": source, "index": 0}

    wide = await client.post(
        "/v3/ai/image-generations/extend",
        json={"reference_generation": reference, "left_percentage": 0.5, "right_percentage": 0.5},
    )
    assert wide.status_code == 200
    preview = wide.json()["results"][0]["preview_urls"][0]
    assert (preview["width"], preview["height"]) == (64, 32)
    sizes = await client.get(
        f"/v3/ai/image-generations/{wide.json()['generation_request_id']}/images/0/download-sizes"
    )
    assert sizes.json()["download_sizes"][1] == {"size_name": "4k", "width": 4096, "height": 2048}

    for body, field in [
        ({"reference_generation": reference}, "left_percentage"),
        ({"reference_generation": reference, "top_percentage": 0}, "left_percentage"),
        ({"reference_generation": reference, "left_percentage": -0.1}, "left_percentage"),
        ({"reference_generation": reference, "bottom_percentage": "1"}, "bottom_percentage"),
        ({"top_percentage": 0.2}, "reference_asset_id"),
    ]:
        refused = await client.post("/v3/ai/image-generations/extend", json=body)
        assert refused.status_code == 400, body
        assert field in refused.json()["message"], body


async def test_background_and_object_removal(client: httpx.AsyncClient, sandbox: Sandbox) -> None:
    source = (await generate(client))["generation_request_id"]
    reference = {"generation_request_id": source, "index": 0}
    removed = await client.post(
        "/v3/ai/image-generations/background-removal", json={"reference_generation": reference}
    )
    assert removed.status_code == 200
    neither = await client.post("/v3/ai/image-generations/background-removal", json={})
    assert neither.status_code == 400

    no_mask = await client.post(
        "/v3/ai/image-generations/object-removal", json={"reference_generation": reference}
    )
    assert no_mask.status_code == 400
    assert "'mask_url'" in no_mask.json()["message"]
    mask_url = await upload(client, sandbox)
    ok = await client.post(
        "/v3/ai/image-generations/object-removal",
        json={"reference_asset_id": "99", "mask_url": mask_url},
    )
    assert ok.status_code == 200
    assert ok.json()["original_asset"] == {"id": "99"}
    again = await client.get(f"/v3/ai/image-generations/{ok.json()['generation_request_id']}")
    assert again.json()["original_asset"] == {"id": "99"}


async def _register(
    client: httpx.AsyncClient, sandbox: Sandbox, category: str, name: str = "ref.png"
) -> str:
    url = await upload(client, sandbox, name)
    reply = await client.post(
        "/beta/ai/file-registrations",
        json={"url": url, "rights_claimed": True, "category": category},
    )
    assert reply.status_code == 200
    registration_id: str = reply.json()["id"]
    return registration_id


@pytest.mark.parametrize(
    ("path", "level"),
    [
        ("/v3/ai/image-generations/influence-color-by-image", "noise_level"),
        ("/v3/ai/image-generations/influence-composition-by-image", "influence_level"),
    ],
)
async def test_influence_routes(
    client: httpx.AsyncClient, sandbox: Sandbox, path: str, level: str
) -> None:
    source = (await generate(client))["generation_request_id"]
    reference = {"generation_request_id": source, "index": 3}
    reply = await client.post(
        path, json={"reference_generation": reference, "prompt": "blue", level: 0.3}
    )
    assert reply.status_code == 200
    assert_generation_shape(reply.json())

    registration_id = await _register(client, sandbox, "ImageReference")
    by_file = await client.post(
        path,
        json={"reference_file_registration_id": registration_id, "prompt": "p", level: 1},
    )
    assert by_file.status_code == 200

    product_id = await _register(client, sandbox, "CustomerProduct", "product.png")
    for body, status, field in [
        ({"reference_generation": reference, "prompt": "p"}, 400, level),
        ({"reference_generation": reference, "prompt": "p", level: 1.5}, 400, level),
        ({"reference_generation": reference, level: 0.5}, 400, "prompt"),
        ({"prompt": "p", level: 0.5}, 400, "reference_file_registration_id"),
        (
            {"reference_file_registration_id": product_id, "prompt": "p", level: 0.5},
            400,
            "category",
        ),
        ({"reference_file_registration_id": "nope", "prompt": "p", level: 0.5}, 404, "nope"),
    ]:
        refused = await client.post(path, json=body)
        assert refused.status_code == status, body
        assert field in refused.json()["message"], body


async def test_background_generation_needs_a_customer_product_registration(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    product_id = await _register(client, sandbox, "CustomerProduct")
    path = "/beta/ai/image-generations/background-generations"
    reply = await client.post(
        path,
        json={
            "reference_file_registration_id": product_id,
            "prompt": "beach",
            "top_percentage": 0.1,
        },
    )
    assert reply.status_code == 200
    assert_generation_shape(reply.json())

    reference_id = await _register(client, sandbox, "ImageReference", "r.png")
    wrong = await client.post(
        path, json={"reference_file_registration_id": reference_id, "prompt": "p"}
    )
    assert wrong.status_code == 400
    missing = await client.post(path, json={"reference_file_registration_id": product_id})
    assert missing.status_code == 400
    assert "'prompt'" in missing.json()["message"]


async def test_blocked_results_have_no_urls(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=0, blocked_rate=1.0)
    async with connect(sandbox) as client:
        payload = await generate(client)
        assert all(r["is_blocked"] for r in payload["results"])
        assert_generation_shape(payload)
        generation_id = payload["generation_request_id"]
        sizes = await client.get(
            f"/v3/ai/image-generations/{generation_id}/images/0/download-sizes"
        )
        assert sizes.status_code == 404
        download = await client.put(
            f"/v3/ai/image-generations/{generation_id}/images/0/download", json={"size_name": "1k"}
        )
        assert download.status_code == 404


async def _blocked_pattern(connect: Connect, seed: int) -> list[bool]:
    sandbox = Sandbox(pending_seconds=0, blocked_rate=0.5, seed=seed)
    async with connect(sandbox) as client:
        pattern = []
        for _ in range(5):
            pattern += [r["is_blocked"] for r in (await generate(client))["results"]]
    return pattern


async def test_blocked_results_are_seeded(connect: Connect) -> None:
    first = await _blocked_pattern(connect, seed=11)
    assert first == await _blocked_pattern(connect, seed=11)
    assert first != await _blocked_pattern(connect, seed=12)
    assert 0 < sum(first) < len(first)


async def test_images_per_generation_is_configurable(connect: Connect) -> None:
    sandbox = Sandbox(SandboxConfig(pending_seconds=0, images_per_generation=1))
    async with connect(sandbox) as client:
        assert_generation_shape(await generate(client), count=1)


async def test_config_changes_apply_to_the_next_request(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    sandbox.config.images_per_generation = 2
    assert len((await generate(client))["results"]) == 2
    sandbox.config.pending_seconds = 1.0
    assert (await client.post("/v3/ai/image-generations", json={"prompt": "p"})).status_code == 202
