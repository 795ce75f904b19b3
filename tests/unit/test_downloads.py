"""`client.downloads`: PUT/GET with 202 and 409 polling, sizes, redownload, save to disk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest
import respx

from getty_ai_async import AsyncGettyAI, Download, DownloadSize, RetryPolicy, errors
from getty_ai_async._routes import ROUTES

from ._helpers import CDN, GEN_ID, ClientFactory, assert_api_auth, body, url

DL_PATH = f"/v3/ai/image-generations/{GEN_ID}/images/1/download"
DONE = {"url": f"{CDN}/dl/abc.png?sig=xyz", "generated_asset_id": "asset-9"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


async def test_create_200(client: AsyncGettyAI, router: respx.MockRouter) -> None:
    put = router.put(url(DL_PATH)).respond(200, json=DONE)
    download = await client.downloads.create(
        GEN_ID, 1, size_name="1k", project_code="PC", notes="n"
    )
    assert put.call_count == 1
    request = put.calls.last.request
    assert request.method == "PUT"
    assert body(request) == {"size_name": "1k", "project_code": "PC", "notes": "n"}
    assert_api_auth(request)
    assert isinstance(download, Download)
    assert not download.is_pending
    assert download.url == DONE["url"]
    assert download.generated_asset_id == "asset-9"


async def test_create_defaults_to_4k(client: AsyncGettyAI, router: respx.MockRouter) -> None:
    put = router.put(url(DL_PATH)).respond(200, json=DONE)
    await client.downloads.create(GEN_ID, 1)
    assert body(put.calls.last.request) == {"size_name": "4k"}


async def test_create_202_then_polls_get(client: AsyncGettyAI, router: respx.MockRouter) -> None:
    put = router.put(url(DL_PATH)).respond(202)  # the spec's 202 has no payload
    get = router.get(url(DL_PATH)).mock(
        side_effect=[respx.MockResponse(202), respx.MockResponse(200, json=DONE)]
    )
    download = await client.downloads.create(GEN_ID, 1, size_name="4k")
    assert put.call_count == 1
    assert get.call_count == 2
    assert_api_auth(get.calls.last.request)
    assert not download.is_pending
    assert download.url == DONE["url"]


async def test_create_409_is_treated_as_pending(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    put = router.put(url(DL_PATH)).respond(409, json={"message": "download in progress"})
    get = router.get(url(DL_PATH)).respond(200, json=DONE)
    download = await client.downloads.create(GEN_ID, 1)
    assert put.call_count == 1
    assert get.call_count == 1
    assert download.url == DONE["url"]


async def test_create_wait_false_returns_pending(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    router.put(url(DL_PATH)).respond(202)
    get = router.get(url(DL_PATH)).respond(200, json=DONE)
    download = await client.downloads.create(GEN_ID, 1, wait=False)
    assert download.is_pending
    assert download.url is None
    assert get.call_count == 0


async def test_create_polling_deadline(client: AsyncGettyAI, router: respx.MockRouter) -> None:
    router.put(url(DL_PATH)).respond(202)
    router.get(url(DL_PATH)).respond(202)
    with pytest.raises(errors.GenerationTimeoutError) as caught:
        await client.downloads.create(GEN_ID, 1, timeout=0.03)
    assert caught.value.generation_request_id == GEN_ID
    assert "download" in str(caught.value)


async def test_get_200_and_202(client: AsyncGettyAI, router: respx.MockRouter) -> None:
    router.get(url(DL_PATH)).mock(
        side_effect=[respx.MockResponse(202), respx.MockResponse(200, json=DONE)]
    )
    first = await client.downloads.get(GEN_ID, 1)
    second = await client.downloads.get(GEN_ID, 1)
    assert first.is_pending
    assert not second.is_pending
    assert second.generated_asset_id == "asset-9"


async def test_sizes(client: AsyncGettyAI, router: respx.MockRouter) -> None:
    route = router.get(url(f"/v3/ai/image-generations/{GEN_ID}/images/0/download-sizes")).respond(
        200,
        json={
            "download_sizes": [
                {"size_name": "1k", "width": 1024, "height": 768},
                {"size_name": "4k", "width": 4096, "height": 3072},
            ]
        },
    )
    sizes = await client.downloads.sizes(GEN_ID, 0)
    assert route.call_count == 1
    assert_api_auth(route.calls.last.request)
    assert sizes == [
        DownloadSize(size_name="1k", width=1024, height=768),
        DownloadSize(size_name="4k", width=4096, height=3072),
    ]


async def test_redownload(client: AsyncGettyAI, router: respx.MockRouter) -> None:
    route = router.post(url("/v3/ai/redownloads")).respond(200, json=DONE)
    download = await client.downloads.redownload("asset-9", size_name="1k", product_id=4)
    request = route.calls.last.request
    assert body(request) == {"generated_asset_id": "asset-9", "size_name": "1k", "product_id": 4}
    assert_api_auth(request)
    assert download.url == DONE["url"]
    assert not download.is_pending


# ------------------------------------------- a purchase whose reply never came

LOST_REPLIES = [
    httpx.ReadTimeout("read timed out"),
    httpx.RemoteProtocolError("server disconnected"),
    httpx.ReadError("connection reset"),
]


@pytest.mark.parametrize("lost", LOST_REPLIES, ids=lambda e: type(e).__name__)
async def test_lost_put_reply_is_resolved_by_get_not_bought_twice(
    client: AsyncGettyAI, router: respx.MockRouter, lost: Exception
) -> None:
    """Issue 9.1: a PUT whose reply was lost was replayed: one `create` bought twice."""
    put = router.put(url(DL_PATH)).mock(side_effect=[lost, respx.MockResponse(200, json=DONE)])
    get = router.get(url(DL_PATH)).respond(200, json=DONE)
    download = await client.downloads.create(GEN_ID, 1)
    assert put.call_count == 1
    assert get.call_count == 1
    assert download.url == DONE["url"]


async def test_lost_put_reply_then_pending_download_is_polled(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    put = router.put(url(DL_PATH)).mock(side_effect=httpx.ReadTimeout("slow"))
    get = router.get(url(DL_PATH)).mock(
        side_effect=[respx.MockResponse(202), respx.MockResponse(202), ok_download()]
    )
    download = await client.downloads.create(GEN_ID, 1)
    assert put.call_count == 1
    assert get.call_count == 3
    assert download.url == DONE["url"]


async def test_lost_put_reply_with_wait_false_returns_the_pending_download(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    put = router.put(url(DL_PATH)).mock(side_effect=httpx.ReadTimeout("slow"))
    router.get(url(DL_PATH)).respond(202)
    download = await client.downloads.create(GEN_ID, 1, wait=False)
    assert download.is_pending
    assert put.call_count == 1


async def test_put_that_did_not_take_effect_is_sent_again(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    """GET answers 404 (no download started): only then is the PUT sent again."""
    put = router.put(url(DL_PATH)).mock(
        side_effect=[httpx.RemoteProtocolError("dropped"), ok_download()]
    )
    get = router.get(url(DL_PATH)).respond(404, json={"message": "no download"})
    download = await client.downloads.create(GEN_ID, 1, size_name="1k")
    assert put.call_count == 2
    assert get.call_count == 1
    assert [body(call.request) for call in put.calls] == [{"size_name": "1k"}] * 2
    assert download.url == DONE["url"]


async def test_put_resent_at_most_max_retries_times(
    make_client: ClientFactory, router: respx.MockRouter
) -> None:
    put = router.put(url(DL_PATH)).mock(side_effect=httpx.ReadTimeout("slow"))
    get = router.get(url(DL_PATH)).respond(404)
    client = make_client(retry_policy=RetryPolicy(max_retries=2, wait_initial=0.001))
    with pytest.raises(errors.APITimeoutError) as caught:
        await client.downloads.create(GEN_ID, 1)
    assert caught.value.may_have_been_sent
    assert put.call_count == 3
    assert get.call_count == 3


async def test_gateway_timeout_on_put_is_resolved_by_get(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    put = router.put(url(DL_PATH)).mock(side_effect=[respx.MockResponse(504), ok_download()])
    get = router.get(url(DL_PATH)).respond(200, json=DONE)
    download = await client.downloads.create(GEN_ID, 1)
    assert (put.call_count, get.call_count) == (1, 1)
    assert download.url == DONE["url"]


async def test_lost_put_reply_that_cannot_be_checked_is_not_replayed(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    put = router.put(url(DL_PATH)).mock(side_effect=httpx.ReadTimeout("slow"))
    get = router.get(url(DL_PATH)).respond(503)
    with pytest.raises(errors.APITimeoutError) as caught:
        await client.downloads.create(GEN_ID, 1)
    assert put.call_count == 1
    assert get.call_count == 1 + client._transport.policy.max_retries
    assert caught.value.may_have_been_sent
    assert "may have been bought" in str(caught.value)
    assert isinstance(caught.value.__cause__, errors.InternalServerError)


async def test_put_not_sent_is_retried_without_asking(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    """Nothing left the machine (connect error) or the service refused (429, 503): resend."""
    put = router.put(url(DL_PATH)).mock(
        side_effect=[
            httpx.ConnectError("refused"),
            respx.MockResponse(503),
            respx.MockResponse(429, headers={"Retry-After": "0"}),
            ok_download(),
        ]
    )
    get = router.get(url(DL_PATH)).respond(200, json=DONE)
    await client.downloads.create(GEN_ID, 1)
    assert put.call_count == 4
    assert get.call_count == 0


async def test_save_buys_once_when_the_put_reply_is_lost(
    client: AsyncGettyAI, router: respx.MockRouter, tmp_path: Path
) -> None:
    put = router.put(url(DL_PATH)).mock(side_effect=[httpx.ReadTimeout("slow"), ok_download()])
    router.get(url(DL_PATH)).respond(200, json=DONE)
    router.get(f"{CDN}/dl/abc.png").respond(200, content=PNG, headers={"Content-Type": "image/png"})
    path = await client.downloads.save(GEN_ID, 1, tmp_path)
    assert put.call_count == 1
    assert path.read_bytes() == PNG


@pytest.mark.parametrize("lost", [httpx.ReadTimeout("slow"), respx.MockResponse(504)], ids=str)
async def test_redownload_whose_reply_was_lost_is_not_replayed(
    make_client: ClientFactory, router: respx.MockRouter, lost: object
) -> None:
    """A redownload is a purchase too, and nothing can tell whether it took effect: not
    even `retry_unsafe_posts` (meant for generation POSTs) replays it."""
    route = router.post(url("/v3/ai/redownloads")).mock(side_effect=[lost, ok_download()])
    client = make_client(retry_policy=RetryPolicy(retry_unsafe_posts=True, wait_initial=0.001))
    with pytest.raises(errors.GettyAIError) as caught:
        await client.downloads.redownload("asset-9")
    assert route.call_count == 1
    assert "may have been bought" in str(caught.value)


async def test_redownload_not_sent_is_retried(
    client: AsyncGettyAI, router: respx.MockRouter
) -> None:
    route = router.post(url("/v3/ai/redownloads")).mock(
        side_effect=[httpx.ConnectError("refused"), respx.MockResponse(503), ok_download()]
    )
    await client.downloads.redownload("asset-9")
    assert route.call_count == 3


def test_purchases_are_marked_in_the_route_table() -> None:
    purchases = {name for name, route in ROUTES.items() if route.purchase}
    assert purchases == {"download_create", "redownload"}
    assert not ROUTES["download_create"].idempotent  # a PUT, but each one buys
    assert ROUTES["download_get"].idempotent


def ok_download() -> respx.MockResponse:
    return respx.MockResponse(200, json=DONE)


# --------------------------------------------------------------------------- save


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def test_save_streams_to_disk_without_credentials_to_cdn(
    client: AsyncGettyAI, router: respx.MockRouter, tmp_path: Path
) -> None:
    put = router.put(url(DL_PATH)).respond(200, json=DONE)
    cdn = router.get(f"{CDN}/dl/abc.png").respond(
        200, content=PNG, headers={"Content-Type": "image/png"}
    )

    path = await client.downloads.save(GEN_ID, 1, tmp_path / "out", size_name="1k")

    assert path == tmp_path / "out" / f"{GEN_ID}_1_1k.png"
    assert path.read_bytes() == PNG
    assert files_in(tmp_path / "out") == [path.name]
    assert_api_auth(put.calls.last.request)
    cdn_request = cdn.calls.last.request
    assert cdn_request.url.params["sig"] == "xyz"
    assert "Api-Key" not in cdn_request.headers
    assert "Authorization" not in cdn_request.headers
    lowered = {k.lower(): v for k, v in cdn_request.headers.items()}
    assert not any("key-PUBLIC" in v or "tok-1" in v for v in lowered.values())


async def test_download_url_on_api_host_does_get_credentials(
    client: AsyncGettyAI, router: respx.MockRouter, tmp_path: Path
) -> None:
    router.put(url(DL_PATH)).respond(200, json={"url": url("/files/abc.jpg")})
    fetched = router.get(url("/files/abc.jpg")).respond(
        200, content=b"jpeg", headers={"Content-Type": "image/jpeg"}
    )
    path = await client.downloads.save(GEN_ID, 1, tmp_path)
    assert path.name == f"{GEN_ID}_1_4k.jpg"
    assert_api_auth(fetched.calls.last.request)


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("../../etc/passwd", "passwd.png"),
        ("..\\..\\windows\\evil.png", "evil.png"),
        ("/abs/path/x y$(rm -rf).png", "x_y_rm_-rf_.png"),
        ("nice-name.webp", "nice-name.webp"),
    ],
)
async def test_save_sanitises_filename_and_stays_in_folder(
    client: AsyncGettyAI,
    router: respx.MockRouter,
    tmp_path: Path,
    filename: str,
    expected: str,
) -> None:
    router.put(url(DL_PATH)).respond(200, json=DONE)
    router.get(f"{CDN}/dl/abc.png").respond(200, content=PNG, headers={"Content-Type": "image/png"})
    target = tmp_path / "deep" / "target"

    path = await client.downloads.save(GEN_ID, 1, target, filename=filename)

    assert path.name == expected
    assert path.resolve().parent == target.resolve()
    assert files_in(target) == [expected]
    assert files_in(tmp_path) == ["deep"]


@pytest.mark.parametrize("filename", ["..", "...", "/", "./."])
async def test_save_refuses_filename_with_nothing_left(
    client: AsyncGettyAI, router: respx.MockRouter, tmp_path: Path, filename: str
) -> None:
    router.put(url(DL_PATH)).respond(200, json=DONE)
    cdn = router.get(f"{CDN}/dl/abc.png").respond(200, content=PNG)
    with pytest.raises(errors.ValidationError) as caught:
        await client.downloads.save(GEN_ID, 1, tmp_path, filename=filename)
    assert caught.value.field == "filename"
    assert cdn.call_count == 0
    assert files_in(tmp_path) == []


async def test_save_http_error_leaves_nothing_behind(
    client: AsyncGettyAI, router: respx.MockRouter, tmp_path: Path
) -> None:
    router.put(url(DL_PATH)).respond(200, json=DONE)
    cdn = router.get(f"{CDN}/dl/abc.png").respond(403, text="Forbidden")
    with pytest.raises(errors.PermissionDeniedError):
        await client.downloads.save(GEN_ID, 1, tmp_path)
    assert cdn.call_count == 1  # a 403 is not retried
    assert files_in(tmp_path) == []


async def _broken_stream() -> AsyncIterator[bytes]:
    yield PNG[:8]
    raise httpx.ReadError("connection reset mid-body")


async def test_save_failure_mid_stream_leaves_no_partial_file(
    client: AsyncGettyAI, router: respx.MockRouter, tmp_path: Path
) -> None:
    router.put(url(DL_PATH)).respond(200, json=DONE)
    cdn = router.get(f"{CDN}/dl/abc.png").mock(
        side_effect=lambda request: httpx.Response(
            200, headers={"Content-Type": "image/png"}, content=_broken_stream()
        )
    )
    with pytest.raises(errors.APIConnectionError):
        await client.downloads.save(GEN_ID, 1, tmp_path)
    assert cdn.call_count == 1 + client._transport.policy.max_retries
    assert files_in(tmp_path) == []


async def test_save_retries_5xx_then_succeeds(
    client: AsyncGettyAI, router: respx.MockRouter, tmp_path: Path, retry_waits: list[float]
) -> None:
    router.put(url(DL_PATH)).respond(200, json=DONE)
    cdn = router.get(f"{CDN}/dl/abc.png").mock(
        side_effect=[
            respx.MockResponse(503),
            respx.MockResponse(200, content=PNG, headers={"Content-Type": "image/png"}),
        ]
    )
    path = await client.downloads.save(GEN_ID, 1, tmp_path)
    assert cdn.call_count == 2
    # The client's RetryPolicy backoffs apply to the file fetch too (not stamina's defaults).
    assert len(retry_waits) == 1
    assert retry_waits[0] <= client._transport.policy.wait_max
    assert path.read_bytes() == PNG
    assert files_in(tmp_path) == [path.name]


async def test_save_cancelled_mid_stream_leaves_no_partial_file(
    client: AsyncGettyAI, router: respx.MockRouter, tmp_path: Path
) -> None:
    started = anyio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield PNG[:8]
        started.set()
        await anyio.sleep_forever()
        yield b""  # pragma: no cover

    router.put(url(DL_PATH)).respond(200, json=DONE)
    router.get(f"{CDN}/dl/abc.png").mock(
        side_effect=lambda request: httpx.Response(
            200, headers={"Content-Type": "image/png"}, content=stalled()
        )
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(client.downloads.save, GEN_ID, 1, tmp_path)
        await started.wait()
        await anyio.sleep(0.01)  # let the first chunk reach the temp file
        tg.cancel_scope.cancel()
    assert files_in(tmp_path) == []


async def test_save_follows_redirect_without_forwarding_credentials(
    client: AsyncGettyAI, router: respx.MockRouter, tmp_path: Path
) -> None:
    router.put(url(DL_PATH)).respond(200, json={"url": url("/files/abc")})
    api_file = router.get(url("/files/abc")).respond(
        302, headers={"Location": f"{CDN}/signed/abc.png?sig=1"}
    )
    cdn = router.get(f"{CDN}/signed/abc.png").respond(
        200, content=PNG, headers={"Content-Type": "image/png"}
    )

    path = await client.downloads.save(GEN_ID, 1, tmp_path)

    assert path.read_bytes() == PNG  # the image, not the redirect's body
    assert files_in(tmp_path) == [path.name]
    assert_api_auth(api_file.calls.last.request)
    assert "Api-Key" not in cdn.calls.last.request.headers
    assert "Authorization" not in cdn.calls.last.request.headers


async def test_save_with_redirect_following_http_client_sends_no_credentials_to_cdn(
    router: respx.MockRouter, make_client: ClientFactory, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(follow_redirects=True) as http:
        client = make_client(http_client=http)
        router.put(url(DL_PATH)).respond(200, json={"url": url("/files/abc")})
        router.get(url("/files/abc")).respond(302, headers={"Location": f"{CDN}/abc.png"})
        cdn = router.get(f"{CDN}/abc.png").respond(200, content=PNG)

        path = await client.downloads.save(GEN_ID, 1, tmp_path, filename="abc.png")

    assert path.read_bytes() == PNG
    assert cdn.call_count == 1
    assert "Api-Key" not in cdn.calls.last.request.headers
    assert "Authorization" not in cdn.calls.last.request.headers


async def test_save_gives_up_on_redirect_loops(
    client: AsyncGettyAI, router: respx.MockRouter, tmp_path: Path
) -> None:
    router.put(url(DL_PATH)).respond(200, json=DONE)
    loop = router.get(f"{CDN}/dl/abc.png").respond(302, headers={"Location": f"{CDN}/dl/abc.png"})
    with pytest.raises(errors.APIStatusError) as caught:
        await client.downloads.save(GEN_ID, 1, tmp_path)
    assert caught.value.status_code == 302
    assert 1 < loop.call_count <= 20
    assert files_in(tmp_path) == []
