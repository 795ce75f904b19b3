"""Constants and small helpers shared by the unit tests (no fixtures here)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx

from getty_ai_async import AsyncGettyAI, RetryPolicy

API = "https://api.test"
TOKEN_URL = "https://auth.test/oauth2/token"
CDN = "https://cdn.example.net"

API_KEY = "key-PUBLIC-1234"
API_SECRET = "secret-SHHH-5678"
PASSWORD = "pw-HUNTER2-9012"
REFRESH = "refresh-RT-3456"
ACCESS = "access-AT-7890"
SECRETS = (API_SECRET, PASSWORD, REFRESH, ACCESS)

ClientFactory = Callable[..., AsyncGettyAI]
"""The `make_client` fixture: keyword overrides of the test defaults."""

GEN_ID = "gen-0001"
TOKEN = "tok-1"  # what the pre-mocked token endpoint hands out

# Tiny backoffs so retry tests take milliseconds.
FAST = RetryPolicy(
    max_retries=3,
    max_retry_time=5.0,
    wait_initial=0.001,
    wait_max=0.01,
    wait_jitter=0.0,
    rate_limit_wait=0.01,
)
NO_RETRY = RetryPolicy(max_retries=0, wait_initial=0.001, wait_max=0.001, wait_jitter=0.0)


def url(path: str) -> str:
    return API + path


def token_json(value: str = TOKEN, expires_in: float = 1800, **extra: Any) -> dict[str, Any]:
    return {"access_token": value, "token_type": "Bearer", "expires_in": expires_in, **extra}


def finished(gen_id: str = GEN_ID, n: int = 2, **extra: Any) -> dict[str, Any]:
    """A 200 body of a finished generation with `n` images."""
    return {
        "generation_request_id": gen_id,
        "seed": 42,
        "results": [
            {
                "index": i,
                "is_blocked": False,
                "url": f"{CDN}/{gen_id}/{i}.png",
                "preview_urls": [
                    {"preview_size": "small", "image_url": f"{CDN}/p/{i}", "width": 10, "height": 8}
                ],
            }
            for i in range(n)
        ],
        **extra,
    }


def pending(gen_id: str = GEN_ID) -> dict[str, Any]:
    return {"generation_request_id": gen_id}


def body(request: httpx.Request) -> Any:
    return json.loads(request.content)


def form(request: httpx.Request) -> dict[str, str]:
    parsed = parse_qs(request.content.decode(), strict_parsing=True)
    return {name: values[0] for name, values in parsed.items()}


def assert_api_auth(request: httpx.Request, token: str | None = TOKEN) -> None:
    assert request.headers["Api-Key"] == API_KEY
    if token is None:
        assert "Authorization" not in request.headers
    else:
        assert request.headers["Authorization"] == f"Bearer {token}"


def client_options(**overrides: Any) -> dict[str, Any]:
    """Keyword arguments of a test client: fake credentials and URLs, millisecond waits."""
    return {
        "api_key": API_KEY,
        "api_secret": API_SECRET,
        "base_url": API,
        "token_url": TOKEN_URL,
        "poll_interval": 0.001,
        "wait_timeout": 2.0,
        "retry_policy": FAST,
        "history_grace": 0.0,
    } | overrides


HISTORY_PATH = "/v3/ai/generation-history"


def history_of(*items: dict[str, Any]) -> dict[str, Any]:
    """A history page holding `items` (what a reconciliation looks through)."""
    return {"generations": list(items), "result_count": len(items)}
