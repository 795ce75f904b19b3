"""Secrets stay out of reprs, errors and logs; credentials go only to the API over https."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
import respx

from getty_ai_async import AsyncGettyAI, errors
from getty_ai_async._auth import GettyAuth, Grant, TokenProvider

from ._helpers import (
    ACCESS,
    API,
    API_KEY,
    API_SECRET,
    GEN_ID,
    NO_RETRY,
    PASSWORD,
    REFRESH,
    SECRETS,
    TOKEN_URL,
    ClientFactory,
    finished,
    token_json,
    url,
)

GET_PATH = f"/v3/ai/image-generations/{GEN_ID}"
FETCHED = "fetched-TOKEN-abcdef"
ALL_SECRETS = (*SECRETS, FETCHED)


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        for secret in ALL_SECRETS:
            assert secret not in text


def everything(obj: object) -> tuple[str, str]:
    return repr(obj), str(obj)


async def test_reprs_hide_every_secret(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    router.routes["token"].respond(200, json=token_json(FETCHED, refresh_token="rt-FETCHED"))
    router.get(url(GET_PATH)).respond(200, json=finished())
    client = make_client(
        username="alice", password=PASSWORD, refresh_token=REFRESH, access_token=ACCESS
    )
    client_cc = make_client()
    await client_cc.generations.get(GEN_ID)  # holds a fetched token now

    for c in (client, client_cc):
        auth = c._auth
        assert auth.tokens is not None
        texts = [
            *everything(c),
            *everything(auth),
            *everything(auth.tokens),
            *everything(auth.tokens.grant),
        ]
        assert_no_secrets(*texts)
        assert "rt-FETCHED" not in " ".join(texts)
    assert "password" in repr(client)  # the mode is shown, just not the secret
    assert "client_credentials" in repr(client_cc)


def test_grant_and_provider_reprs() -> None:
    grant = Grant(
        client_id="id",
        client_secret=API_SECRET,
        username="u",
        password=PASSWORD,
        refresh_token=REFRESH,
        access_token=ACCESS,
    )
    provider = TokenProvider(grant=grant, token_url=TOKEN_URL, send=lambda r: None)  # type: ignore[arg-type,return-value]
    auth = GettyAuth(API_KEY, httpx.URL(API), provider)
    assert_no_secrets(*everything(grant), *everything(provider), *everything(auth))
    assert "api_key='***'" in repr(auth)


async def test_error_text_has_no_secrets_after_failed_auth(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    router.routes["token"].respond(200, json=token_json(FETCHED))
    router.get(url(GET_PATH)).respond(401, json={"message": "expired"})
    client = make_client(username="alice", password=PASSWORD)
    with pytest.raises(errors.AuthenticationError) as caught:
        await client.generations.get(GEN_ID)
    assert_no_secrets(*everything(caught.value), repr(caught.value.args))


@pytest.mark.parametrize("status", [400, 401, 500])
async def test_token_endpoint_errors_have_no_secrets(
    router: respx.MockRouter, make_client: ClientFactory, status: int
) -> None:
    router.routes["token"].respond(status, json={"error": "invalid_client"})
    client = make_client(username="alice", password=PASSWORD, retry_policy=NO_RETRY)
    # A refusal (400, 401) is an AuthenticationError; a 500 leaves no token to send with.
    expected = errors.TokenUnavailableError if status >= 500 else errors.AuthenticationError
    with pytest.raises(expected) as caught:
        await client.generations.get(GEN_ID)
    assert_no_secrets(*everything(caught.value), repr(caught.value.args))


async def test_token_endpoint_connection_error_has_no_secrets(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    router.routes["token"].mock(side_effect=httpx.ConnectError("refused"))
    client = make_client(password=PASSWORD, username="u", retry_policy=NO_RETRY)
    with pytest.raises(errors.APIConnectionError) as caught:
        await client.generations.get(GEN_ID)
    assert_no_secrets(*everything(caught.value), caught.value.url)


async def test_logs_have_no_secrets(
    router: respx.MockRouter, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    router.routes["token"].mock(
        side_effect=[
            respx.MockResponse(200, json=token_json(FETCHED)),
            respx.MockResponse(200, json=token_json(FETCHED + "-2")),
        ]
    )
    router.get(url(GET_PATH)).mock(
        side_effect=[
            respx.MockResponse(401),
            respx.MockResponse(503),
            respx.MockResponse(200, json=finished()),
        ]
    )
    client = make_client(username="alice", password=PASSWORD)
    with caplog.at_level(logging.DEBUG):
        await client.generations.get(GEN_ID)
    assert caplog.records  # the flow above does log (token, 401 replay, retry)
    assert_no_secrets(caplog.text)


# ------------------------------------------------------------------------ https


@pytest.mark.parametrize("field", ["base_url", "token_url"])
def test_plain_http_to_remote_host_is_refused(field: str) -> None:
    options: dict[str, Any] = {field: "http://api.example.com"}
    with pytest.raises(errors.ValidationError) as caught:
        AsyncGettyAI(api_key=API_KEY, api_secret=API_SECRET, **options)
    assert caught.value.field == field
    assert "http" in str(caught.value)


@pytest.mark.parametrize(
    "base_url",
    [
        "http://localhost:8000",
        "http://127.0.0.1:8000",
        "http://127.0.0.2",
        "http://[::1]:8000",
    ],
)
async def test_plain_http_to_loopback_is_allowed(base_url: str) -> None:
    client = AsyncGettyAI(api_key=API_KEY, base_url=base_url, token_url=base_url + "/token")
    await client.aclose()
    assert str(client.base_url).startswith(base_url)


async def test_plain_http_allowed_when_opted_in(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    client = make_client(
        base_url="http://api.example.com",
        token_url="http://api.example.com/token",
        allow_insecure_http=True,
    )
    router.post("http://api.example.com/token").respond(200, json=token_json())
    route = router.get(f"http://api.example.com{GET_PATH}").respond(200, json=finished())
    await client.generations.get(GEN_ID)
    assert route.calls.last.request.headers["Api-Key"] == API_KEY


# -------------------------------------------------------- credentials by host


@pytest.mark.parametrize(
    ("target", "gets_credentials"),
    [
        (API + "/v3/x", True),
        ("https://api.test:443/v3/x", True),
        ("https://api.test:8443/v3/x", False),
        ("http://api.test/v3/x", False),
        ("https://cdn.api.test/v3/x", False),
        ("https://api.test.evil.example/v3/x", False),
    ],
)
def test_credentials_only_for_the_api_origin(target: str, gets_credentials: bool) -> None:
    auth = GettyAuth(API_KEY, httpx.URL(API), None)
    assert auth.is_api_host(httpx.URL(target)) is gets_credentials


async def test_api_redirect_to_other_host_does_not_leak_api_key(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    """Even with a caller-supplied client that follows redirects."""
    async with httpx.AsyncClient(follow_redirects=True) as http:
        client = make_client(http_client=http, retry_policy=NO_RETRY)
        router.get(url(GET_PATH)).respond(302, headers={"Location": "https://evil.example/x"})
        evil = router.get("https://evil.example/x").respond(200, json=finished())
        with pytest.raises(errors.APIStatusError) as caught:
            await client.generations.get(GEN_ID)
    assert caught.value.status_code == 302
    assert evil.call_count == 0
