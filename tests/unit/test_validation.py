"""Bad input fails before any HTTP request, with `ValidationError.field` naming the culprit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pydantic
import pytest
import respx
from hypothesis import example, given, settings
from hypothesis import strategies as st

from getty_ai_async import AsyncGettyAI, GenerationRequest, RetryPolicy, errors
from getty_ai_async._routes import ROUTES

from ._helpers import API, API_KEY, ClientFactory

MASK = "https://api.test/v3/search/by-image/uploads/m.jpg"

Call = Callable[[AsyncGettyAI], Awaitable[Any]]

CASES: list[tuple[str, Call, str]] = [
    # prompts and enums
    ("empty prompt", lambda c: c.generations.create(""), "prompt"),
    ("blank prompt", lambda c: c.generations.create("  \t\n "), "prompt"),
    ("aspect ratio", lambda c: c.generations.create("p", aspect_ratio="2:1"), "aspect_ratio"),
    ("aspect ratio 16:10", lambda c: c.generate("p", aspect_ratio="16:10"), "aspect_ratio"),
    ("mood", lambda c: c.generations.create("p", mood="sad"), "mood"),
    ("media type", lambda c: c.generations.create("p", media_type="video"), "media_type"),
    ("lens type", lambda c: c.generations.create("p", lens_type="fisheye"), "lens_type"),
    ("depth", lambda c: c.generations.create("p", depth_of_field="medium"), "depth_of_field"),
    ("seed", lambda c: c.generations.create("p", seed="lucky"), "seed"),  # type: ignore[arg-type]
    ("product id", lambda c: c.generations.create("p", product_id="abc"), "product_id"),  # type: ignore[arg-type]
    # extend
    (
        "extend all zero",
        lambda c: c.generations.extend(
            asset_id="A",
            left_percentage=0,
            right_percentage=0,
            top_percentage=0,
            bottom_percentage=0,
        ),
        "left_percentage",
    ),
    ("extend nothing", lambda c: c.generations.extend(asset_id="A"), "left_percentage"),
    (
        "extend negative",
        lambda c: c.generations.extend(asset_id="A", left_percentage=0.5, right_percentage=-0.1),
        "right_percentage",
    ),
    # references
    (
        "refine both references",
        lambda c: c.generations.refine(
            asset_id="A", generation_request_id="g", index=0, mask_url=MASK
        ),
        "reference_asset_id",
    ),
    ("refine no reference", lambda c: c.generations.refine(mask_url=MASK), "reference_asset_id"),
    ("refine empty mask", lambda c: c.generations.refine(asset_id="A", mask_url=""), "mask_url"),
    (
        "id without index",
        lambda c: c.generations.extend(generation_request_id="g", left_percentage=0.1),
        "index",
    ),
    (
        "index without id",
        lambda c: c.generations.remove_background(index=0),
        "generation_request_id",
    ),
    (
        "negative reference index",
        lambda c: c.generations.remove_object(generation_request_id="g", index=-1, mask_url=MASK),
        "index",
    ),
    (
        "influence two references",
        lambda c: c.generations.influence_color(asset_id="A", file_registration_id="F"),
        "reference_asset_id",
    ),
    (
        "noise level",
        lambda c: c.generations.influence_color(asset_id="A", noise_level=1.5),
        "noise_level",
    ),
    (
        "influence level",
        lambda c: c.generations.influence_composition(asset_id="A", influence_level=-0.1),
        "influence_level",
    ),
    (
        "background empty registration",
        lambda c: c.generations.generate_background(file_registration_id=""),
        "reference_file_registration_id",
    ),
    # sizes
    ("size 2k", lambda c: c.downloads.create("g", 0, size_name="2k"), "size_name"),
    ("redownload size", lambda c: c.downloads.redownload("asset", size_name="8K"), "size_name"),
    ("save size", lambda c: c.downloads.save("g", 0, size_name="2k"), "size_name"),
    ("redownload empty id", lambda c: c.downloads.redownload(""), "generated_asset_id"),
]

# Dot segments: "." would make httpx send `GET /v3/ai/image-generations` (RFC 3986
# removes it), so they are refused like "/" (NFKC folds the fullwidth dot into ".").
DOT_SEGMENTS = [".", "..", "...", "\uff0e"]
BAD_IDS = [*DOT_SEGMENTS, "a/b", "a..b", "a?b", "a#b", "a%2Fb", "a b", "", "  ", "a\\b"]
ID_CALLS: list[tuple[str, Callable[[AsyncGettyAI, Any], Awaitable[Any]], str]] = [
    ("get", lambda c, i: c.generations.get(i), "generation_request_id"),
    ("wait", lambda c, i: c.generations.wait(i), "generation_request_id"),
    ("variations", lambda c, i: c.generations.variations(i, 0), "generation_request_id"),
    ("download", lambda c, i: c.downloads.create(i, 0), "generation_request_id"),
    ("download get", lambda c, i: c.downloads.get(i, 0), "generation_request_id"),
    ("sizes", lambda c, i: c.downloads.sizes(i, 0), "generation_request_id"),
    ("history", lambda c, i: c.history.get(i), "generation_request_id"),
    ("file", lambda c, i: c.files.get(i), "file_registration_id"),
    ("upload", lambda c, i: c.uploads.upload(b"x", file_name=i), "file_name"),
]
BAD_INDEXES = [-1, True, False, "1", 1.0, None]
INDEX_CALLS: list[tuple[str, Callable[[AsyncGettyAI, Any], Awaitable[Any]]]] = [
    ("variations", lambda c, i: c.generations.variations("g", i)),
    ("download", lambda c, i: c.downloads.create("g", i)),
    ("download get", lambda c, i: c.downloads.get("g", i)),
    ("sizes", lambda c, i: c.downloads.sizes("g", i)),
]


def any_files(folder: Path) -> bool:
    return any(folder.iterdir())


@pytest.mark.parametrize(
    ("call", "field"), [(c, f) for _, c, f in CASES], ids=[n for n, *_ in CASES]
)
async def test_invalid_input_sends_nothing(
    client: AsyncGettyAI, router: respx.MockRouter, tmp_path: Path, call: Call, field: str
) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        await call(client)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert isinstance(caught.value, ValueError)
    assert router.calls.call_count == 0  # not even a token request
    assert client.limiter.in_use == 0
    assert not any_files(tmp_path)


@pytest.mark.parametrize(
    ("call", "field", "bad_id"),
    [
        pytest.param(call, field, bad_id, id=f"{name}-{bad_id!r}")
        for name, call, field in ID_CALLS
        for bad_id in BAD_IDS
        if not (name == "upload" and bad_id == "")  # no name: the client picks a unique one
    ],
)
async def test_ids_that_could_escape_their_segment_are_refused(
    client: AsyncGettyAI,
    router: respx.MockRouter,
    call: Callable[[AsyncGettyAI, Any], Awaitable[Any]],
    field: str,
    bad_id: str,
) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        await call(client, bad_id)
    assert caught.value.field == field
    assert router.calls.call_count == 0


@pytest.mark.parametrize("bad_index", BAD_INDEXES, ids=repr)
@pytest.mark.parametrize("call", [c for _, c in INDEX_CALLS], ids=[n for n, _ in INDEX_CALLS])
async def test_bad_index_is_refused(
    client: AsyncGettyAI,
    router: respx.MockRouter,
    call: Callable[[AsyncGettyAI, Any], Awaitable[Any]],
    bad_index: Any,
) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        await call(client, bad_index)
    assert caught.value.field == "index"
    assert router.calls.call_count == 0


def test_generation_request_forbids_unknown_fields() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        GenerationRequest(prompt="a fox", colour="red")  # type: ignore[call-arg]
    (error,) = caught.value.errors()
    assert error["loc"] == ("colour",)
    assert error["type"] == "extra_forbidden"
    assert isinstance(caught.value, ValueError)


async def test_unknown_keyword_to_create_fails_before_sending(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        await client.generations.create("a fox", colour="red")  # type: ignore[call-arg]
    assert caught.value.field == "colour"
    assert router.calls.call_count == 0


def test_generation_request_is_frozen() -> None:
    request = GenerationRequest(prompt="a fox")
    with pytest.raises(pydantic.ValidationError):
        request.prompt = "a dog"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"api_key": None}, "api_key"),
        ({"api_key": ""}, "api_key"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"wait_timeout": -1}, "wait_timeout"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_pending": 0}, "max_pending"),
        ({"max_pending": True}, "max_pending"),
        ({"max_pending": "lots"}, "max_pending"),
        ({"username": "u"}, "password"),
        ({"password": "p"}, "username"),
        ({"base_url": "ftp://api.test"}, "base_url"),
        ({"base_url": "not a url"}, "base_url"),
    ],
)
def test_client_constructor_validation(kwargs: dict[str, Any], field: str) -> None:
    options: dict[str, Any] = {"api_key": API_KEY, "api_secret": "s"} | kwargs
    with pytest.raises(errors.ValidationError) as caught:
        AsyncGettyAI(**options)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"max_retries": True}, "max_retries"),
        ({"max_retry_time": -1.0}, "max_retry_time"),
        ({"max_retry_time": float("nan")}, "max_retry_time"),
        ({"wait_initial": -0.1}, "wait_initial"),
        ({"wait_max": float("inf")}, "wait_max"),
        ({"wait_jitter": -1.0}, "wait_jitter"),
        ({"rate_limit_wait": -1.0}, "rate_limit_wait"),
        ({"max_retry_after": float("nan")}, "max_retry_after"),
        ({"retry_unsafe_posts": "yes"}, "retry_unsafe_posts"),
    ],
)
def test_retry_policy_refuses_invalid_values(kwargs: dict[str, Any], field: str) -> None:
    """Issue 9.6: `RetryPolicy(max_retries=-1)` used to be accepted."""
    with pytest.raises(errors.ValidationError) as caught:
        RetryPolicy(**kwargs)
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)


def test_retry_policy_accepts_its_edge_values() -> None:
    policy = RetryPolicy(max_retries=0, max_retry_time=float("inf"), wait_jitter=0.0)
    assert policy.max_retries == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"max_retries": 2}, "max_retries"), ({"max_retry_time": 1.0}, "max_retry_time")],
)
def test_retry_settings_beside_a_retry_policy_are_refused(
    kwargs: dict[str, Any], field: str
) -> None:
    """Issue 9.6: `max_retries=` was silently ignored when `retry_policy=` was passed."""
    with pytest.raises(errors.ValidationError) as caught:
        AsyncGettyAI(api_key=API_KEY, retry_policy=RetryPolicy(), **kwargs)
    assert caught.value.field == field
    assert "retry_policy" in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"max_retries": -1}, "max_retries"), ({"max_retry_time": -5}, "max_retry_time")],
)
def test_client_retry_shorthands_are_validated(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        AsyncGettyAI(api_key=API_KEY, **kwargs)
    assert caught.value.field == field


async def test_credentials_from_environment(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, make_client: ClientFactory
) -> None:
    monkeypatch.setenv("GETTY_API_KEY", "env-key")
    monkeypatch.setenv("GETTY_BASE_URL", "https://env.api.test")
    client = make_client(api_key=None, base_url=None, api_secret=None)
    route = router.get("https://env.api.test/v3/ai/generation-history/g1").respond(
        200, json={"generation_request_id": "g1"}
    )
    await client.history.get("g1")
    assert route.calls.last.request.headers["Api-Key"] == "env-key"


# ----------------------------------------------------------- path building property


@settings(derandomize=True, database=None, max_examples=300)
@given(st.text(min_size=1, max_size=40))
@example(".")
@example("a.")
@example(".hidden")
def test_route_path_keeps_any_accepted_id_in_one_segment(value: str) -> None:
    route = ROUTES["variations"]
    refused: errors.ValidationError | None = None
    try:
        path = route.path(generation_request_id=value, index=3)
    except errors.ValidationError as exc:
        refused = exc
    if refused is not None:
        assert refused.field == "generation_request_id"
        return
    segments = path.split("/")
    assert segments[:4] == ["", "v3", "ai", "image-generations"]
    assert len(segments) == 8
    assert unquote(segments[4]) == value
    assert segments[5:] == ["images", "3", "variations"]
    assert not any(ch in segments[4] for ch in "?#")
    # What goes on the wire: httpx removes dot segments ("." and "..") from a path.
    assert httpx.URL(API + path).raw_path.decode("ascii") == path


async def test_dot_segment_id_sends_nothing(client: AsyncGettyAI, router: respx.MockRouter) -> None:
    """Issue 9.5: `get(".")` used to send `GET /v3/ai/image-generations`."""
    router.get(url__startswith=API).respond(200, json={"generation_request_id": "g"})
    for value in DOT_SEGMENTS:
        with pytest.raises(errors.ValidationError) as caught:
            await client.generations.get(value)
        assert caught.value.field == "generation_request_id"
        with pytest.raises(errors.ValidationError) as caught:
            await client.uploads.upload(b"x", file_name=value)
        assert caught.value.field == "file_name"
    assert router.calls.call_count == 0


@settings(derandomize=True, database=None)
@given(st.from_regex(r"[A-Za-z0-9_-]{1,40}", fullmatch=True))
def test_route_path_accepts_plain_ids(value: str) -> None:
    assert ROUTES["get_generation"].path(generation_request_id=value) == (
        f"/v3/ai/image-generations/{value}"
    )


# ------------------------------------------------- reference and interval edge cases


async def test_index_with_asset_id_but_no_generation_is_refused(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    router.post(url__startswith="https://api.test/").respond(
        200, json={"generation_request_id": "g"}
    )
    with pytest.raises(errors.ValidationError) as caught:
        await client.generations.remove_background(asset_id="A1", index=2)
    assert caught.value.field == "generation_request_id"
    assert router.calls.call_count == 0


async def test_wait_refuses_non_positive_poll_interval(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    router.get(url__startswith="https://api.test/").respond(
        200, json={"generation_request_id": "g"}
    )
    with pytest.raises(errors.ValidationError) as caught:
        await client.generations.wait("g", poll_interval=0)
    assert caught.value.field == "poll_interval"
    assert router.calls.call_count == 0
