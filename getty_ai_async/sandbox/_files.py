"""Uploaded files (masks, references) and file registrations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

from ._http import ApiError, Request, Response, empty_response, json_response
from ._images import PREVIEW_SIZES
from ._validation import FILE_REGISTRATION, parse_body

if TYPE_CHECKING:
    from ._core import Core

__all__ = [
    "MAX_UPLOAD_BYTES",
    "FileStore",
    "file_registration_create",
    "file_registration_get",
    "registration",
    "upload",
    "uploaded",
]

UPLOAD_PATH = "/v3/search/by-image/uploads/"
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
_SIGNATURES = {
    "image/png": (b"\x89PNG\r\n\x1a\n", "PNG"),
    "image/jpeg": (b"\xff\xd8\xff", "JPEG"),
    "image/jpg": (b"\xff\xd8\xff", "JPEG"),
}
"""The upload route's media types (the spec lists image/jpeg and image/png) and the first
bytes every file of that type starts with."""


@dataclass(slots=True)
class Upload:
    """Bytes PUT to an upload URL."""

    data: bytes
    uploaded_ms: int


@dataclass(slots=True)
class Registration:
    """A registered upload."""

    account: str
    category: str | None


class FileStore:
    """Uploads by (Api-Key, file name) and registrations by id."""

    def __init__(self) -> None:
        self.uploads: dict[tuple[str, str], Upload] = {}
        self.registrations: dict[str, Registration] = {}


def upload(core: Core, req: Request) -> Response:
    """``PUT /v3/search/by-image/uploads/{file-name}``: store the body (a name is overwritten)."""
    content_type = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in _SIGNATURES:
        raise ApiError(400, "'Content-Type' must be image/jpeg or image/png.")
    if not req.body:
        raise ApiError(400, "The uploaded file is empty.")
    if len(req.body) > MAX_UPLOAD_BYTES:
        raise ApiError(400, "Uploaded files must be 10MB or smaller.")
    signature, kind = _SIGNATURES[content_type]
    if not req.body.startswith(signature):
        raise ApiError(400, f"The uploaded file is not a {kind} image ({content_type}).")
    core.files.uploads[req.account, req.params["name"]] = Upload(req.body, core.clock.now_ms())
    core.stats.uploads += 1
    return empty_response(200)


def uploaded(core: Core, account: str, url: str, field: str) -> Upload:
    """The live upload ``url`` points at for ``account``; 400 naming ``field`` otherwise."""
    prefix = core.config.api_base_url.rstrip("/") + UPLOAD_PATH
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ApiError(400, f"'{field}' must be an upload URL of the form {prefix}<file-name>.")
    found = core.files.uploads.get((account, unquote(url[len(prefix) :])))
    if found is None:
        raise ApiError(400, f"'{field}': nothing was uploaded to {url} with this Api-Key.")
    if core.clock.now_ms() - found.uploaded_ms > core.config.upload_ttl * 1000:
        raise ApiError(400, f"'{field}': the upload at {url} has expired.")
    return found


def registration(core: Core, account: str, registration_id: str, category: str) -> Registration:
    """A registration of ``account`` with ``category``; 404 unknown, 400 other category."""
    found = core.files.registrations.get(registration_id)
    if found is None or found.account != account:
        raise ApiError(404, f"File registration '{registration_id}' was not found.")
    if found.category != category:
        raise ApiError(
            400, f"'reference_file_registration_id' must be registered with category {category}."
        )
    return found


def file_registration_create(core: Core, req: Request) -> Response:
    """``POST /beta/ai/file-registrations``."""
    body = parse_body(req.body, FILE_REGISTRATION)
    uploaded(core, req.account, body["url"], "url")
    if body["rights_claimed"] is not True:
        raise ApiError(400, "'rights_claimed' must be true.")
    registration_id = core.new_hex_id()
    core.files.registrations[registration_id] = Registration(req.account, body.get("category"))
    core.stats.file_registrations += 1
    return json_response(200, {"id": registration_id})


def file_registration_get(core: Core, req: Request) -> Response:
    """``GET /beta/ai/file-registrations/{id}``."""
    registration_id = req.params["id"]
    found = core.files.registrations.get(registration_id)
    if found is None or found.account != req.account:
        raise ApiError(404, f"File registration '{registration_id}' was not found.")
    previews = [
        {
            "preview_size": size,
            "image_url": core.cdn_url(f"files/{registration_id}/{size}.png"),
            "width": longest,
            "height": longest,
        }
        for size, longest in PREVIEW_SIZES.items()
    ]
    return json_response(200, {"id": registration_id, "preview_urls": previews})
