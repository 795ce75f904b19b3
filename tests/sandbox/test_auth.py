"""The token endpoint's grants, and Api-Key / bearer-token checks on API routes."""

from __future__ import annotations

import base64

import httpx
import pytest
from sandbox_helpers import FROZEN, Connect, generate

from getty_ai_async.sandbox import Sandbox


async def _token(sandbox: Sandbox, **form: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=sandbox.transport()) as client:
        return await client.post(sandbox.token_url, data=form)


async def test_client_credentials_grant() -> None:
    sandbox = Sandbox()
    reply = await _token(
        sandbox, grant_type="client_credentials", client_id="key", client_secret="secret"
    )
    assert reply.status_code == 200
    payload = reply.json()
    assert set(payload) == {"access_token", "token_type", "expires_in"}
    assert payload["token_type"] == "Bearer"
    assert payload["expires_in"] == 1800
    assert reply.headers["cache-control"] == "no-store"
    assert sandbox.stats.token_requests == sandbox.stats.tokens_issued == 1


async def test_client_credentials_in_basic_auth() -> None:
    sandbox = Sandbox(api_keys={"key": "secret"})
    basic = base64.b64encode(b"key:secret").decode()
    async with httpx.AsyncClient(transport=sandbox.transport()) as client:
        reply = await client.post(
            sandbox.token_url,
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
        )
    assert reply.status_code == 200


async def test_password_and_refresh_token_grants() -> None:
    sandbox = Sandbox()
    first = await _token(
        sandbox,
        grant_type="password",
        client_id="key",
        client_secret="secret",
        username="ann",
        password="pw",
    )
    assert first.status_code == 200
    refresh = first.json()["refresh_token"]

    second = await _token(
        sandbox,
        grant_type="refresh_token",
        client_id="key",
        client_secret="secret",
        refresh_token=refresh,
    )
    assert second.status_code == 200
    assert second.json()["refresh_token"] == refresh
    assert second.json()["access_token"] != first.json()["access_token"]

    for client_id, token in (("other", refresh), ("key", "unknown")):
        refused = await _token(
            sandbox,
            grant_type="refresh_token",
            client_id=client_id,
            client_secret="secret",
            refresh_token=token,
        )
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"client_id": "key", "client_secret": "secret"}, 400, "invalid_request"),
        (
            {"grant_type": "authorization_code", "client_id": "key", "client_secret": "secret"},
            400,
            "unsupported_grant_type",
        ),
        ({"grant_type": "client_credentials", "client_id": "key"}, 401, "invalid_client"),
        ({"grant_type": "client_credentials", "client_secret": "secret"}, 401, "invalid_client"),
        (
            {"grant_type": "client_credentials", "client_id": "key", "client_secret": "wrong"},
            401,
            "invalid_client",
        ),
        (
            {"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "secret"},
            401,
            "invalid_client",
        ),
        (
            {"grant_type": "password", "client_id": "key", "client_secret": "secret"},
            400,
            "invalid_request",
        ),
    ],
)
async def test_token_refusals(form: dict[str, str], status: int, error: str) -> None:
    sandbox = Sandbox(api_keys={"key": "secret"})
    reply = await _token(sandbox, **form)
    assert reply.status_code == status
    assert reply.json()["error"] == error
    assert sandbox.stats.tokens_issued == 0


async def test_password_grant_without_a_secret() -> None:
    sandbox = Sandbox(api_keys={"key": "secret"})
    form = {"grant_type": "password", "client_id": "key", "username": "ann", "password": "pw"}
    public = await _token(sandbox, **form)
    assert public.status_code == 200
    refreshed = await _token(
        sandbox,
        grant_type="refresh_token",
        client_id="key",
        refresh_token=public.json()["refresh_token"],
    )
    assert refreshed.status_code == 200
    assert (await _token(sandbox, **form, client_secret="wrong")).status_code == 401
    assert (await _token(sandbox, **{**form, "client_id": "nobody"})).status_code == 401


async def test_token_request_must_be_form_encoded() -> None:
    sandbox = Sandbox()
    async with httpx.AsyncClient(transport=sandbox.transport()) as client:
        reply = await client.post(
            sandbox.token_url,
            json={"grant_type": "client_credentials", "client_id": "k", "client_secret": "s"},
        )
    assert reply.status_code == 400
    assert reply.json()["error"] == "invalid_request"


async def test_api_routes_need_api_key_and_a_valid_token(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=0, api_keys={"key": "secret", "other": "pw"})
    async with connect(sandbox) as client, connect(sandbox, key="other", secret="pw") as other:
        token = client.headers["Authorization"]
        path = "/v3/ai/image-generations"
        body = {"prompt": "p"}
        cases = [
            {"Authorization": token},
            {"Api-Key": "", "Authorization": token},
            {"Api-Key": "stranger", "Authorization": token},
            {"Api-Key": "key"},
            {"Api-Key": "key", "Authorization": "Bearer nope"},
            {"Api-Key": "key", "Authorization": token.replace("Bearer", "Basic")},
            {"Api-Key": "key", "Authorization": other.headers["Authorization"]},
        ]
        async with httpx.AsyncClient(
            transport=sandbox.transport(), base_url=sandbox.api_base_url
        ) as bare:
            for headers in cases:
                reply = await bare.post(path, json=body, headers=headers)
                assert reply.status_code == 401, headers
                assert "message" in reply.json()
        assert sandbox.stats.unauthorized == len(cases)
        assert sandbox.stats.submissions == 0
        assert (await client.post(path, json=body)).status_code == 200


async def test_tokens_expire_after_their_ttl(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=0, token_ttl=60.0, time_scale=FROZEN)
    async with connect(sandbox) as client:
        await generate(client)
        sandbox.advance(59.0)
        await generate(client)
        sandbox.advance(1.5)
        expired = await client.post("/v3/ai/image-generations", json={"prompt": "p"})
        assert expired.status_code == 401
        assert "expired" in expired.json()["message"]
    async with connect(sandbox) as client:
        await generate(client)


@pytest.mark.parametrize(("time_scale", "expires_in"), [(0.01, 18), (0.001, 1.8)])
async def test_expires_in_is_reported_in_real_seconds(time_scale: float, expires_in: float) -> None:
    sandbox = Sandbox(time_scale=time_scale)
    reply = await _token(sandbox, grant_type="client_credentials", client_id="k", client_secret="s")
    assert reply.json()["expires_in"] == expires_in


async def test_require_token_false_needs_only_the_api_key(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=0, require_token=False)
    async with connect(sandbox, token=False) as client:
        await generate(client)
        del client.headers["Api-Key"]
        assert (
            await client.post("/v3/ai/image-generations", json={"prompt": "p"})
        ).status_code == 401
