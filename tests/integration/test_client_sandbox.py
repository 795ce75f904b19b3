"""The client end to end against the in-process sandbox: every endpoint and the service's rules.

No respx here: every request goes through the real client stack (auth, limiter, retries,
polling) into `getty_ai_async.sandbox` over `httpx.ASGITransport`. The sandbox is seeded and
its clock either runs fast (``time_scale=0.01``: one simulated second is 10 ms) or is frozen
(``time_scale=FROZEN``) so that only `Sandbox.advance` moves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import anyio
import pytest
import sniffio
from lease_helpers import leases_back

from getty_ai_async import AsyncGettyAI, Category, Generation, RetryPolicy, errors
from getty_ai_async.sandbox import Sandbox

FROZEN = 1000.0
"""Real seconds per simulated second: real time barely moves the sandbox clock."""

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(64)) + b"\xff\xd9"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
UPLOAD_PATH = "/v3/search/by-image/uploads/"

SandboxClientFactory = Callable[..., AsyncGettyAI]
"""The ``make_sandbox_client`` fixture (see conftest.py)."""


def sim(client: AsyncGettyAI) -> Sandbox:
    assert client.simulator is not None
    return client.simulator


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of the PNG at `path` (its signature and IHDR chunk must be in place)."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def listing(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def inside(folder: Path, name: str) -> Path:
    return folder.resolve() / name


def assert_finished(generation: Generation, images: int = 4) -> None:
    assert not generation.is_pending
    assert [image.index for image in generation.images] == list(range(images))
    for image in generation.images:
        assert image.url is not None
        assert image.url.startswith(Sandbox.IN_PROCESS_CDN_BASE_URL + "/cdn/")
        assert image.preview_urls


async def history_ids(client: AsyncGettyAI, **filters: Any) -> list[str]:
    return [item.generation_request_id async for item in client.history.list(**filters)]


# --------------------------------------------------------------------------- generate


async def test_generate_answers_200_without_polling_when_nothing_is_pending(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    client = make_sandbox_client(pending_seconds=0)
    generation = await client.generate("a red fox in snow")

    assert_finished(generation)
    assert isinstance(generation.seed, int)
    stats = sim(client).stats
    assert dict(stats.requests) == {("token", 200): 1, ("generate", 200): 1}
    assert stats.polls == 0
    assert client.limiter.in_use == 0


async def test_generate_polls_through_202s_and_sends_every_option(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    client = make_sandbox_client(pending_seconds=2)
    generation = await client.generate(
        "a red fox in snow",
        aspect_ratio="16:9",
        negative_prompt="people",
        seed=42,
        media_type="photography",
        mood="warm",
        lens_type="telephoto",
        depth_of_field="shallow",
        product_id=3,
        project_code="PRJ-1",
        notes="integration",
    )

    assert_finished(generation)
    assert generation.seed == 42
    stats = sim(client).stats
    assert stats.count("generate", 202) == 1
    assert stats.polls_pending >= 1
    assert stats.count("get_generation", 200) == 1
    assert client.limiter.in_use == 0

    sizes = await client.downloads.sizes(generation.generation_request_id, 0)
    assert [(s.size_name, s.width, s.height) for s in sizes] == [
        ("1k", 1024, 576),
        ("4k", 4096, 2304),
    ]
    item = await client.history.get(generation.generation_request_id)
    assert item.generation_request_id == generation.generation_request_id
    assert item.generation_type == "text_to_image"
    assert (item.prompt, item.negative_prompt) == ("a red fox in snow", "people")
    assert (item.product_id, item.project_code, item.notes) == (3, "PRJ-1", "integration")
    assert item.seed == 42
    assert item.generation_options is not None
    assert item.generation_options.aspect_ratio == "16:9"
    assert item.generation_options.media_type == "photography"
    assert item.generation_options.mood == "warm"
    assert item.results is not None
    assert len(item.results) == 4


async def test_generate_accepts_a_prepared_request(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    from getty_ai_async import GenerationRequest

    client = make_sandbox_client(pending_seconds=1)
    request = GenerationRequest(prompt="a lighthouse at dusk", aspect_ratio="9:16")
    generation = await client.generate(request)

    assert_finished(generation)
    sizes = await client.downloads.sizes(generation.generation_request_id, 3)
    assert [(s.width, s.height) for s in sizes] == [(576, 1024), (2304, 4096)]


async def test_get_reports_pending_until_the_generation_is_ready(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    client = make_sandbox_client(pending_seconds=30, time_scale=FROZEN)
    pending = await client.generations.create(prompt="a slow fox", wait=False)

    assert pending.is_pending
    assert pending.results is None
    assert client.limiter.in_use == 1, "the lease stays with the generation until it ends"

    again = await client.generations.get(pending.generation_request_id)
    assert again.is_pending
    assert client.limiter.in_use == 1

    sim(client).advance(30)
    done = await client.generations.get(pending.generation_request_id)
    assert done.generation_request_id == pending.generation_request_id
    assert_finished(done)
    await leases_back(client)  # the client's poller saw it finish too
    assert sim(client).stats.polls_pending >= 1


async def test_wait_false_then_wait_returns_the_finished_generation(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    client = make_sandbox_client(pending_seconds=3)
    pending = await client.generations.create("a patient fox", wait=False)
    assert pending.is_pending

    generation = await client.generations.wait(pending.generation_request_id)

    assert generation.generation_request_id == pending.generation_request_id
    assert_finished(generation)
    assert client.limiter.in_use == 0
    assert sim(client).stats.submissions == 1


async def test_wait_deadline_raises_with_an_id_that_resumes(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    client = make_sandbox_client(pending_seconds=60, time_scale=FROZEN)
    pending = await client.generations.create("a very slow fox", wait=False)

    with pytest.raises(errors.GenerationTimeoutError) as caught:
        await client.generations.wait(
            pending.generation_request_id, timeout=0.03, poll_interval=0.005
        )
    assert caught.value.generation_request_id == pending.generation_request_id

    sim(client).advance(60)
    generation = await client.generations.wait(caught.value.generation_request_id)
    assert_finished(generation)
    assert sim(client).stats.submissions == 1


# ------------------------------------------------------------------------------ edits


async def test_variations_of_one_image(make_sandbox_client: SandboxClientFactory) -> None:
    client = make_sandbox_client(pending_seconds=1)
    source = await client.generate("a fox", aspect_ratio="4:3")

    variation = await client.generations.variations(
        source.generation_request_id, 2, project_code="PRJ", notes="v"
    )

    assert_finished(variation)
    assert variation.generation_request_id != source.generation_request_id
    sizes = await client.downloads.sizes(variation.generation_request_id, 0)
    assert (sizes[-1].width, sizes[-1].height) == (4096, 3072), "a variation keeps the shape"
    item = await client.history.get(variation.generation_request_id)
    assert item.generation_type == "variation"
    assert item.source_generation_request is not None
    assert item.source_generation_request.source_generation_request_id == (
        source.generation_request_id
    )
    assert item.source_generation_request.source_generation_result_index == 2


async def test_refine_with_masks_uploaded_as_bytes_and_from_a_path(
    make_sandbox_client: SandboxClientFactory, tmp_path: Path
) -> None:
    client = make_sandbox_client(pending_seconds=1)
    source = await client.generate("a fox without a hat")
    upload_prefix = sim(client).api_base_url + UPLOAD_PATH

    from_bytes = await client.uploads.upload(JPEG)
    mask_file = anyio.Path(tmp_path / "mask.jpg")
    await mask_file.write_bytes(JPEG)
    from_path = await client.uploads.upload(mask_file)

    assert from_bytes.startswith(upload_prefix)
    assert from_path == upload_prefix + "mask.jpg"
    refined = await client.generations.refine(
        generation_request_id=source.generation_request_id,
        index=1,
        mask_url=from_bytes,
        prompt="a fox wearing a hat",
    )
    from_asset = await client.generations.refine(
        asset_id="1234567", mask_url=from_path, prompt="a cat", negative_prompt="dogs"
    )

    assert_finished(refined)
    assert_finished(from_asset)
    assert from_asset.original_asset is not None
    assert from_asset.original_asset.id == "1234567"
    item = await client.history.get(refined.generation_request_id)
    assert item.generation_type == "refine"
    assert item.source_generation_request is not None
    assert item.source_generation_request.source_generation_result_index == 1
    stats = sim(client).stats
    assert (stats.uploads, stats.submissions) == (2, 3)


async def test_upload_of_a_file_whose_name_has_spaces(
    make_sandbox_client: SandboxClientFactory, tmp_path: Path
) -> None:
    client = make_sandbox_client(pending_seconds=0)
    mask_file = anyio.Path(tmp_path / "my mask (1).jpg")
    await mask_file.write_bytes(JPEG)

    mask_url = await client.uploads.upload(mask_file)
    refined = await client.generations.remove_object(asset_id="42", mask_url=mask_url)

    assert unquote(mask_url) == sim(client).api_base_url + UPLOAD_PATH + "my_mask_(1).jpg"
    assert_finished(refined)


async def test_refine_with_a_mask_never_uploaded_is_a_bad_request(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    client = make_sandbox_client(pending_seconds=1)
    mask_url = sim(client).api_base_url + UPLOAD_PATH + "never-uploaded.jpg"

    with pytest.raises(errors.BadRequestError) as caught:
        await client.generations.refine(asset_id="1", mask_url=mask_url, prompt="p")

    assert caught.value.status_code == 400
    assert "mask_url" in str(caught.value)
    assert sim(client).stats.submissions == 0
    assert client.limiter.in_use == 0


async def test_extend_a_generated_image_and_an_asset(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    client = make_sandbox_client(pending_seconds=1)
    source = await client.generate("a square fox")

    wider = await client.generations.extend(
        generation_request_id=source.generation_request_id,
        index=0,
        left_percentage=0.25,
        right_percentage=0.25,
        prompt="more snow",
    )
    taller = await client.generations.extend(asset_id="987", top_percentage=0.5)

    assert_finished(wider)
    assert_finished(taller)
    wide = (await client.downloads.sizes(wider.generation_request_id, 0))[-1]
    tall = (await client.downloads.sizes(taller.generation_request_id, 0))[-1]
    assert wide.width == 4096
    assert wide.height is not None
    assert wide.height < 4096
    assert tall.height == 4096
    assert tall.width is not None
    assert tall.width < 4096
    assert taller.original_asset is not None
    assert taller.original_asset.id == "987"
    item = await client.history.get(wider.generation_request_id)
    assert item.generation_type == "extend"
    assert item.source_generation_request is not None
    assert item.source_generation_request.source_generation_request_id == (
        source.generation_request_id
    )


async def test_remove_background_and_remove_object(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    client = make_sandbox_client(pending_seconds=1)
    source = await client.generate("a fox on a busy street")
    mask_url = await client.uploads.upload(JPEG, file_name="car-mask.jpg")

    cut_out = await client.generations.remove_background(
        generation_request_id=source.generation_request_id, index=3
    )
    erased = await client.generations.remove_object(asset_id="555", mask_url=mask_url)

    assert_finished(cut_out)
    assert_finished(erased)
    assert erased.original_asset is not None
    assert erased.original_asset.id == "555"
    types = [
        (await client.history.get(g.generation_request_id)).generation_type
        for g in (cut_out, erased)
    ]
    assert types == ["background_removal", "object_removal"]


async def test_influence_color_from_an_asset_and_a_generation(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    client = make_sandbox_client(pending_seconds=1)
    source = await client.generate("an autumn forest")

    from_asset = await client.generations.influence_color(
        asset_id="111", prompt="a beach", noise_level=0.3, mood="vivid", seed=5
    )
    from_generation = await client.generations.influence_color(
        generation_request_id=source.generation_request_id,
        index=0,
        prompt="a city",
        noise_level=0.8,
    )

    assert_finished(from_asset)
    assert_finished(from_generation)
    assert from_asset.seed == 5
    item = await client.history.get(from_generation.generation_request_id)
    assert item.generation_type == "influence_color_by_image"


async def test_influence_composition_from_asset_generation_and_registered_file(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    client = make_sandbox_client(pending_seconds=1)
    source = await client.generate("a mountain range")
    reference_url = await client.uploads.upload(JPEG, file_name="reference.jpg")
    registration = await client.files.register(
        url=reference_url, rights_claimed=True, category="ImageReference"
    )

    from_asset = await client.generations.influence_composition(
        asset_id="222", prompt="a desert", influence_level=0.7
    )
    from_generation = await client.generations.influence_composition(
        generation_request_id=source.generation_request_id,
        index=1,
        prompt="an ocean",
        influence_level=0.4,
    )
    from_file = await client.generations.influence_composition(
        file_registration_id=registration.id, prompt="a meadow", influence_level=1.0
    )

    for generation in (from_asset, from_generation, from_file):
        assert_finished(generation)
        item = await client.history.get(generation.generation_request_id)
        assert item.generation_type == "influence_composition_by_image"
    assert from_asset.original_asset is not None
    assert from_asset.original_asset.id == "222"
    assert sim(client).stats.file_registrations == 1


async def test_influence_rejects_a_product_registration_and_a_missing_level(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    client = make_sandbox_client(pending_seconds=1)
    url = await client.uploads.upload(JPEG, file_name="product.jpg")
    product = await client.files.register(url=url, rights_claimed=True, category="CustomerProduct")

    with pytest.raises(errors.BadRequestError) as wrong_category:
        await client.generations.influence_composition(
            file_registration_id=product.id, prompt="p", influence_level=0.5
        )
    with pytest.raises(errors.BadRequestError) as no_level:
        await client.generations.influence_color(asset_id="1", prompt="p")

    assert "ImageReference" in str(wrong_category.value)
    assert "noise_level" in str(no_level.value)
    assert sim(client).stats.submissions == 0
    assert client.limiter.in_use == 0


async def test_generate_background_for_a_registered_customer_product(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    client = make_sandbox_client(pending_seconds=1)
    url = await client.uploads.upload(
        PNG_SIGNATURE + JPEG, file_name="bottle.png", content_type="image/png"
    )
    registration = await client.files.register(
        url=url, rights_claimed=True, category=Category.CUSTOMER_PRODUCT
    )

    fetched = await client.files.get(registration.id)
    generation = await client.generations.generate_background(
        file_registration_id=registration.id,
        prompt="on a marble kitchen counter",
        left_percentage=0.1,
        product_id=2,
    )

    assert fetched.id == registration.id
    assert fetched.preview_urls is not None
    assert len(fetched.preview_urls) == 2
    assert all(
        p.image_url and p.image_url.startswith(sim(client).cdn_base_url)
        for p in fetched.preview_urls
    )
    assert_finished(generation)
    item = await client.history.get(generation.generation_request_id)
    assert (item.generation_type, item.product_id) == ("background_generation", 2)


async def test_file_registration_errors(make_sandbox_client: SandboxClientFactory) -> None:
    client = make_sandbox_client()
    url = await client.uploads.upload(JPEG)
    not_uploaded = sim(client).api_base_url + UPLOAD_PATH + "missing.jpg"

    with pytest.raises(errors.BadRequestError, match="rights_claimed"):
        await client.files.register(url=url, rights_claimed=False)
    with pytest.raises(errors.BadRequestError, match="url"):
        await client.files.register(url=not_uploaded, rights_claimed=True)
    with pytest.raises(errors.NotFoundError):
        await client.files.get("0123456789abcdef0123456789abcdef")
    registration = await client.files.register(url=url, rights_claimed=True)
    assert (await client.files.get(registration.id)).id == registration.id


# -------------------------------------------------------------------------- downloads


async def test_download_create_polls_its_202_then_get_and_sizes_agree(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    client = make_sandbox_client(pending_seconds=0, download_pending_seconds=2)
    generation = await client.generate("a fox to buy")
    gen_id = generation.generation_request_id

    download = await client.downloads.create(gen_id, 0, size_name="1k", project_code="P")

    assert not download.is_pending
    assert download.url == f"{sim(client).cdn_base_url}/cdn/downloads/{gen_id}/0/1k.png"
    assert download.generated_asset_id
    stats = sim(client).stats
    assert stats.count("download_put", 202) == 1
    assert stats.count("download_get", 202) >= 1
    assert stats.count("download_get", 200) == 1
    again = await client.downloads.get(gen_id, 0)
    assert (again.url, again.generated_asset_id) == (download.url, download.generated_asset_id)
    sizes = await client.downloads.sizes(gen_id, 0)
    assert [(s.size_name, s.width, s.height) for s in sizes] == [
        ("1k", 1024, 1024),
        ("4k", 4096, 4096),
    ]


async def test_download_wait_false_and_a_second_put_while_in_progress(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    client = make_sandbox_client(pending_seconds=0, download_pending_seconds=5, time_scale=FROZEN)
    gen_id = (await client.generate("a fox")).generation_request_id

    started = await client.downloads.create(gen_id, 1, wait=False)
    busy = await client.downloads.create(gen_id, 1, wait=False)
    polled = await client.downloads.get(gen_id, 1)

    assert started.is_pending
    assert started.url is None
    assert busy.is_pending, "a 409 (download in progress) reads as pending"
    assert polled.is_pending
    assert sim(client).stats.count("download_put", 409) == 1
    sim(client).advance(5)
    ready = await client.downloads.get(gen_id, 1)
    assert not ready.is_pending
    assert ready.url is not None
    assert ready.url.endswith(f"/{gen_id}/1/4k.png")


async def test_save_streams_a_real_png_into_the_folder(
    make_sandbox_client: SandboxClientFactory, tmp_path: Path
) -> None:
    client = make_sandbox_client(pending_seconds=1, download_pending_seconds=1)
    gen_id = (await client.generate("a fox at sunset", aspect_ratio="16:9")).generation_request_id
    folder = tmp_path / "out" / "nested"

    small = await client.downloads.save(gen_id, 2, folder, size_name="1k")
    large = await client.downloads.save(gen_id, 2, folder, size_name="4k")

    assert small == inside(folder, f"{gen_id}_2_1k.png")
    assert large == inside(folder, f"{gen_id}_2_4k.png")
    assert png_size(small) == (1024, 576)  # what download-sizes reports
    assert png_size(large) == (4096, 2304)
    assert listing(folder) == sorted([small.name, large.name]), "no partial files are left behind"
    stats = sim(client).stats
    assert stats.cdn_requests == 2
    assert stats.cdn_requests_with_credentials == 0


async def test_save_keeps_a_hostile_filename_inside_the_folder(
    make_sandbox_client: SandboxClientFactory, tmp_path: Path
) -> None:
    client = make_sandbox_client(pending_seconds=0, download_pending_seconds=0)
    gen_id = (await client.generate("a fox")).generation_request_id
    folder = tmp_path / "safe"

    path = await client.downloads.save(
        gen_id, 0, folder, size_name="1k", filename="../../escape/../passwd"
    )

    assert path == inside(folder, "passwd.png")
    assert png_size(path) == (1024, 1024)
    assert listing(tmp_path) == ["safe"]


async def test_redownload_gives_a_fresh_url_for_a_bought_asset(
    make_sandbox_client: SandboxClientFactory, tmp_path: Path
) -> None:
    client = make_sandbox_client(pending_seconds=0, download_pending_seconds=0)
    gen_id = (await client.generate("a fox")).generation_request_id
    bought = await client.downloads.create(gen_id, 1, size_name="4k")
    assert bought.generated_asset_id is not None

    again = await client.downloads.redownload(bought.generated_asset_id, size_name="1k")

    assert again.generated_asset_id == bought.generated_asset_id
    assert again.url is not None
    assert again.url.endswith(f"/{gen_id}/1/1k.png")
    path = await client.downloads.fetch(again.url, tmp_path, "again")
    assert path == inside(tmp_path, "again.png")
    assert png_size(path) == (1024, 1024)
    stats = sim(client).stats
    assert stats.redownloads == 1
    assert stats.cdn_requests_with_credentials == 0
    with pytest.raises(errors.NotFoundError):
        await client.downloads.redownload("f" * 32)


async def test_result_and_preview_urls_are_fetched_without_credentials(
    make_sandbox_client: SandboxClientFactory, tmp_path: Path
) -> None:
    client = make_sandbox_client(pending_seconds=0)
    generation = await client.generate("a fox", aspect_ratio="3:4")
    image = generation.images[0]
    assert image.url is not None
    assert image.preview_urls

    full = await client.downloads.fetch(image.url, tmp_path, "result")
    preview_url = image.preview_urls[0].image_url
    assert preview_url is not None
    preview = await client.downloads.fetch(preview_url, tmp_path, "preview")

    assert png_size(full) == (192, 256)
    assert png_size(preview) == (48, 64)
    stats = sim(client).stats
    assert stats.cdn_requests == 2
    assert stats.cdn_requests_with_credentials == 0


# ---------------------------------------------------------------------------- history


async def test_history_list_fetches_only_the_pages_it_needs(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    client = make_sandbox_client(pending_seconds=0)
    ids = [(await client.generate(f"prompt {i}")).generation_request_id for i in range(7)]
    newest_first = ids[::-1]
    stats = sim(client).stats

    assert await history_ids(client, page_size=3) == newest_first
    assert stats.count("history") == 3, "7 items in pages of 3"
    assert await history_ids(client, page_size=7) == newest_first
    assert stats.count("history") == 4, "an exactly full page needs no empty page after it"

    seen: list[str] = []
    async with contextlib.aclosing(client.history.list(page_size=3)) as items:
        async for item in items:
            seen.append(item.generation_request_id)
            if len(seen) == 4:
                break
    assert seen == newest_first[:4]
    assert stats.count("history") == 6, "stopping at item 4 of 7 reads pages 1 and 2 only"


async def test_history_filters_reach_the_service(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    client = make_sandbox_client(pending_seconds=0, time_scale=FROZEN)
    drawn = await client.generate("a drawn fox", media_type="illustration", product_id=9)
    photo = await client.generate("a photographed fox", media_type="photography")
    both = [photo.generation_request_id, drawn.generation_request_id]
    # Aware datetimes east of UTC: the "+05:00" must survive the query string.
    an_hour_ago = dt.datetime.now(dt.timezone(dt.timedelta(hours=5))) - dt.timedelta(hours=1)

    assert await history_ids(client, media_type="illustration") == [drawn.generation_request_id]
    assert await history_ids(client, product_ids=[9]) == [drawn.generation_request_id]
    assert await history_ids(client, date_start="2999-01-01") == []
    assert await history_ids(client, date_start=an_hour_ago) == both
    assert await history_ids(client, date_end=an_hour_ago) == []
    assert await history_ids(client, date_start=an_hour_ago.date() - dt.timedelta(days=1)) == both
    page = await client.history.page(1, page_size=1)
    assert page.result_count == 2
    assert [g.generation_request_id for g in page.generations] == [photo.generation_request_id]


# ------------------------------------------------------------------------------- auth


async def test_expired_token_mid_session_is_refreshed_and_the_call_replayed_once(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    client = make_sandbox_client(pending_seconds=0, time_scale=FROZEN, token_ttl=100)
    first = await client.generate("before expiry")
    stats = sim(client).stats
    assert stats.token_requests == 1

    sim(client).advance(101)
    second = await client.generate("after expiry")
    again = await client.generations.get(first.generation_request_id)

    assert_finished(second)
    assert again.generation_request_id == first.generation_request_id
    assert stats.token_requests == 2
    assert stats.unauthorized == 1
    assert stats.count("generate", 401) == 1
    assert stats.count("generate", 200) == 2
    assert stats.submissions == 2, "the 401 created nothing and the replay created one"


async def test_token_is_refreshed_ahead_of_expiry_without_a_401(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    # 200 simulated seconds at 1 ms each: the token lives 0.2 s and is renewed after 0.1 s.
    client = make_sandbox_client(pending_seconds=0, time_scale=0.001, token_ttl=200)
    await client.generate("one")
    await anyio.sleep(0.12)
    await client.generate("two")

    stats = sim(client).stats
    assert stats.token_requests == 2
    assert stats.unauthorized == 0


async def test_one_token_request_for_many_concurrent_calls(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    client = make_sandbox_client(pending_seconds=0)
    generation = await client.generate("warm up the pool")
    # A second client of the same sandbox starts with no token: 50 tasks need one at once.
    async with AsyncGettyAI.sandbox(sim(client), poll_interval=0.002) as other:
        results = await asyncio.gather(
            *(other.generations.get(generation.generation_request_id) for _ in range(50)),
            return_exceptions=True,
        )
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert sim(client).stats.token_requests == 2, "one for each client, however many tasks"


async def test_wrong_secret_is_an_authentication_error_that_hides_the_secret(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    client = make_sandbox_client(
        api_keys={"sandbox-key": "the-right-secret"}, api_secret="wrong-secret-XYZ"
    )

    with pytest.raises(errors.AuthenticationError) as caught:
        await client.generate("a fox")

    assert caught.value.status_code == 401
    assert "wrong-secret-XYZ" not in str(caught.value)
    assert "wrong-secret-XYZ" not in repr(client)
    assert sim(client).stats.submissions_attempted == 0
    assert client.limiter.in_use == 0


async def test_credentials_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, fast_retries: RetryPolicy
) -> None:
    sandbox = Sandbox(pending_seconds=0, api_keys={"env-key": "env-secret"})
    monkeypatch.setenv("GETTY_API_KEY", "env-key")
    monkeypatch.setenv("GETTY_API_SECRET", "env-secret")
    monkeypatch.setenv("GETTY_BASE_URL", sandbox.api_base_url)
    monkeypatch.setenv("GETTY_TOKEN_URL", sandbox.token_url)

    async with AsyncGettyAI(transport=sandbox.transport(), retry_policy=fast_retries) as client:
        generation = await client.generate("a fox from the environment")

    assert_finished(generation)
    assert sandbox.stats.tokens_issued == 1
    assert sandbox.stats.unauthorized == 0


async def test_password_grant_renews_its_token_with_the_refresh_token(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    client = make_sandbox_client(
        pending_seconds=0,
        time_scale=FROZEN,
        token_ttl=100,
        api_secret=None,
        username="photo-editor",
        password="hunter2-secret",
    )
    await client.generate("with a user's token")
    sim(client).advance(101)
    await client.generate("with a renewed token")

    stats = sim(client).stats
    assert (stats.token_requests, stats.tokens_issued, stats.unauthorized) == (2, 2, 1)
    assert "hunter2-secret" not in repr(client)


async def test_api_key_alone_works_when_no_token_is_required(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    relaxed = make_sandbox_client(pending_seconds=0, require_token=False, api_secret=None)
    strict = make_sandbox_client(pending_seconds=0, api_secret=None)

    assert_finished(await relaxed.generate("key only"))
    with pytest.raises(errors.AuthenticationError, match="Bearer"):
        await strict.generate("key only")
    assert sim(relaxed).stats.token_requests == sim(strict).stats.token_requests == 0
    assert sim(strict).stats.count("generate", 401) == 1, "nothing to refresh: no replay"


# ----------------------------------------------------------------------------- expiry


async def test_gone_after_retention(make_sandbox_client: SandboxClientFactory) -> None:
    client = make_sandbox_client(
        pending_seconds=0, download_pending_seconds=0, time_scale=FROZEN, retention_seconds=1000
    )
    gen_id = (await client.generate("an old fox")).generation_request_id
    bought = await client.downloads.create(gen_id, 0)
    assert bought.generated_asset_id is not None

    sim(client).advance(1001)

    calls = {
        "get": client.generations.get(gen_id),
        "wait": client.generations.wait(gen_id),
        "variations": client.generations.variations(gen_id, 0),
        "history.get": client.history.get(gen_id),
        "sizes": client.downloads.sizes(gen_id, 0),
        "download": client.downloads.create(gen_id, 0),
        "redownload": client.downloads.redownload(bought.generated_asset_id),
    }
    for name, call in calls.items():
        with pytest.raises(errors.GoneError) as caught:
            await call
        assert caught.value.status_code == 410, name
    assert client.limiter.in_use == 0


async def test_gone_frees_the_slot_of_a_parked_generation(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    client = make_sandbox_client(pending_seconds=10, time_scale=FROZEN, retention_seconds=100)
    pending = await client.generations.create("a forgotten fox", wait=False)
    assert client.limiter.in_use == 1

    sim(client).advance(101)
    with pytest.raises(errors.GoneError):
        await client.generations.get(pending.generation_request_id)

    await leases_back(client)  # the poller got the 410 too: the lease is back


async def test_unknown_ids_are_not_found(make_sandbox_client: SandboxClientFactory) -> None:
    client = make_sandbox_client(pending_seconds=0)
    gen_id = (await client.generate("a fox")).generation_request_id
    unknown = "does-not-exist"

    calls = {
        "get": client.generations.get(unknown),
        "wait": client.generations.wait(unknown),
        "variations": client.generations.variations(unknown, 0),
        "refine by generation": client.generations.remove_background(
            generation_request_id=unknown, index=0
        ),
        "history.get": client.history.get(unknown),
        "sizes": client.downloads.sizes(unknown, 0),
        "image index past the end": client.downloads.sizes(gen_id, 4),
        "download never started": client.downloads.get(gen_id, 0),
        "file": client.files.get("f" * 32),
    }
    for name, call in calls.items():
        with pytest.raises(errors.NotFoundError) as caught:
            await call
        assert caught.value.status_code == 404, name
        assert isinstance(caught.value.body, dict), name
        assert caught.value.body.get("message"), name
    assert sim(client).stats.submissions == 1
    assert client.limiter.in_use == 0


async def test_blocked_images(make_sandbox_client: SandboxClientFactory) -> None:
    client = make_sandbox_client(pending_seconds=1, blocked_rate=1.0)
    generation = await client.generate("something the policy blocks")

    assert not generation.is_pending
    assert generation.images == []
    assert generation.results is not None
    assert len(generation.blocked) == 4
    assert all(image.url is None for image in generation.blocked)
    with pytest.raises(errors.NotFoundError):
        await client.downloads.create(generation.generation_request_id, 0)
    with pytest.raises(errors.NotFoundError):
        await client.generations.variations(generation.generation_request_id, 0)
    assert client.limiter.in_use == 0


# ----------------------------------------------------------------------------- limits


async def _generate_concurrently(client: AsyncGettyAI, count: int) -> list[Generation]:
    results = await asyncio.gather(
        *(client.generate(f"concurrent prompt {i}") for i in range(count)),
        return_exceptions=True,
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == [], f"{len(failures)} of {count} failed, first: {failures[0]!r}"
    return [r for r in results if isinstance(r, Generation)]


async def test_concurrent_generates_within_the_account_cap_never_see_a_429(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    client = make_sandbox_client(pending_seconds=2, pending_limit=4, max_pending=4)

    generations = await _generate_concurrently(client, 40)

    assert len({g.generation_request_id for g in generations}) == 40
    assert all(len(g.images) == 4 for g in generations)
    stats = sim(client).stats
    assert stats.rate_limited_pending == 0
    assert stats.peak_pending == 4, "the cap is used, not just respected"
    assert stats.submissions == stats.submissions_attempted == 40
    assert stats.token_requests == 1
    assert client.limiter.in_use == 0


async def test_concurrent_generates_above_the_account_cap_all_succeed(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    # The client allows 16 pending generations but the account only 4: the service's
    # 429s must turn into waiting, not into failed calls.
    client = make_sandbox_client(pending_seconds=2, pending_limit=4, max_pending=16)

    generations = await _generate_concurrently(client, 40)

    assert len({g.generation_request_id for g in generations}) == 40
    stats = sim(client).stats
    assert stats.peak_pending <= 4
    assert stats.rate_limited_pending > 0
    assert stats.submissions == 40, "a 429 creates nothing, and nothing is created twice"
    assert client.limiter.in_use == 0


async def test_client_qps_budget_keeps_under_the_service_rate_limit(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    # Real time (time_scale=1): the sandbox allows 400 requests/s in bursts of up to 10,
    # the client paces itself to 100/s (so a 100 ms stall of the event loop is tolerated).
    # Generations finish at once, and max_pending lets all 20 calls start together.
    rules: dict[str, Any] = {
        "time_scale": 1.0,
        "qps": 400,
        "qps_burst": 10,
        "retry_after": 0.01,
        "pending_seconds": 0,
        "max_pending": 32,
    }
    paced = make_sandbox_client(max_requests_per_second=100, **rules)

    generations = await _generate_concurrently(paced, 20)

    assert len(generations) == 20
    assert sim(paced).stats.rate_limited_qps == 0
    assert sim(paced).stats.submissions == 20

    # Control: without the budget a burst past the bucket trips the service's limit
    # (a rate so low that no timing on a loaded machine refills the bucket in time).
    unpaced = make_sandbox_client(retry_policy=RetryPolicy(max_retries=0), **(rules | {"qps": 1}))
    results = await asyncio.gather(
        *(unpaced.generate(f"p{i}") for i in range(20)), return_exceptions=True
    )
    assert any(isinstance(r, errors.RateLimitError) for r in results)
    assert sim(unpaced).stats.rate_limited_qps > 0


async def test_auto_cap_finds_the_account_cap_with_few_429s_for_direct_calls(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    client = make_sandbox_client(pending_seconds=2, pending_limit=4, max_pending="auto")

    generations = await _generate_concurrently(client, 60)

    assert len(generations) == 60
    stats = sim(client).stats
    assert stats.peak_pending <= 4
    # Slow start, then a probe one slot higher every few rounds: each probe costs one 429.
    assert stats.rate_limited_pending <= 12, f"{stats.rate_limited_pending} 429s for 60"


async def test_as_completed_yields_parked_generations_and_frees_their_slots(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    client = make_sandbox_client(pending_seconds=(1, 6), max_pending=8)
    ids = [
        (await client.generations.create(f"parked {i}", wait=False)).generation_request_id
        for i in range(6)
    ]
    assert client.limiter.in_use == 6

    finished = [g async for g in client.generations.as_completed(ids)]

    assert sorted(g.generation_request_id for g in finished) == sorted(ids)
    assert all(len(g.images) == 4 for g in finished)
    assert client.limiter.in_use == 0
    assert sim(client).stats.submissions == 6


async def test_cancelling_generate_many_during_its_posts_loses_no_generation(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    # Every reply is held 50 ms, so the four POSTs are still in flight at the cancel.
    client = make_sandbox_client(pending_seconds=1, max_pending=4, latency=5.0)
    await client.history.page()  # the token in hand first

    with anyio.move_on_after(0.02):
        async for _ in client.generate_many([f"cancelled {i}" for i in range(10)]):
            pass

    # The POSTs already on the wire were let finish (cut off, their fate would be
    # unknown); their generations hold leases until the service reports them done.
    await leases_back(client)
    assert sim(client).stats.submissions_attempted == 4
    assert sim(client).stats.submissions == 4


# ----------------------------------------------------------------------------- faults


async def test_5xx_faults_are_retried_transparently(
    make_sandbox_client: SandboxClientFactory, fast_retries: RetryPolicy, tmp_path: Path
) -> None:
    # Nothing pending, so the sequence of requests (and of injected faults) is fixed.
    policy = dataclasses.replace(fast_retries, max_retries=12)
    client = make_sandbox_client(
        pending_seconds=0, download_pending_seconds=0, error_rate=0.3, retry_policy=policy
    )

    generations = [await client.generate(f"flaky {i}") for i in range(8)]
    path = await client.downloads.save(generations[0].generation_request_id, 0, tmp_path)
    listed = await history_ids(client, page_size=3)

    assert all(len(g.images) == 4 for g in generations)
    assert png_size(path)[0] > 0
    assert listed == [g.generation_request_id for g in reversed(generations)]
    stats = sim(client).stats
    assert stats.faults_injected["error"] > 0
    assert stats.count("generate", 503) > 0, "generation POSTs were among those retried"
    assert stats.submissions == 8, "a 503 before processing is safe to replay: no duplicates"


async def test_connection_drops_before_processing_are_retried_on_gets(
    make_sandbox_client: SandboxClientFactory, fast_retries: RetryPolicy
) -> None:
    # How many polls happen depends on timing, so the faults drawn do too: enough retries
    # that a run of drops cannot exhaust them (0.5 ** 31).
    client = make_sandbox_client(
        pending_seconds=2,
        download_pending_seconds=2,
        route_drop_rates={"get_generation": 0.5, "download_get": 0.5, "history": 0.5},
        retry_policy=dataclasses.replace(fast_retries, max_retries=30),
    )

    generation = await client.generate("a fox over a bad line")
    download = await client.downloads.create(generation.generation_request_id, 0)
    listed = await history_ids(client)

    assert_finished(generation)
    assert download.url is not None
    assert listed == [generation.generation_request_id]
    stats = sim(client).stats
    assert stats.count("get_generation", 0) + stats.count("download_get", 0) > 0
    assert stats.submissions == 1


async def test_connection_drop_before_a_generation_post_is_not_replayed(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    client = make_sandbox_client(pending_seconds=1, route_drop_rates={"generate": 1.0})

    with pytest.raises(errors.SubmissionUncertainError) as caught:
        await client.generate("a fox")

    # The client cannot tell a drop before processing from one after: it must not resend,
    # and the history (checked) shows no such generation.
    assert caught.value.history_checked
    assert isinstance(caught.value.__cause__, errors.APIConnectionError)
    assert caught.value.__cause__.may_have_been_sent
    stats = sim(client).stats
    assert stats.submissions_attempted == 1
    assert stats.submissions == 0
    assert client.limiter.in_use == 0


async def test_connection_drop_after_a_generation_post_is_adopted_not_replayed(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    client = make_sandbox_client(
        pending_seconds=1, route_drop_rates={"generate": 1.0}, drop_after_processing=True
    )

    # The reply was lost after the service acted: the generation is found in the
    # history and waited for, instead of being written off or paid for twice.
    generation = await client.generate("a costly fox")

    assert_finished(generation)
    stats = sim(client).stats
    assert stats.submissions == 1, "the generation exists (and was paid for once)"
    assert stats.submissions_attempted == 1, "exactly one POST: no silent replay"
    assert stats.count("generate", 0) == 1
    assert client.limiter.in_use == 0


async def test_connection_drop_after_processing_on_a_get_is_replayed(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    client = make_sandbox_client(pending_seconds=0)
    gen_id = (await client.generate("a fox")).generation_request_id
    sim(client).faults.drop_after_processing = True
    sim(client).faults.route_drop_rates["download_sizes"] = 0.5

    for _ in range(5):
        sizes = await client.downloads.sizes(gen_id, 0)
        assert len(sizes) == 2

    assert sim(client).stats.count("download_sizes", 0) > 0


# ------------------------------------------------------------------------------- trio


def test_client_and_sandbox_under_trio(tmp_path: Path, fast_retries: RetryPolicy) -> None:
    """The same stack under trio: polling, a download, 429 waits and a small fan-out."""

    async def main() -> tuple[Generation, Path, list[Generation], list[bool], Sandbox]:
        assert sniffio.current_async_library() == "trio"
        async with AsyncGettyAI.sandbox(
            seed=2,
            pending_seconds=2,
            download_pending_seconds=1,
            time_scale=0.01,
            pending_limit=3,
            max_pending=6,
            poll_interval=0.002,
            retry_policy=fast_retries,
        ) as client:
            generation = await client.generate("a fox under trio")
            path = await client.downloads.save(
                generation.generation_request_id, 0, tmp_path, size_name="1k"
            )
            concurrent: list[Generation] = []

            async def one(i: int) -> None:
                concurrent.append(await client.generate(f"trio prompt {i}"))

            async with anyio.create_task_group() as tg:
                for i in range(12):
                    tg.start_soon(one, i)
            oks = [o.ok async for o in client.generate_many(f"fan-out {i}" for i in range(10))]
            return generation, path, concurrent, oks, sim(client)

    generation, path, concurrent, oks, sandbox = anyio.run(main, backend="trio")

    assert_finished(generation)
    assert png_size(path) == (1024, 1024)
    assert len({g.generation_request_id for g in concurrent}) == 12
    assert oks == [True] * 10
    assert sandbox.stats.submissions == 1 + 12 + 10
    assert sandbox.stats.peak_pending <= 3


# ------------------------------------------------------------------------------ DESIGN


async def test_the_design_usage_snippet_runs_against_the_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DESIGN.md's snippet, with the sandbox in place of api.gettyimages.com."""
    from getty_ai_async import (  # noqa: F401 (the snippet's import line must work)
        AsyncGettyAI,
        Download,
        GeneratedImage,
        Generation,
        GenerationOutcome,
        GenerationRequest,
        errors,
    )

    monkeypatch.chdir(tmp_path)
    await anyio.Path("mask.jpg").write_bytes(JPEG)
    prompts_or_requests = [
        "a red fox in snow",
        GenerationRequest(prompt="a grey wolf", aspect_ratio="4:3"),
        {"key": "owl", "prompt": "a snowy owl", "mood": "cool"},
    ]

    async with AsyncGettyAI.sandbox(
        seed=11,
        pending_seconds=1,
        download_pending_seconds=1,
        time_scale=0.01,
        api_key="my-key",
        api_secret="my-secret",
        max_pending=8,
        max_requests_per_second=None,
        poll_interval=0.002,
        timeout=5.0,
        max_retries=4,
    ) as client:
        gen = await client.generate("a red fox in snow", aspect_ratio="16:9")
        pending = await client.generations.create(prompt="...", wait=False)
        gen = await client.generations.wait(pending.generation_request_id)
        gen_id, index = gen.generation_request_id, 0
        gen = await client.generations.get(gen_id)
        assert not gen.is_pending
        mask_url = await client.uploads.upload("mask.jpg")
        reg = await client.files.register(url=mask_url, rights_claimed=True)
        edits = [
            await client.generations.refine(asset_id="12345", mask_url=mask_url, prompt="p"),
            await client.generations.refine(
                generation_request_id=gen_id, index=index, mask_url=mask_url, prompt="p"
            ),
            await client.generations.extend(
                generation_request_id=gen_id, index=0, left_percentage=0.2
            ),
            await client.generations.variations(gen_id, index),
            await client.generations.remove_background(asset_id="12345"),
            await client.generations.remove_object(asset_id="12345", mask_url=mask_url),
            await client.generations.influence_color(
                generation_request_id=gen_id, index=1, prompt="p", noise_level=0.5
            ),
            await client.generations.influence_composition(
                asset_id="12345", prompt="p", influence_level=0.5
            ),
        ]
        product_url = await client.uploads.upload(JPEG, file_name="product.jpg")
        product = await client.files.register(
            url=product_url, rights_claimed=True, category="CustomerProduct"
        )
        edits.append(
            await client.generations.generate_background(
                file_registration_id=product.id, prompt="on a beach"
            )
        )
        dl = await client.downloads.create(gen_id, index, size_name="4k")
        sizes = await client.downloads.sizes(gen_id, index)
        path = await client.downloads.save(gen_id, index, "out/", size_name="1k")
        assert dl.generated_asset_id is not None
        again = await client.downloads.redownload(
            generated_asset_id=dl.generated_asset_id, size_name="4k"
        )
        history = [item async for item in client.history.list(page_size=50)]

        outcomes: list[GenerationOutcome] = []
        async for outcome in client.generate_many(prompts_or_requests, journal="run.sqlite"):
            assert outcome.request is not None
            assert outcome.error is None, outcome.error
            assert outcome.generation is not None
            outcomes.append(outcome)
        rerun = [o async for o in client.generate_many(prompts_or_requests, journal="run.sqlite")]
        stats = sim(client).stats

    assert isinstance(dl, Download)
    assert dl.url
    assert again.url
    assert all(isinstance(g, Generation) and len(g.images) == 4 for g in edits)
    assert all(isinstance(i, GeneratedImage) for i in gen.images)
    assert isinstance(reg.id, str)
    assert [s.size_name for s in sizes] == ["1k", "4k"]
    assert path == inside(tmp_path / "out", f"{gen_id}_0_1k.png")
    assert png_size(path) == (1024, 1024)
    assert len(history) == 2 + len(edits)
    assert sorted(o.index for o in outcomes) == [0, 1, 2]
    assert {o.key for o in outcomes} >= {"owl"}
    assert sorted(o.index for o in rerun) == [0, 1, 2]
    assert all(o.replayed and o.ok for o in rerun), "a finished journal is replayed, not re-sent"
    assert stats.submissions == 2 + len(edits) + 3
    assert stats.cdn_requests_with_credentials == 0
    assert (tmp_path / "run.sqlite").is_file()
