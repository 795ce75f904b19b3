"""The Getty AI OpenAPI spec (a copy kept beside these tests) and openapi-core glue for httpx.

`SpecCheckingTransport` wraps any httpx transport and validates, with openapi-core, every
request the client sends to the API host and every response that comes back. Token
and CDN requests are not part of the spec and are passed through unchecked.

Where the spec is looser than the service's documented behaviour, the tests follow the
prose and say so here:

- Almost nothing is marked ``required`` (``prompt``, ``size_name``, ``mask_url`` on most
  routes...): the sandbox, like the service's documentation, refuses requests without
  them (400). Schema-valid requests can therefore be rejected; no test expects otherwise.
- 401 is documented on one path only, 429 on some: every API route can answer them
  (expired or missing credentials; rate and pending-generation limits, see the docs'
  "polling and 429" page). 400 is not documented on the history list although invalid
  query values are refused. 415 is documented nowhere: the spec lists the JSON media
  types a body may use (``application/json``, ``text/json``, ``application/*+json``), and
  ASP.NET, which serves this API, answers 415 to others.
- The upload body is typed ``string``/``format: byte`` (base64) under ``image/jpeg`` and
  ``image/png``; the service takes the raw image bytes, which is what the client sends
  and the sandbox checks (by their first bytes). That body is not schema-validated.
- Error replies carry ``{"message": ...}`` where the spec documents no content.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.finders import APICallPathFinder
from werkzeug.datastructures import Headers, ImmutableMultiDict

SPEC_PATH = Path(__file__).with_name("getty-ai-openapi.yml")

UPLOAD_PATH = "/v3/search/by-image/uploads/{file-name}"
JSON_MEDIA_TYPES = ("application/json", "text/json", "application/*+json")

ALWAYS_POSSIBLE = frozenset({401, 429})
"""Statuses the prose allows on every API route, documented or not (see above)."""
ALSO_POSSIBLE: dict[tuple[str, str], frozenset[int]] = {
    ("GET", "/v3/ai/generation-history"): frozenset({400}),
}


@functools.cache
def raw_spec() -> dict[str, Any]:
    with SPEC_PATH.open(encoding="utf-8") as file:
        loaded: dict[str, Any] = yaml.safe_load(file)
    return loaded


@functools.cache
def openapi() -> OpenAPI:
    return OpenAPI.from_file_path(str(SPEC_PATH))


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path template, operation) for every operation of the spec."""
    for path, item in raw_spec()["paths"].items():
        for method, operation in item.items():
            if method in {"get", "put", "post", "delete", "patch"}:
                yield method.upper(), path, operation


def json_body_operations() -> list[tuple[str, str]]:
    """Operations whose request body the spec describes as JSON."""
    return [
        (method, path)
        for method, path, operation in operations()
        if set((operation.get("requestBody") or {}).get("content", {})) == set(JSON_MEDIA_TYPES)
    ]


def allowed_statuses(method: str, path: str) -> frozenset[int]:
    """Documented statuses plus those the prose implies (module docstring)."""
    operation = raw_spec()["paths"][path][method.lower()]
    documented = {int(code) for code in operation["responses"] if code.isdigit()}
    extra = ALSO_POSSIBLE.get((method, path), frozenset())
    if (method, path) in json_body_operations():
        extra |= {415}
    return frozenset(documented) | ALWAYS_POSSIBLE | extra


class _Request:
    """An httpx request as openapi-core's ``Request`` protocol."""

    def __init__(self, request: httpx.Request) -> None:
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(request.url.params.multi_items())),
            header=Headers(list(request.headers.items())),
            cookie=ImmutableMultiDict(),
        )
        self.method = request.method.lower()
        self.host_url = f"{request.url.scheme}://{request.url.netloc.decode()}"
        self.path = request.url.path
        self.body: bytes | None = request.content or None
        self.content_type = request.headers.get("content-type", "").lower()


class _Response:
    """An httpx response as openapi-core's ``Response`` protocol."""

    def __init__(self, response: httpx.Response) -> None:
        self.data = response.content
        self.status_code = response.status_code
        self.content_type = response.headers.get("content-type", "")
        self.headers = Headers(list(response.headers.items()))


def template_of(request: httpx.Request) -> str | None:
    """The spec path template `request` matches, if any."""
    finder = APICallPathFinder(openapi().spec)
    try:
        path, _, _, _, _ = finder.find(
            request.method.lower(),
            f"{request.url.scheme}://{request.url.netloc.decode()}{request.url.path}",
        )
    except Exception:
        return None
    return str(path.parts[-1]) if path is not None else None


@dataclass
class Exchange:
    method: str
    template: str
    status: int
    problems: list[str] = field(default_factory=list)


def check_exchange(request: httpx.Request, response: httpx.Response) -> Exchange:
    """Validate one request and its response against the spec; what was wrong, if anything."""
    template = template_of(request)
    exchange = Exchange(request.method, template or "?", response.status_code)
    if template is None:
        exchange.problems.append(f"no operation of the spec for {request.method} {request.url}")
        return exchange
    if template != UPLOAD_PATH:
        for error in openapi().iter_request_errors(_Request(request)):
            cause = error.__cause__ or error
            exchange.problems.append(f"request: {error}: {cause}")
    if response.status_code not in allowed_statuses(request.method, template):
        exchange.problems.append(f"status {response.status_code} is not documented")
    elif response.is_success or response.status_code == 202:
        for error in openapi().iter_response_errors(_Request(request), _Response(response)):
            cause = error.__cause__ or error
            exchange.problems.append(f"response {response.status_code}: {error}: {cause}")
    return exchange


class SpecCheckingTransport(httpx.AsyncBaseTransport):
    """Passes requests on to `inner`; checks those to `api_host` against the spec."""

    def __init__(self, inner: httpx.AsyncBaseTransport, api_host: str) -> None:
        self.inner = inner
        self.api_host = api_host
        self.exchanges: list[Exchange] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.host == self.api_host and not request.url.path.startswith("/oauth2/"):
            await response.aread()
            self.exchanges.append(check_exchange(request, response))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    def problems(self) -> list[str]:
        return [
            f"{exchange.method} {exchange.template} -> {exchange.status}: {problem}"
            for exchange in self.exchanges
            for problem in exchange.problems
        ]

    def operations_seen(self) -> set[tuple[str, str]]:
        return {(exchange.method, exchange.template) for exchange in self.exchanges}
