"""The route table: every path of the spec, the token endpoint and the CDN, in one place."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

from ._auth import token
from ._cdn import cdn
from ._config import ROUTE_NAMES
from ._downloads import download_get, download_put, download_sizes, redownload
from ._files import file_registration_create, file_registration_get, upload
from ._generations import CREATING_HANDLERS, get_generation
from ._history import history, history_item
from ._http import Request, Response, json_response

if TYPE_CHECKING:
    from ._core import Core

__all__ = ["Route", "match_route"]

Handler = Callable[["Core", Request], Response]
_PARAM = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True, slots=True)
class Route:
    """One method + path template and the handler behind it."""

    name: str
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    api: bool = True
    """Needs Api-Key (and a bearer token) and counts against QPS; token and CDN routes don't."""
    creates: bool = False
    """Creates a generation (counts against the pending cap)."""
    json_body: bool = False
    """Takes a JSON request body: other content types get 415, as the spec lists only
    ``application/json``, ``text/json`` and ``application/*+json``."""


_JSON_BODY_ROUTES = frozenset(
    {*CREATING_HANDLERS, "download_put", "redownload", "file_registration_create"}
)


def _route(name: str, method: str, template: str, handler: Handler, *, api: bool = True) -> Route:
    assert name in ROUTE_NAMES, name
    regex = _PARAM.sub(lambda m: f"(?P<{m.group(1)}>[^/]+)", template)
    return Route(
        name,
        method,
        re.compile(regex),
        handler,
        api,
        name in CREATING_HANDLERS,
        name in _JSON_BODY_ROUTES,
    )


def _not_found(core: Core, req: Request) -> Response:
    return json_response(404, {"message": "Not Found"})


def _not_allowed(core: Core, req: Request) -> Response:
    return json_response(405, {"message": "Method Not Allowed"})


_GEN = "/v3/ai/image-generations"
_IMAGE = _GEN + "/{id}/images/{index}"

_ROUTES = (
    _route("token", "POST", "/oauth2/token", token, api=False),
    _route("generate", "POST", _GEN, CREATING_HANDLERS["generate"]),
    _route("refine", "POST", _GEN + "/refine", CREATING_HANDLERS["refine"]),
    _route("extend", "POST", _GEN + "/extend", CREATING_HANDLERS["extend"]),
    _route(
        "background_removal",
        "POST",
        _GEN + "/background-removal",
        CREATING_HANDLERS["background_removal"],
    ),
    _route("object_removal", "POST", _GEN + "/object-removal", CREATING_HANDLERS["object_removal"]),
    _route(
        "influence_color",
        "POST",
        _GEN + "/influence-color-by-image",
        CREATING_HANDLERS["influence_color"],
    ),
    _route(
        "influence_composition",
        "POST",
        _GEN + "/influence-composition-by-image",
        CREATING_HANDLERS["influence_composition"],
    ),
    _route(
        "background_generation",
        "POST",
        "/beta/ai/image-generations/background-generations",
        CREATING_HANDLERS["background_generation"],
    ),
    _route("get_generation", "GET", _GEN + "/{id}", get_generation),
    _route("variations", "POST", _IMAGE + "/variations", CREATING_HANDLERS["variations"]),
    _route("download_sizes", "GET", _IMAGE + "/download-sizes", download_sizes),
    _route("download_put", "PUT", _IMAGE + "/download", download_put),
    _route("download_get", "GET", _IMAGE + "/download", download_get),
    _route("redownload", "POST", "/v3/ai/redownloads", redownload),
    _route("history", "GET", "/v3/ai/generation-history", history),
    _route("history_item", "GET", "/v3/ai/generation-history/{id}", history_item),
    _route("upload", "PUT", "/v3/search/by-image/uploads/{name}", upload),
    _route(
        "file_registration_create", "POST", "/beta/ai/file-registrations", file_registration_create
    ),
    _route(
        "file_registration_get", "GET", "/beta/ai/file-registrations/{id}", file_registration_get
    ),
    _route("cdn", "GET", "/cdn/(?P<path>.+)", cdn, api=False),
)


_NOT_FOUND = Route("unknown", "", re.compile(""), _not_found, api=False)
_NOT_ALLOWED = Route("unknown", "", re.compile(""), _not_allowed, api=False)


def match_route(method: str, raw_path: str) -> tuple[Route, dict[str, str]]:
    """The route for a request and its decoded path parameters (a 404/405 route if none)."""
    allowed = False
    for route in _ROUTES:
        found = route.pattern.fullmatch(raw_path)
        if found is None:
            continue
        if route.method == method:
            return route, {k: unquote(v) for k, v in found.groupdict().items()}
        allowed = True
    return (_NOT_ALLOWED if allowed else _NOT_FOUND), {}
