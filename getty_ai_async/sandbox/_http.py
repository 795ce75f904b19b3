"""Request/response values passed between the ASGI layer and the route handlers."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

__all__ = [
    "ApiError",
    "Message",
    "Receive",
    "Request",
    "Response",
    "Scope",
    "Send",
    "check_json_content_type",
    "empty_response",
    "json_response",
    "parse_index",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_INDEX = re.compile(r"-?[0-9]{1,10}")


@dataclass(slots=True)
class Request:
    """One HTTP request, body already read."""

    params: dict[str, str]
    """Percent-decoded path parameters of the matched route."""
    query: dict[str, list[str]]
    headers: dict[str, str]
    """Lower-case header names; the last value wins."""
    body: bytes
    account: str = ""
    """The caller's Api-Key, once authenticated."""


@dataclass(slots=True)
class Response:
    """One HTTP reply."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """Headers for ``http.response.start``, content-type and -length included."""
        raw = [(b"content-length", str(len(self.body)).encode())]
        if self.content_type is not None:
            raw.append((b"content-type", self.content_type.encode()))
        raw += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers]
        return raw


def json_response(
    status: int, payload: object, headers: list[tuple[str, str]] | None = None
) -> Response:
    """A compact JSON reply (``{"message":"Too Many Requests"}`` byte for byte)."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(status, body, "application/json", headers or [])


def empty_response(status: int) -> Response:
    """A reply without a body (e.g. a download 202)."""
    return Response(status)


class ApiError(Exception):
    """Raised by handlers to answer with ``{"message": ...}`` and ``status``."""

    def __init__(
        self, status: int, message: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []

    def response(self) -> Response:
        """The reply this error stands for."""
        return json_response(self.status, {"message": self.message}, self.headers)


def _is_json_media_type(media_type: str) -> bool:
    if media_type in ("application/json", "text/json"):
        return True
    kind, _, subtype = media_type.partition("/")
    return kind == "application" and subtype.endswith("+json")


def check_json_content_type(request: Request) -> None:
    """415 unless a body comes as one of the spec's JSON media types.

    The spec's request bodies list ``application/json``, ``text/json`` and
    ``application/*+json``. A request without a body (and without a Content-Type) is
    left to the handler, which knows whether the body is optional.
    """
    header = request.headers.get("content-type")
    if header is None and not request.body:
        return
    media_type = (header or "").split(";")[0].strip().lower()
    if not _is_json_media_type(media_type):
        shown = f"'{media_type}'" if media_type else "none"
        raise ApiError(415, f"Unsupported Content-Type {shown}: send the body as application/json.")


def parse_index(text: str) -> int:
    """A path ``{index}``; ApiError 400 unless it is a 32-bit integer."""
    if not _INDEX.fullmatch(text) or not -(2**31) <= int(text) < 2**31:
        raise ApiError(400, f"'index' must be an integer, got '{quote(text)}'.")
    return int(text)
