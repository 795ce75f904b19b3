"""Api-Key and bearer tokens: grants, caching, single-flight refresh, 401 replay."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest
import respx

from getty_ai_async import errors
from getty_ai_async._auth import Grant, TokenProvider

from ._helpers import (
    ACCESS,
    API_KEY,
    API_SECRET,
    GEN_ID,
    PASSWORD,
    REFRESH,
    TOKEN_URL,
    ClientFactory,
    assert_api_auth,
    finished,
    form,
    token_json,
    url,
)

GET_PATH = f"/v3/ai/image-generations/{GEN_ID}"

SideEffect = Callable[[httpx.Request], Awaitable[httpx.Response]]


def token_responses(*values: str, **extra: Any) -> list[respx.MockResponse]:
    return [respx.MockResponse(200, json=token_json(value, **extra)) for value in values]


def slow_token(*values: str, delay: float = 0.02) -> SideEffect:
    """A token endpoint that takes a while (so concurrent callers really overlap) and
    hands out `values` in turn."""
    remaining = list(values)

    async def respond(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(delay)
        return httpx.Response(200, json=token_json(remaining.pop(0)))

    return respond


# ------------------------------------------------------------------------- grants


async def test_client_credentials_grant(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    api = router.get(url(GET_PATH)).respond(200, json=finished())
    client = make_client()

    await client.generations.get(GEN_ID)

    token = router.routes["token"]
    assert token.call_count == 1
    request = token.calls.last.request
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form(request) == {
        "client_id": API_KEY,
        "client_secret": API_SECRET,
        "grant_type": "client_credentials",
    }
    assert "Api-Key" not in request.headers
    assert "Authorization" not in request.headers
    assert_api_auth(api.calls.last.request, "tok-1")


async def test_token_request_on_the_api_host_still_carries_no_credentials(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    token = router.post(url("/oauth2/token")).respond(200, json=token_json("tok-same-host"))
    api = router.get(url(GET_PATH)).respond(200, json=finished())
    client = make_client(token_url=url("/oauth2/token"))

    await client.generations.get(GEN_ID)

    assert "Api-Key" not in token.calls.last.request.headers
    assert "Authorization" not in token.calls.last.request.headers
    assert_api_auth(api.calls.last.request, "tok-same-host")


async def test_password_grant(router: respx.MockRouter, make_client: ClientFactory) -> None:
    router.get(url(GET_PATH)).respond(200, json=finished())
    client = make_client(username="alice", password=PASSWORD)
    await client.generations.get(GEN_ID)
    assert form(router.routes["token"].calls.last.request) == {
        "client_id": API_KEY,
        "client_secret": API_SECRET,
        "grant_type": "password",
        "username": "alice",
        "password": PASSWORD,
    }


async def test_refresh_token_grant(router: respx.MockRouter, make_client: ClientFactory) -> None:
    router.get(url(GET_PATH)).respond(200, json=finished())
    client = make_client(api_secret=None, refresh_token=REFRESH)
    await client.generations.get(GEN_ID)
    assert form(router.routes["token"].calls.last.request) == {
        "client_id": API_KEY,
        "grant_type": "refresh_token",
        "refresh_token": REFRESH,
    }


async def test_refresh_token_from_the_service_is_used_next(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    token = router.routes["token"].mock(
        side_effect=[
            respx.MockResponse(200, json=token_json("tok-1", refresh_token="rt-issued")),
            respx.MockResponse(200, json=token_json("tok-2")),
        ]
    )
    api = router.get(url(GET_PATH)).mock(
        side_effect=[respx.MockResponse(401), respx.MockResponse(200, json=finished())]
    )
    client = make_client()

    await client.generations.get(GEN_ID)

    assert [form(call.request)["grant_type"] for call in token.calls] == [
        "client_credentials",
        "refresh_token",
    ]
    assert form(token.calls.last.request)["refresh_token"] == "rt-issued"
    assert_api_auth(api.calls.last.request, "tok-2")


@pytest.mark.parametrize(
    "refused",
    [
        respx.MockResponse(401, json={"error": "invalid_token"}),
        # RFC 6749 section 5.2: an expired refresh token is a 400 invalid_grant.
        respx.MockResponse(400, json={"error": "invalid_grant"}),
    ],
    ids=["401", "400-invalid_grant"],
)
async def test_expired_refresh_token_falls_back_to_client_credentials(
    router: respx.MockRouter, make_client: ClientFactory, refused: respx.MockResponse
) -> None:
    token = router.routes["token"].mock(
        side_effect=[
            respx.MockResponse(200, json=token_json("tok-1", refresh_token="rt-old")),
            refused,
            respx.MockResponse(200, json=token_json("tok-2")),
        ]
    )
    api = router.get(url(GET_PATH)).mock(
        side_effect=[respx.MockResponse(401), respx.MockResponse(200, json=finished())]
    )
    client = make_client()

    generation = await client.generations.get(GEN_ID)

    assert not generation.is_pending
    assert [form(call.request)["grant_type"] for call in token.calls] == [
        "client_credentials",
        "refresh_token",
        "client_credentials",
    ]
    assert_api_auth(api.calls.last.request, "tok-2")


async def test_caller_supplied_access_token(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    api = router.get(url(GET_PATH)).respond(200, json=finished())
    client = make_client(api_secret=None, access_token=ACCESS)
    await client.generations.get(GEN_ID)
    await client.generations.get(GEN_ID)
    assert router.routes["token"].call_count == 0
    assert_api_auth(api.calls.last.request, ACCESS)


async def test_refused_access_token_without_refresh_means_is_not_replayed(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    api = router.get(url(GET_PATH)).respond(401, json={"message": "token expired"})
    client = make_client(api_secret=None, access_token=ACCESS)
    with pytest.raises(errors.AuthenticationError):
        await client.generations.get(GEN_ID)
    assert api.call_count == 1
    assert router.routes["token"].call_count == 0


async def test_api_key_only_sends_no_authorization(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    api = router.get(url(GET_PATH)).respond(200, json=finished())
    client = make_client(api_secret=None)
    await client.generations.get(GEN_ID)
    assert_api_auth(api.calls.last.request, None)
    assert router.routes["token"].call_count == 0
    assert "api-key" in repr(client)


# ------------------------------------------------------------------ single flight


async def test_token_single_flight_50_concurrent_calls(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    token = router.routes["token"].mock(side_effect=slow_token("tok-1"))
    api = router.get(url(GET_PATH)).respond(200, json=finished())
    client = make_client()

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(client.generations.get, GEN_ID)

    assert token.call_count == 1
    assert api.call_count == 50
    assert {call.request.headers["Authorization"] for call in api.calls} == {"Bearer tok-1"}


async def test_concurrent_401s_trigger_one_refresh(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    token = router.routes["token"].mock(side_effect=slow_token("tok-1", "tok-2", "tok-3"))

    def by_token(request: httpx.Request) -> httpx.Response:
        if request.headers["Authorization"] == "Bearer tok-1":
            return httpx.Response(401)
        return httpx.Response(200, json=finished())

    api = router.get(url(GET_PATH)).mock(side_effect=by_token)
    client = make_client()

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(client.generations.get, GEN_ID)

    assert token.call_count == 2
    assert api.call_count == 40
    assert [call.response.status_code for call in api.calls].count(401) == 20


# ------------------------------------------------------------------- 401 replay


async def test_401_refreshes_and_replays_once(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    token = router.routes["token"].mock(side_effect=token_responses("tok-1", "tok-2"))
    replies = [httpx.Response(401), httpx.Response(200, json=finished())]
    sent: list[tuple[str, str]] = []  # headers as they were when each attempt went out

    def respond(request: httpx.Request) -> httpx.Response:
        sent.append((request.headers["Api-Key"], request.headers["Authorization"]))
        return replies.pop(0)

    api = router.get(url(GET_PATH)).mock(side_effect=respond)
    client = make_client()

    generation = await client.generations.get(GEN_ID)

    assert generation.generation_request_id == GEN_ID
    assert token.call_count == 2
    assert api.call_count == 2
    assert sent == [(API_KEY, "Bearer tok-1"), (API_KEY, "Bearer tok-2")]


async def test_401_twice_raises_authentication_error(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    token = router.routes["token"].mock(side_effect=token_responses("tok-1", "tok-2", "tok-3"))
    api = router.get(url(GET_PATH)).respond(401, json={"message": "no"})
    client = make_client()

    with pytest.raises(errors.AuthenticationError) as caught:
        await client.generations.get(GEN_ID)

    assert caught.value.status_code == 401
    assert token.call_count == 2
    assert api.call_count == 2


async def test_401_replay_of_a_generation_post_resends_the_body(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    router.routes["token"].mock(side_effect=token_responses("tok-1", "tok-2"))
    api = router.post(url("/v3/ai/image-generations")).mock(
        side_effect=[respx.MockResponse(401), respx.MockResponse(200, json=finished())]
    )
    client = make_client()
    await client.generations.create("a fox")
    assert api.call_count == 2
    assert [call.request.content for call in api.calls] == [b'{"prompt":"a fox"}'] * 2


@pytest.mark.parametrize("status", [400, 401, 403])
async def test_token_endpoint_refusal_is_authentication_error(
    router: respx.MockRouter, make_client: ClientFactory, status: int
) -> None:
    router.routes["token"].respond(status, json={"error": "invalid_client"})
    api = router.get(url(GET_PATH)).respond(200, json=finished())
    client = make_client()
    with pytest.raises(errors.AuthenticationError) as caught:
        await client.generations.get(GEN_ID)
    assert caught.value.status_code == status
    assert caught.value.body == {"error": "invalid_client"}
    assert api.call_count == 0


async def test_token_endpoint_5xx_is_retried(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    token = router.routes["token"].mock(
        side_effect=[respx.MockResponse(503), respx.MockResponse(200, json=token_json("tok-9"))]
    )
    api = router.get(url(GET_PATH)).respond(200, json=finished())
    client = make_client()
    await client.generations.get(GEN_ID)
    assert token.call_count == 2
    assert_api_auth(api.calls.last.request, "tok-9")


# ------------------------------------------------- TokenProvider with a fake clock


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeTokenEndpoint:
    """A `send` callable for TokenProvider: records forms, answers from a script."""

    def __init__(self, *responses: httpx.Response, delay: float = 0.0) -> None:
        self.responses = list(responses)
        self.forms: list[dict[str, str]] = []
        self.delay = delay

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.forms.append(form(request))
        if self.delay:
            await anyio.sleep(self.delay)
        response = self.responses.pop(0)
        response.request = request
        return response


def ok(value: str, expires_in: float, **extra: object) -> httpx.Response:
    return httpx.Response(200, json=token_json(value, expires_in=expires_in, **extra))


async def test_refresh_ahead_of_expiry() -> None:
    clock = FakeClock()
    endpoint = FakeTokenEndpoint(ok("t1", 100), ok("t2", 100))
    provider = TokenProvider(
        grant=Grant(client_id="id", client_secret="s"),
        token_url=TOKEN_URL,
        send=endpoint,
        clock=clock,
    )

    assert await provider.token() == "t1"
    clock.now += 49  # before the refresh point (half of a short lifetime)
    assert await provider.token() == "t1"
    assert provider.fetches == 1
    clock.now += 2  # 51 s in: still 49 s before expiry, but due for refresh
    assert await provider.token() == "t2"
    assert provider.fetches == 2
    assert len(endpoint.forms) == 2


async def test_refresh_margin_is_capped_for_long_lived_tokens() -> None:
    clock = FakeClock()
    endpoint = FakeTokenEndpoint(ok("t1", 3600), ok("t2", 3600))
    provider = TokenProvider(
        grant=Grant(client_id="id", client_secret="s"),
        token_url=TOKEN_URL,
        send=endpoint,
        clock=clock,
    )
    assert await provider.token() == "t1"
    clock.now += 3600 - 301
    assert await provider.token() == "t1"
    clock.now += 2  # inside the last 5 minutes
    assert await provider.token() == "t2"


async def test_refresh_ahead_is_single_flight_too() -> None:
    clock = FakeClock()
    endpoint = FakeTokenEndpoint(ok("t1", 100), ok("t2", 100), ok("t3", 100), delay=0.01)
    provider = TokenProvider(
        grant=Grant(client_id="id", client_secret="s"),
        token_url=TOKEN_URL,
        send=endpoint,
        clock=clock,
    )
    await provider.token()
    clock.now += 60
    results: list[str] = []

    async def get() -> None:
        results.append(await provider.token())

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(get)

    assert set(results) == {"t2"}
    assert provider.fetches == 2


async def test_client_refreshes_short_lived_token_before_expiry(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    token = router.routes["token"].mock(
        side_effect=[
            respx.MockResponse(200, json=token_json("tok-1", expires_in=0.2)),
            respx.MockResponse(200, json=token_json("tok-2", expires_in=1800)),
        ]
    )
    api = router.get(url(GET_PATH)).respond(200, json=finished())
    client = make_client()

    await client.generations.get(GEN_ID)
    await anyio.sleep(0.12)  # past the refresh point (0.1 s), before expiry (0.2 s)
    await client.generations.get(GEN_ID)

    assert token.call_count == 2
    assert [call.request.headers["Authorization"] for call in api.calls] == [
        "Bearer tok-1",
        "Bearer tok-2",
    ]
    assert all(call.response.status_code == 200 for call in api.calls)


async def test_provider_fallback_from_refresh_token_to_client_credentials() -> None:
    clock = FakeClock()
    endpoint = FakeTokenEndpoint(
        ok("t1", 100, refresh_token="rt-1"),
        httpx.Response(400, json={"error": "invalid_grant"}),
        ok("t2", 100),
    )
    provider = TokenProvider(
        grant=Grant(client_id="id", client_secret="s"),
        token_url=TOKEN_URL,
        send=endpoint,
        clock=clock,
    )
    await provider.token()
    clock.now += 99
    assert await provider.token() == "t2"
    assert [f["grant_type"] for f in endpoint.forms] == [
        "client_credentials",
        "refresh_token",
        "client_credentials",
    ]


async def test_refresh_token_grant_does_not_fall_back() -> None:
    endpoint = FakeTokenEndpoint(httpx.Response(401, json={"error": "invalid_grant"}))
    provider = TokenProvider(
        grant=Grant(client_id="id", refresh_token="rt"), token_url=TOKEN_URL, send=endpoint
    )
    with pytest.raises(errors.AuthenticationError):
        await provider.token()
    assert len(endpoint.forms) == 1


def test_grant_kinds() -> None:
    assert Grant("id", client_secret="s").kind == "client_credentials"
    assert Grant("id", client_secret="s", username="u", password="p").kind == "password"
    assert Grant("id", refresh_token="r").kind == "refresh_token"
    assert Grant("id", access_token="a").kind == "access_token"


@pytest.mark.parametrize(
    "reply",
    [
        respx.MockResponse(200, json={"token_type": "Bearer"}),
        respx.MockResponse(200, text="<html>sign in</html>"),
        respx.MockResponse(200, json=["not", "an", "object"]),
        respx.MockResponse(200, json={"access_token": "tok-LEAK", "expires_in": "soon"}),
    ],
    ids=["no-access-token", "html", "json-list", "bad-expires-in"],
)
async def test_malformed_token_reply_is_an_authentication_error(
    router: respx.MockRouter, make_client: ClientFactory, reply: respx.MockResponse
) -> None:
    router.routes["token"].mock(return_value=reply)
    api = router.get(url(GET_PATH)).respond(200, json=finished())
    client = make_client()
    with pytest.raises(errors.AuthenticationError) as caught:
        await client.generations.get(GEN_ID)
    assert "access_token" in str(caught.value)
    assert "tok-LEAK" not in str(caught.value)
    assert "tok-LEAK" not in repr(caught.value)
    assert api.call_count == 0


async def test_password_without_secret_is_not_silently_ignored(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    router.get(url(GET_PATH)).respond(200, json=finished())
    try:
        client = make_client(api_secret=None, username="alice", password=PASSWORD)
    except errors.ValidationError as exc:  # refusing it up front is fine too
        assert exc.field == "api_secret"  # noqa: PT017
        return
    await client.generations.get(GEN_ID)
    token = router.routes["token"]
    assert token.call_count == 1
    assert form(token.calls.last.request)["grant_type"] == "password"


# ------------------------------------- a failing token endpoint (issue 9.4)


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(429, headers={"Retry-After": "5"}),
        httpx.Response(503),
        httpx.Response(404),
        httpx.Response(401, json={"error": "invalid_client"}),
        httpx.Response(200, json={"nope": True}),
    ],
    ids=["429", "503", "404", "401", "malformed"],
)
async def test_refresh_ahead_failure_keeps_the_valid_token(failure: httpx.Response) -> None:
    """A 429 here failed the call though the token was still valid for 49 s."""
    clock = FakeClock()
    endpoint = FakeTokenEndpoint(ok("t1", 100), failure, ok("t2", 100))
    provider = TokenProvider(
        grant=Grant(client_id="id", client_secret="s"),
        token_url=TOKEN_URL,
        send=endpoint,
        clock=clock,
    )
    assert await provider.token() == "t1"
    clock.now += 51  # due for refresh, 49 s before expiry
    assert await provider.token() == "t1"
    assert await provider.token() == "t1"  # the next refresh is put off, not tried per call
    assert len(endpoint.forms) == 2
    clock.now += 10
    assert await provider.token() == "t2"
    assert len(endpoint.forms) == 3


async def test_refresh_ahead_retry_waits_for_the_token_endpoints_retry_after() -> None:
    clock = FakeClock()
    endpoint = FakeTokenEndpoint(
        ok("t1", 100), httpx.Response(429, headers={"Retry-After": "20"}), ok("t2", 100)
    )
    provider = TokenProvider(
        grant=Grant(client_id="id", client_secret="s"),
        token_url=TOKEN_URL,
        send=endpoint,
        clock=clock,
    )
    await provider.token()
    clock.now += 51
    assert await provider.token() == "t1"
    clock.now += 19
    assert await provider.token() == "t1"
    assert len(endpoint.forms) == 2
    clock.now += 2
    assert await provider.token() == "t2"


async def test_refresh_failure_after_expiry_raises() -> None:
    clock = FakeClock()
    endpoint = FakeTokenEndpoint(ok("t1", 100), httpx.Response(429))
    provider = TokenProvider(
        grant=Grant(client_id="id", client_secret="s"),
        token_url=TOKEN_URL,
        send=endpoint,
        clock=clock,
    )
    await provider.token()
    clock.now += 100
    with pytest.raises(errors.RateLimitError):
        await provider.token()


async def test_client_rides_out_a_token_endpoint_429_during_refresh_ahead(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    """One attempt at the token endpoint (no retry sleeps), and the call goes on with the
    token it has."""
    token = router.routes["token"].mock(
        side_effect=[
            respx.MockResponse(200, json=token_json("tok-1", expires_in=1800)),
            respx.MockResponse(429, headers={"Retry-After": "30"}),
        ]
    )
    api = router.get(url(GET_PATH)).respond(200, json=finished())
    client = make_client()
    await client.generations.get(GEN_ID)
    tokens = client._auth.tokens
    assert tokens is not None
    real_clock = tokens.clock
    tokens.clock = lambda: real_clock() + 1700  # inside the last 5 minutes
    started = anyio.current_time()
    await client.generations.get(GEN_ID)
    assert anyio.current_time() - started < 10.0  # far from the 30 s it would have waited
    assert token.call_count == 2
    assert_api_auth(api.calls.last.request, "tok-1")


@pytest.mark.parametrize(
    "failure",
    [
        respx.MockResponse(429),
        respx.MockResponse(503),
        respx.MockResponse(404),
        httpx.ConnectError("Name or service not known"),
    ],
    ids=["429", "503", "404", "connect-error"],
)
async def test_no_token_is_token_unavailable_never_the_api_routes_error(
    router: respx.MockRouter, make_client: ClientFactory, failure: Any
) -> None:
    router.routes["token"].mock(side_effect=[failure] * 10)
    api = router.get(url(GET_PATH)).respond(200, json=finished())
    client = make_client()
    with pytest.raises(errors.TokenUnavailableError) as caught:
        await client.generations.get(GEN_ID)
    error = caught.value
    assert isinstance(error, errors.APIConnectionError)
    assert not isinstance(error, errors.APIStatusError)
    assert error.may_have_been_sent is False
    assert error.method == "GET"
    assert "auth.test" in str(error)  # names the token endpoint's host
    assert api.call_count == 0


async def test_token_endpoint_429_on_a_submit_is_not_a_pending_cap_signal(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    """It used to reach the submit as a RateLimitError and shrink the auto cap."""
    router.routes["token"].respond(429)
    post = router.post(url("/v3/ai/image-generations")).respond(200, json=finished())
    client = make_client(max_pending="auto")
    limit = client.limiter.limit
    with pytest.raises(errors.TokenUnavailableError):
        await client.generations.create("a fox")
    assert post.call_count == 0
    assert client.limiter.rate_limited_count == 0
    assert client.limiter.limit == limit
    assert client.limiter.in_use == 0


async def test_token_requests_do_not_draw_from_or_throttle_the_api_budget(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    router.routes["token"].mock(
        side_effect=[respx.MockResponse(429), respx.MockResponse(200, json=token_json())]
    )
    router.get(url(GET_PATH)).respond(200, json=finished())
    client = make_client(max_requests_per_second=1000)
    await client.generations.get(GEN_ID)
    budget = client._transport.budget
    assert budget is not None
    assert budget.throttle_count == 0  # type: ignore[attr-defined]
