"""The CDN: PNG bytes behind every image URL the API hands out."""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

from ._http import ApiError, Request, Response, json_response, parse_index
from ._ids import GenerationKey
from ._images import DOWNLOAD_LONGEST, PREVIEW_SIZES, RESULT_LONGEST
from ._png import fit, render_png

if TYPE_CHECKING:
    from ._core import Core

__all__ = ["cdn"]


class _NotFound(Exception):
    """No CDN object at that path (or not bought yet)."""


def _image(core: Core, generation_id: str, index_text: str) -> tuple[GenerationKey, int]:
    try:
        index = parse_index(index_text)
        return core.finished_image(generation_id, index), index
    except ApiError:
        raise _NotFound from None


def _render(key: GenerationKey, index: int, longest: int) -> bytes:
    return render_png(key.look, key.seed, index, *fit(key.width, key.height, longest))


def _bytes_for(core: Core, parts: list[str]) -> bytes:
    match parts:
        case ["images", generation_id, name] if name.endswith(".png"):
            key, index = _image(core, generation_id, name.removesuffix(".png"))
            return _render(key, index, RESULT_LONGEST)
        case ["previews", generation_id, index_text, name] if name.endswith(".png"):
            longest = PREVIEW_SIZES.get(name.removesuffix(".png"))
            key, index = _image(core, generation_id, index_text)
            if longest is None:
                raise _NotFound
            return _render(key, index, longest)
        case ["downloads", generation_id, index_text, name] if name.endswith(".png"):
            longest = DOWNLOAD_LONGEST.get(name.removesuffix(".png"))
            key, index = _image(core, generation_id, index_text)
            size_name = name.removesuffix(".png")
            if longest is None or not core.downloads.is_ready(
                generation_id, index, size_name, core.clock.now_ms()
            ):
                raise _NotFound
            return _render(key, index, longest)
        case ["files", registration_id, name] if name.endswith(".png"):
            longest = PREVIEW_SIZES.get(name.removesuffix(".png"))
            if longest is None or registration_id not in core.files.registrations:
                raise _NotFound
            return render_png(zlib.crc32(registration_id.encode()), 0, 0, longest, longest)
    raise _NotFound


def cdn(core: Core, req: Request) -> Response:
    """``GET /cdn/...``: no credentials needed; counts requests that carried them anyway."""
    core.stats.cdn_requests += 1
    if "authorization" in req.headers or "api-key" in req.headers:
        core.stats.cdn_requests_with_credentials += 1
    try:
        data = _bytes_for(core, req.params["path"].split("/"))
    except _NotFound:
        return json_response(404, {"message": "Not Found"})
    return Response(200, data, "image/png", [("cache-control", "public, max-age=86400")])
