"""Image shapes and sizes, and the JSON describing a generation's results."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._ids import GenerationKey
from ._png import fit

if TYPE_CHECKING:
    from ._core import Core

__all__ = [
    "DOWNLOAD_LONGEST",
    "FULL_LONGEST",
    "PREVIEW_SIZES",
    "RESULT_LONGEST",
    "aspect_shape",
    "download_path",
    "download_sizes_payload",
    "extended_shape",
    "generation_payload",
    "results_payload",
]

FULL_LONGEST = 4096
"""Shapes are kept at the "4k" size; every other size is scaled from it."""
DOWNLOAD_LONGEST = {"1k": 1024, "4k": 4096}
"""Longest side of each download size: what download-sizes reports and the CDN serves."""
RESULT_LONGEST = 256
PREVIEW_SIZES = {"small": 64, "medium": 128}
_MIN_SIDE_RATIO = 8
"""Extends may change the shape, but never beyond 8:1."""


def aspect_shape(aspect_ratio: str) -> tuple[int, int]:
    """4k-size width and height for an aspect ratio such as ``16:9``."""
    width, height = (int(part) for part in aspect_ratio.split(":"))
    return fit(width, height, FULL_LONGEST)


def extended_shape(
    shape: tuple[int, int], left: float, right: float, top: float, bottom: float
) -> tuple[int, int]:
    """Shape after adding fractions of the width/height to each side (longest side kept)."""
    width = shape[0] * (1 + left + right)
    height = shape[1] * (1 + top + bottom)
    # Huge extensions only squeeze the other side, and never past 8:1.
    width = min(max(width, height / _MIN_SIDE_RATIO), height * _MIN_SIDE_RATIO)
    height = min(max(height, width / _MIN_SIDE_RATIO), width * _MIN_SIDE_RATIO)
    return fit(round(width), round(height), FULL_LONGEST)


def download_path(generation_id: str, index: int, size_name: str) -> str:
    """CDN path of a download."""
    return f"downloads/{generation_id}/{index}/{size_name}.png"


def _preview(core: Core, path: str, size: str, width: int, height: int) -> dict[str, Any]:
    return {"preview_size": size, "image_url": core.cdn_url(path), "width": width, "height": height}


def results_payload(core: Core, generation_id: str, key: GenerationKey) -> list[dict[str, Any]]:
    """ImageDataResponse items; blocked images have no url and no previews."""
    results: list[dict[str, Any]] = []
    for index in range(key.count):
        if key.is_blocked(index):
            results.append({"index": index, "is_blocked": True, "preview_urls": [], "url": None})
            continue
        previews = [
            _preview(
                core,
                f"previews/{generation_id}/{index}/{size}.png",
                size,
                *fit(key.width, key.height, longest),
            )
            for size, longest in PREVIEW_SIZES.items()
        ]
        url = core.cdn_url(f"images/{generation_id}/{index}.png")
        results.append({"index": index, "is_blocked": False, "preview_urls": previews, "url": url})
    return results


def generation_payload(core: Core, generation_id: str, key: GenerationKey) -> dict[str, Any]:
    """ImageGenerationsResponse of a finished generation."""
    payload: dict[str, Any] = {
        "generation_request_id": generation_id,
        "seed": key.seed,
        "results": results_payload(core, generation_id, key),
    }
    asset = core.original_assets.get(generation_id)
    if asset is not None:
        payload["original_asset"] = {"id": asset}
    return payload


def download_sizes_payload(key: GenerationKey) -> dict[str, Any]:
    """DownloadSizesResponse: the 1k and 4k dimensions in the image's shape (as served)."""
    sizes = []
    for name, longest in DOWNLOAD_LONGEST.items():
        width, height = fit(key.width, key.height, longest)
        sizes.append({"size_name": name, "width": width, "height": height})
    return {"download_sizes": sizes}
