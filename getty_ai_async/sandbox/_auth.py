"""The OAuth2 token endpoint and the Api-Key / bearer-token / QPS checks of API routes."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote

from ._http import ApiError, Request, Response, json_response

if TYPE_CHECKING:
    from ._core import Core

__all__ = ["TokenStore", "authenticate", "seconds_value", "token"]

_GRANTS = ("client_credentials", "password", "refresh_token")
_TOO_MANY = "Too Many Requests"


class TokenStore:
    """Issued access tokens (token -> Api-Key, expiry) and refresh tokens (token -> Api-Key)."""

    def __init__(self) -> None:
        self._access: dict[str, tuple[str, int]] = {}
        self._refresh: dict[str, str] = {}

    def issue(self, token: str, client_id: str, expires_ms: int) -> None:
        """Record a new access token."""
        self._access[token] = (client_id, expires_ms)

    def issue_refresh(self, token: str, client_id: str) -> None:
        """Record a new refresh token."""
        self._refresh[token] = client_id

    def refresh_owner(self, token: str) -> str | None:
        """The Api-Key a refresh token was issued to."""
        return self._refresh.get(token)

    def check(self, token: str, client_id: str, now_ms: int) -> str | None:
        """Why ``token`` is not valid for ``client_id`` now, or None when it is."""
        entry = self._access.get(token)
        if entry is None:
            return "The access token is not valid."
        owner, expires_ms = entry
        if now_ms >= expires_ms:
            del self._access[token]
            return "The access token has expired."
        if owner != client_id:
            return "The access token was issued to a different Api-Key."
        return None


def seconds_value(seconds: float) -> int | float:
    """A JSON number of seconds: an int when whole."""
    seconds = round(seconds, 6)
    return int(seconds) if seconds.is_integer() else seconds


def _oauth_error(status: int, error: str, description: str) -> Response:
    response = json_response(status, {"error": error, "error_description": description})
    response.headers.append(("cache-control", "no-store"))
    return response


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, _, secret = decoded.partition(":")
    return unquote(client_id), unquote(secret)


def _client_ok(keys: dict[str, str] | None, grant: str, client_id: str, secret: str) -> bool:
    # The user's password (or a refresh token) vouches for public clients, which have
    # no secret; a secret that is sent must still be the right one.
    if not client_id or (not secret and grant == "client_credentials"):
        return False
    if keys is None:
        return True
    return client_id in keys and (not secret or keys[client_id] == secret)


def token(core: Core, req: Request) -> Response:
    """``POST /oauth2/token`` (form-encoded; client credentials in the form or Basic auth)."""
    core.stats.token_requests += 1
    content_type = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return _oauth_error(
            400, "invalid_request", "Send the token request form-encoded (x-www-form-urlencoded)."
        )
    try:
        form = {k: v[-1] for k, v in parse_qs(req.body.decode(), keep_blank_values=True).items()}
    except UnicodeDecodeError:
        return _oauth_error(400, "invalid_request", "The form is not UTF-8.")
    client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
    basic = _basic_credentials(req.headers.get("authorization", ""))
    if basic is not None and not client_id:
        client_id, secret = basic
    grant = form.get("grant_type", "")
    if not grant:
        return _oauth_error(400, "invalid_request", "grant_type is required.")
    if grant not in _GRANTS:
        return _oauth_error(
            400, "unsupported_grant_type", f"grant_type {grant!r} is not supported."
        )
    if not _client_ok(core.config.api_keys, grant, client_id, secret):
        return _oauth_error(401, "invalid_client", "Unknown client_id or wrong client_secret.")
    refresh: str | None = None
    if grant == "password":
        if not form.get("username") or not form.get("password"):
            return _oauth_error(400, "invalid_request", "username and password are required.")
        refresh = core.new_hex_id()
        core.tokens.issue_refresh(refresh, client_id)
    elif grant == "refresh_token":
        refresh = form.get("refresh_token", "")
        if not refresh or core.tokens.refresh_owner(refresh) != client_id:
            return _oauth_error(400, "invalid_grant", "The refresh_token is not valid.")
    access = core.new_hex_id()
    ttl = core.config.token_ttl
    core.tokens.issue(access, client_id, core.clock.now_ms() + int(ttl * 1000))
    core.stats.tokens_issued += 1
    payload: dict[str, object] = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": seconds_value(core.clock.to_real(ttl)),
    }
    if refresh is not None:
        payload["refresh_token"] = refresh
    response = json_response(200, payload)
    response.headers.append(("cache-control", "no-store"))
    return response


def _unauthorized(core: Core, message: str) -> ApiError:
    core.stats.unauthorized += 1
    return ApiError(401, message)


def _retry_after(core: Core) -> list[tuple[str, str]]:
    if core.config.retry_after is None:
        return []
    seconds = max(core.clock.to_real(core.config.retry_after), 0.000001)
    text = f"{seconds:.6f}".rstrip("0").rstrip(".")
    return [("retry-after", text)]


def authenticate(core: Core, req: Request) -> None:
    """Check Api-Key, the account's request rate, then the bearer token.

    Sets ``req.account``; raises ApiError 401 or 429 (with Retry-After) otherwise.
    """
    config = core.config
    key = req.headers.get("api-key", "").strip()
    if not key:
        raise _unauthorized(core, "The Api-Key header is required.")
    if config.api_keys is not None and key not in config.api_keys:
        raise _unauthorized(core, "The Api-Key is not valid.")
    req.account = key
    if config.qps is not None and not core.rate.acquire(
        key, core.clock.now(), config.qps, config.burst
    ):
        core.stats.rate_limited_qps += 1
        raise ApiError(429, _TOO_MANY, _retry_after(core))
    if not config.require_token:
        return
    scheme, _, bearer = req.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not bearer.strip():
        raise _unauthorized(core, "An Authorization: Bearer token is required.")
    problem = core.tokens.check(bearer.strip(), key, core.clock.now_ms())
    if problem is not None:
        raise _unauthorized(core, problem)
