"""Download sizes, the PUT/GET download process and re-downloads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._config import sample_duration
from ._http import ApiError, Request, Response, empty_response, json_response, parse_index
from ._ids import GenerationKey
from ._images import download_path, download_sizes_payload
from ._validation import DOWNLOAD, REDOWNLOAD, parse_body

if TYPE_CHECKING:
    from ._core import Core

__all__ = ["DownloadStore", "download_get", "download_put", "download_sizes", "redownload"]


@dataclass(slots=True)
class Download:
    """The latest download started for one image."""

    ready_ms: int
    size_name: str
    asset_id: str
    sizes: set[str] = field(default_factory=set)
    """Sizes bought or redownloaded: the CDN serves only these."""


class DownloadStore:
    """Downloads by (generation id, index), and generated asset id -> image."""

    def __init__(self) -> None:
        self.by_image: dict[tuple[str, int], Download] = {}
        self.assets: dict[str, tuple[str, int]] = {}

    def is_ready(self, generation_id: str, index: int, size_name: str, now_ms: int) -> bool:
        """Whether this size of the image was bought and is ready (so the CDN may serve it)."""
        found = self.by_image.get((generation_id, index))
        return (
            found is not None
            and now_ms >= found.ready_ms
            and (size_name == found.size_name or size_name in found.sizes)
        )


def _image(core: Core, req: Request) -> tuple[str, int, GenerationKey]:
    generation_id, index = req.params["id"], parse_index(req.params["index"])
    return generation_id, index, core.finished_image(generation_id, index)


def _url_reply(
    core: Core, generation_id: str, index: int, size_name: str, asset_id: str
) -> Response:
    url = core.cdn_url(download_path(generation_id, index, size_name))
    return json_response(200, {"url": url, "generated_asset_id": asset_id})


def download_sizes(core: Core, req: Request) -> Response:
    """``GET .../images/{index}/download-sizes``."""
    _, _, key = _image(core, req)
    return json_response(200, download_sizes_payload(key))


def download_put(core: Core, req: Request) -> Response:
    """``PUT .../images/{index}/download``: 200 at once or 202 while preparing; 409 if busy."""
    generation_id, index, _ = _image(core, req)
    body = parse_body(req.body, DOWNLOAD)
    now = core.clock.now_ms()
    store = core.downloads
    current = store.by_image.get((generation_id, index))
    if current is not None and now < current.ready_ms:
        raise ApiError(
            409, f"A download is already in progress for '{generation_id}' image {index}."
        )
    delay = sample_duration(core.results_rng, core.config.download_pending_seconds)
    asset_id = current.asset_id if current is not None else core.new_hex_id()
    download = Download(now + int(delay * 1000), body["size_name"], asset_id)
    if current is not None:
        # A size bought before stays downloadable.
        download.sizes = current.sizes | {current.size_name}
    store.by_image[generation_id, index] = download
    store.assets[asset_id] = (generation_id, index)
    core.stats.downloads += 1
    if now >= download.ready_ms:
        return _url_reply(core, generation_id, index, download.size_name, download.asset_id)
    return empty_response(202)


def download_get(core: Core, req: Request) -> Response:
    """``GET .../images/{index}/download``: 202 while preparing, then the URL."""
    generation_id, index, _ = _image(core, req)
    download = core.downloads.by_image.get((generation_id, index))
    if download is None:
        raise ApiError(404, f"No download was started for '{generation_id}' image {index}.")
    if core.clock.now_ms() < download.ready_ms:
        return empty_response(202)
    return _url_reply(core, generation_id, index, download.size_name, download.asset_id)


def redownload(core: Core, req: Request) -> Response:
    """``POST /v3/ai/redownloads``: a fresh URL for an asset downloaded before."""
    body = parse_body(req.body, REDOWNLOAD)
    asset_id = body["generated_asset_id"]
    target = core.downloads.assets.get(asset_id)
    if target is None:
        raise ApiError(404, f"Generated asset '{asset_id}' was not found.")
    generation_id, index = target
    core.lookup(generation_id)
    core.stats.redownloads += 1
    core.downloads.by_image[target].sizes.add(body["size_name"])
    return _url_reply(core, generation_id, index, body["size_name"], asset_id)
