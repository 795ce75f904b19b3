"""What was taken off each request's path (issue #10) still behaves as before.

- stamina comes in only once a first attempt failed: its hooks, its on/off switch and
  its attempt count see the same attempts;
- API URLs are the ones httpx would parse, without parsing them again;
- a reply parsed in one pass gives the same `Generation` and, when it is not one, the
  same error;
- cookies are still kept, but replies without ``Set-Cookie`` skip http.cookiejar;
- the client we build sends through `HttpClient.send_read`, which gives what httpx's
  ``send`` gives.
"""

from __future__ import annotations

import datetime as dt
import gzip
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator

import httpx
import pytest
import respx
import stamina
import stamina.instrumentation
from stamina.instrumentation import RetryDetails

from getty_ai_async import Generation, errors
from getty_ai_async._backends import HttpClient
from getty_ai_async._poller import parse_generation
from getty_ai_async._transport import _BeforeSend, _with_path

from ._helpers import FAST, GEN_ID, ClientFactory, finished, url

GET_PATH = f"/v3/ai/image-generations/{GEN_ID}"


@pytest.fixture
def retries_seen() -> Iterator[list[RetryDetails]]:
    seen: list[RetryDetails] = []
    previous = stamina.instrumentation.get_on_retry_hooks()
    stamina.instrumentation.set_on_retry_hooks([seen.append])
    yield seen
    stamina.instrumentation.set_on_retry_hooks(previous)


async def test_a_first_failure_is_stamina_s_first_attempt(
    router: respx.MockRouter, make_client: ClientFactory, retries_seen: list[RetryDetails]
) -> None:
    route = router.get(url(GET_PATH)).mock(
        side_effect=[respx.MockResponse(503), respx.MockResponse(200, json=finished())]
    )
    await make_client(retry_policy=FAST).generations.get(GEN_ID)

    assert route.call_count == 2
    assert [details.retry_num for details in retries_seen] == [1]
    assert isinstance(retries_seen[0].caused_by, errors.InternalServerError)


async def test_stamina_switched_off_still_means_one_attempt(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    route = router.get(url(GET_PATH)).respond(503)
    stamina.set_active(False)
    try:
        with pytest.raises(errors.InternalServerError):
            await make_client(retry_policy=FAST).generations.get(GEN_ID)
    finally:
        stamina.set_active(True)
    assert route.call_count == 1


async def test_retries_still_stop_at_max_retries(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    route = router.get(url(GET_PATH)).respond(503)
    with pytest.raises(errors.InternalServerError):
        await make_client(retry_policy=FAST).generations.get(GEN_ID)
    assert route.call_count == FAST.max_retries + 1


@pytest.mark.parametrize(
    "base", ["https://api.example.com", "http://127.0.0.1:8080/prefix/", "http://[::1]:9000"]
)
@pytest.mark.parametrize(
    "path",
    [
        "/v3/ai/image-generations/gen-7",
        "/v3/ai/image-generations/%C3%BC~a.b_c-d",
        "/a/.b/c",
        "/a/./b",
        "/a/../b",
        "/a/..",
        "/a?b=1",
        "/a b",
        "/%zz",
        "/",
    ],
)
def test_an_endpoint_is_the_url_httpx_parses(base: str, path: str) -> None:
    got = _with_path(httpx.URL(base), path)
    want = httpx.URL(base.rstrip("/") + path)
    assert (got, got.raw_path, got.netloc, got.scheme) == (
        want,
        want.raw_path,
        want.netloc,
        want.scheme,
    )


async def test_an_api_path_is_not_parsed_again(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport = make_client()._transport
    expected = transport.url(GET_PATH)

    def parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed again")

    monkeypatch.setattr(httpx._urls, "urlparse", parse)
    endpoint = transport.endpoint(GET_PATH)
    assert str(endpoint) == expected
    assert transport.endpoint(GET_PATH) is endpoint  # made once


@pytest.mark.parametrize("status", [200, 202])
def test_a_reply_parsed_in_one_pass_is_the_same_generation(status: int) -> None:
    body = finished() if status == 200 else {"generation_request_id": GEN_ID}
    response = httpx.Response(status, json=body)
    generation = parse_generation(response)
    assert generation.is_pending is (status == 202)
    assert generation.model_dump() == parse_generation_slowly(response).model_dump()


def parse_generation_slowly(response: httpx.Response) -> Generation:
    return Generation.from_response(response.json(), pending=response.status_code == 202)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"<html>oops</html>", "not JSON"),
        (b"", "not JSON"),
        (b'{"results": []}', "generation_request_id: Field required"),
        (b"null", "generation_request_id: Field required"),
    ],
)
def test_a_reply_that_is_not_a_generation_is_named_as_before(content: bytes, message: str) -> None:
    response = httpx.Response(200, content=content, request=httpx.Request("GET", url(GET_PATH)))
    with pytest.raises(errors.MalformedResponseError, match=message):
        parse_generation(response)


async def test_cookies_are_kept_but_replies_without_any_skip_the_cookie_jar(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    extracted: list[str] = []
    original = httpx.Cookies.extract_cookies

    def counting(self: httpx.Cookies, response: httpx.Response) -> None:
        extracted.append(response.request.url.path)
        original(self, response)

    monkeypatch.setattr(httpx.Cookies, "extract_cookies", counting)
    sent_cookies: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent_cookies.append(request.headers.get("cookie"))
        if request.url.path == "/login":
            return httpx.Response(200, headers={"set-cookie": "lb=node-2; Path=/"})
        return httpx.Response(200)

    async with HttpClient(transport=httpx.MockTransport(handler)) as http:
        await http.get("https://api.test/first")
        await http.get("https://api.test/login")
        await http.get("https://api.test/after")
        assert http.cookies.get("lb") == "node-2"
        http.cookies = {"other": "1"}
        await http.get("https://api.test/replaced")

    assert extracted == ["/login"]
    assert sent_cookies == [None, None, "lb=node-2", "other=1"]


class _ReplayOn401(httpx.Auth):
    """A 401 gets one replay with another token, as `GettyAuth` does."""

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = "Bearer old"
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = "Bearer new"
            yield request


def _replying(request: httpx.Request) -> httpx.Response:
    if request.headers["authorization"] == "Bearer old":
        return httpx.Response(401, headers={"set-cookie": "lb=2; Path=/"}, content=b"stale")
    # A streamed, compressed body: read and decoded on the way, as httpx would.
    body = httpx.ByteStream(gzip.compress(b'{"ok": true}'))
    return httpx.Response(200, headers={"content-encoding": "gzip"}, stream=body)


async def test_send_read_gives_what_httpx_s_send_gives(caplog: pytest.LogCaptureFixture) -> None:
    seen = []
    for way in ("send", "send_read"):
        http = HttpClient(transport=httpx.MockTransport(_replying), default_encoding="latin-1")
        request = http.build_request("GET", "https://api.test/x")
        with caplog.at_level(logging.INFO, logger="httpx"):
            if way == "send":
                response = await http.send(request, auth=_ReplayOn401(), follow_redirects=False)
            else:
                response = await http.send_read(request, _ReplayOn401())
        seen.append(
            (
                response.status_code,
                response.json(),
                response.encoding,
                response.request.headers["authorization"],
                [(old.status_code, old.content, old.is_closed) for old in response.history],
                response.is_closed,
                response.elapsed > dt.timedelta(0),
                dict(http.cookies),
                [record.getMessage() for record in caplog.records],
            )
        )
        caplog.clear()
        await http.aclose()
    assert seen[0] == seen[1]
    assert seen[1][4] == [(401, b"stale", True)]


class _Challenge(httpx.Auth):
    """Signs the request's body, and answers a 401 with the nonce in the 401's body."""

    requires_request_body = True
    requires_response_body = True

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["X-Body-Length"] = str(len(request.content))
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Nonce {response.json()['nonce']}"
            yield request


async def _streamed_body() -> AsyncIterator[bytes]:
    yield b'{"prompt": '
    yield b'"a fox"}'


@pytest.mark.parametrize("way", ["send", "send_read", "through the transport's hooks"])
async def test_an_auth_that_reads_bodies_gets_them_on_every_path(
    router: respx.MockRouter, way: str
) -> None:
    def challenge(request: httpx.Request) -> httpx.Response:
        if "authorization" not in request.headers:  # the nonce comes streamed, unread
            return httpx.Response(401, stream=httpx.ByteStream(b'{"nonce": "n-1"}'))
        seen = (request.headers["authorization"], request.headers["x-body-length"])
        return httpx.Response(200, json={"seen": list(seen)})

    router.post("https://api.test/x").mock(side_effect=challenge)
    hooked: list[str] = []

    async def hook() -> None:
        hooked.append("sent")

    async with HttpClient() as http:
        request = http.build_request("POST", "https://api.test/x", content=_streamed_body())
        if way == "send":
            response = await http.send(request, auth=_Challenge(), follow_redirects=False)
        elif way == "send_read":
            response = await http.send_read(request, _Challenge())
        else:
            response = await http.send_read(request, _BeforeSend(_Challenge(), [hook]))
            assert hooked == ["sent", "sent"]
    assert response.json() == {"seen": ["Nonce n-1", "19"]}
    assert [old.json() for old in response.history] == [{"nonce": "n-1"}]


async def test_send_read_errors_name_their_request() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")  # a transport that names no request

    http = HttpClient(transport=httpx.MockTransport(refuse))
    request = http.build_request("GET", "https://api.test/x")
    with pytest.raises(httpx.ConnectError) as caught:
        await http.send_read(request, httpx.Auth())
    assert caught.value.request is request
    await http.aclose()
    with pytest.raises(RuntimeError, match="client has been closed"):
        await http.send_read(request, httpx.Auth())


async def test_send_read_runs_event_hooks_through_httpx_s_send() -> None:
    hooked: list[str] = []

    async def hook(request: httpx.Request) -> None:
        hooked.append(request.url.path)

    async with HttpClient(
        transport=httpx.MockTransport(lambda _: httpx.Response(200, content=b"ok")),
        event_hooks={"request": [hook]},
    ) as http:
        response = await http.send_read(
            http.build_request("GET", "https://api.test/x"), httpx.Auth()
        )
    assert (response.content, hooked) == (b"ok", ["/x"])


async def test_our_client_sends_without_httpx_s_send(
    router: respx.MockRouter, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    router.get(url(GET_PATH)).respond(200, json=finished())
    client = make_client()

    async def send(*args: object, **kwargs: object) -> httpx.Response:
        raise AssertionError("httpx's send")

    monkeypatch.setattr(client._http, "send", send)
    assert (await client.generations.get(GEN_ID)).generation_request_id == GEN_ID
