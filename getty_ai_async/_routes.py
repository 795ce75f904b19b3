"""Every route of the AI Generator API in one table, so a path change is one line."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from .errors import ValidationError

__all__ = ["ROUTES", "Route", "validate_id", "validate_index"]

_PLACEHOLDER = re.compile(r"{(\w+)}")
# "/", "\\", "..", "?", "#", "%" or whitespace (``\s`` is what `str.isspace` says):
# one regex scan, where a test per character costs a poll's id some 10 µs.
_FORBIDDEN_IN_ID = re.compile(r"[/\\?#%\s]|\.\.")


@dataclass(frozen=True, slots=True)
class Route:
    """One operation: HTTP method and path template."""

    name: str
    method: str
    template: str
    purchase: bool = False
    """Each request buys something (a download): it is never replayed when it may have
    reached the service, whatever its method or the retry policy; the caller finds out
    whether it took effect instead (see `Downloads.create`)."""

    @property
    def idempotent(self) -> bool:
        """Whether sending it twice does no more than sending it once."""
        return not self.purchase and self.method in {"GET", "PUT", "HEAD", "DELETE"}

    def path(self, **params: str | int) -> str:
        """Fill the template; ids and indexes are validated, then percent-encoded."""

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            value = params[name]
            if name == "index":
                return str(validate_index(value))
            return quote(validate_id(name, value), safe="")

        return _PLACEHOLDER.sub(fill, self.template)


def validate_id(field: str, value: object) -> str:
    """Reject ids that could escape their path segment (``/``, ``..``, ``?``, ``#``).

    A value made only of dots is refused too: ``.`` is a dot segment that URL
    normalisation removes (``get(".")`` would be ``GET /v3/ai/image-generations``).
    Checked after NFKC folding, so a fullwidth dot is no way around it.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, "must be a non-empty string")
    if _FORBIDDEN_IN_ID.search(value):
        raise ValidationError(
            field, f"{value!r} is not a valid id (no '/', '..', '?', '#', spaces)"
        )
    # NFKC leaves ASCII as it is.
    if not (value if value.isascii() else unicodedata.normalize("NFKC", value)).strip("."):
        raise ValidationError(field, f"{value!r} is not a valid id (a dot segment)")
    return value


def validate_index(value: object) -> int:
    """An image index: a non-negative int (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError("index", f"must be a non-negative integer, got {value!r}")
    return value


_GEN = "/v3/ai/image-generations"
_IMAGE = _GEN + "/{generation_request_id}/images/{index}"

ROUTES: Final = {
    route.name: route
    for route in (
        Route("generate", "POST", _GEN),
        Route("get_generation", "GET", _GEN + "/{generation_request_id}"),
        Route("variations", "POST", _IMAGE + "/variations"),
        Route("refine", "POST", _GEN + "/refine"),
        Route("extend", "POST", _GEN + "/extend"),
        Route("remove_background", "POST", _GEN + "/background-removal"),
        Route("remove_object", "POST", _GEN + "/object-removal"),
        Route("influence_color", "POST", _GEN + "/influence-color-by-image"),
        Route("influence_composition", "POST", _GEN + "/influence-composition-by-image"),
        Route("generate_background", "POST", "/beta/ai/image-generations/background-generations"),
        Route("download_sizes", "GET", _IMAGE + "/download-sizes"),
        Route("download_create", "PUT", _IMAGE + "/download", purchase=True),
        Route("download_get", "GET", _IMAGE + "/download"),
        Route("redownload", "POST", "/v3/ai/redownloads", purchase=True),
        Route("history_list", "GET", "/v3/ai/generation-history"),
        Route("history_get", "GET", "/v3/ai/generation-history/{generation_request_id}"),
        Route("file_register", "POST", "/beta/ai/file-registrations"),
        Route("file_get", "GET", "/beta/ai/file-registrations/{file_registration_id}"),
        Route("upload", "PUT", "/v3/search/by-image/uploads/{file_name}"),
    )
}
