"""Which token URL goes with a base URL, and errors that say which host failed (issue 9.10)."""

from __future__ import annotations

import httpx
import pytest
import respx

from getty_ai_async import AsyncGettyAI, errors

from ._helpers import API, API_KEY, API_SECRET, GEN_ID, NO_RETRY, ClientFactory, finished, url

GET_PATH = f"/v3/ai/image-generations/{GEN_ID}"
GETTY_TOKEN_URL = "https://authentication.gettyimages.com/oauth2/token"


@pytest.mark.parametrize(
    ("base_url", "token_url"),
    [
        (None, GETTY_TOKEN_URL),
        ("https://api.gettyimages.com", GETTY_TOKEN_URL),
        ("https://api.gettyimages.com/", GETTY_TOKEN_URL),
        ("https://staging.api.gettyimages.com", GETTY_TOKEN_URL),
        ("https://proxy.example.test", "https://proxy.example.test/oauth2/token"),
        ("https://proxy.example.test/getty/", "https://proxy.example.test/getty/oauth2/token"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/oauth2/token"),
        ("https://gettyimages.com.evil.test", "https://gettyimages.com.evil.test/oauth2/token"),
    ],
)
async def test_token_url_follows_a_non_getty_base_url(base_url: str | None, token_url: str) -> None:
    async with AsyncGettyAI(api_key=API_KEY, api_secret=API_SECRET, base_url=base_url) as client:
        assert str(client.token_url) == token_url


async def test_getty_base_url_env_without_token_url_env(
    monkeypatch: pytest.MonkeyPatch, router: respx.MockRouter, make_client: ClientFactory
) -> None:
    """The token request went to Getty's host (and failed with a nameless ConnectError)."""
    monkeypatch.setenv("GETTY_BASE_URL", "https://proxy.example.test")
    token = router.post("https://proxy.example.test/oauth2/token").respond(
        200, json={"access_token": "t", "expires_in": 1800}
    )
    api = router.get(f"https://proxy.example.test{GET_PATH}").respond(200, json=finished())
    client = make_client(base_url=None, token_url=None)
    await client.generations.get(GEN_ID)
    assert token.call_count == 1
    assert api.call_count == 1


async def test_explicit_token_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GETTY_TOKEN_URL", "https://auth.example.test/token")
    async with AsyncGettyAI(
        api_key=API_KEY, api_secret=API_SECRET, base_url="https://proxy.example.test"
    ) as client:
        assert str(client.token_url) == "https://auth.example.test/token"


async def test_token_endpoint_connection_error_names_the_host(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    router.routes["token"].mock(side_effect=httpx.ConnectError("Name or service not known"))
    with pytest.raises(errors.APIConnectionError) as caught:
        await make_client(retry_policy=NO_RETRY).generations.get(GEN_ID)
    assert "https://auth.test/oauth2/token" in str(caught.value)
    assert "Name or service not known" in str(caught.value)


async def test_api_connection_error_names_the_host(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    router.get(url(GET_PATH)).mock(side_effect=httpx.ConnectError("Connection refused"))
    with pytest.raises(errors.APIConnectionError) as caught:
        await make_client(retry_policy=NO_RETRY).generations.get(GEN_ID)
    assert f"GET {API}{GET_PATH}" in str(caught.value)
