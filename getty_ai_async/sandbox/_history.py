"""Generation history: what is kept per generation when ``keep_history`` is on, and its routes."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._http import ApiError, Request, Response, json_response
from ._images import results_payload
from ._validation import MEDIA_TYPES

if TYPE_CHECKING:
    from ._core import Core

__all__ = ["HistoryRecord", "HistoryStore", "history", "history_item"]

_USER = {"username": "sandbox", "first_name": None, "middle_name": None, "last_name": None}
DEFAULT_PRODUCT_ID = 1


@dataclass(slots=True)
class HistoryRecord:
    """The request-side facts of one generation (the rest is in its id)."""

    generation_id: str
    created_ms: int
    generation_type: str
    prompt: str | None
    negative_prompt: str | None
    product_id: int | None
    notes: str | None
    project_code: str | None
    media_type: str | None
    aspect_ratio: str | None
    mood: str | None
    source: tuple[str, int] | None
    original_asset: str | None


class HistoryStore:
    """Per-account records in creation order, plus an id index."""

    def __init__(self) -> None:
        self._by_account: dict[str, list[HistoryRecord]] = {}
        self._created: dict[str, list[int]] = {}
        self._by_id: dict[str, tuple[str, HistoryRecord]] = {}

    def add(self, account: str, record: HistoryRecord) -> None:
        """Append a record (creation times never decrease, so lists stay sorted)."""
        self._by_account.setdefault(account, []).append(record)
        self._created.setdefault(account, []).append(record.created_ms)
        self._by_id[record.generation_id] = (account, record)

    def get(self, account: str, generation_id: str) -> HistoryRecord | None:
        """The record of ``generation_id`` if ``account`` made it."""
        entry = self._by_id.get(generation_id)
        return entry[1] if entry is not None and entry[0] == account else None

    def between(
        self, account: str, start_ms: int | None, end_ms: int | None
    ) -> list[HistoryRecord]:
        """Records created in ``[start_ms, end_ms]``, oldest first (bisected, not scanned)."""
        records = self._by_account.get(account, [])
        created = self._created.get(account, [])
        lo = 0 if start_ms is None else bisect.bisect_left(created, start_ms)
        hi = len(records) if end_ms is None else bisect.bisect_right(created, end_ms)
        return records[lo:hi]


def item_payload(core: Core, record: HistoryRecord) -> dict[str, Any]:
    """GenerationHistoryItemResponse for ``record``."""
    key = core.codec.decode(record.generation_id)
    assert key is not None
    finished = key.is_ready(core.clock.now_ms())
    payload: dict[str, Any] = {
        "generation_request_id": record.generation_id,
        "seed": key.seed,
        "generation_date": core.timestamp(record.created_ms).isoformat().replace("+00:00", "Z"),
        "product_revoked_date": None,
        "prompt": record.prompt,
        "negative_prompt": record.negative_prompt,
        "product_id": record.product_id if record.product_id is not None else DEFAULT_PRODUCT_ID,
        "notes": record.notes,
        "project_code": record.project_code,
        "generation_type": record.generation_type,
        # The spec's MediaType and Mood enums are not nullable: absent, not null.
        "generation_options": {
            name: value
            for name, value in (
                ("media_type", record.media_type),
                ("aspect_ratio", record.aspect_ratio),
                ("mood", record.mood),
            )
            if value is not None
        },
        "results": [
            {k: v for k, v in result.items() if k != "url"}
            for result in results_payload(core, record.generation_id, key)
        ]
        if finished
        else [],
        "user": _USER,
    }
    if record.source is not None:
        payload["source_generation_request"] = {
            "source_generation_request_id": record.source[0],
            "source_generation_result_index": record.source[1],
        }
    if record.original_asset is not None:
        payload["original_asset"] = {"id": record.original_asset}
    return payload


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _int_param(query: dict[str, list[str]], name: str, default: int, high: int) -> int:
    text = _one(query, name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"'{name}' must be an integer.") from None
    if not 1 <= value <= high:
        raise ApiError(400, f"'{name}' must be between 1 and {high}.")
    return value


_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
"""RFC 3339 ``date-time`` (the spec's format for date_start/date_end): offset required."""


def _date_param(core: Core, query: dict[str, list[str]], name: str) -> int | None:
    text = _one(query, name)
    if text is None:
        return None
    try:
        if not _DATE_TIME.fullmatch(text):
            raise ValueError(text)
        moment = datetime.fromisoformat(text.upper().replace(" ", "T"))
    except ValueError:
        raise ApiError(
            400, f"'{name}' must be a date-time with an offset, e.g. 2025-01-31T00:00:00Z."
        ) from None
    return core.sim_ms(moment)


def _product_ids(query: dict[str, list[str]]) -> set[int] | None:
    texts = [part for value in query.get("product_ids", []) for part in value.split(",") if part]
    if not texts:
        return None
    try:
        return {int(text) for text in texts}
    except ValueError:
        raise ApiError(400, "'product_ids' must be integers.") from None


def history(core: Core, req: Request) -> Response:
    """``GET /v3/ai/generation-history``: newest first, paged, ``result_count`` = all matches."""
    query = req.query
    page = _int_param(query, "page", 1, 2**31 - 1)
    page_size = _int_param(query, "page_size", 30, 1000)
    start = _date_param(core, query, "date_start")
    end = _date_param(core, query, "date_end")
    media_type = _one(query, "media_type")
    if media_type is not None and media_type not in MEDIA_TYPES:
        raise ApiError(400, f"'media_type' must be one of {', '.join(MEDIA_TYPES)}.")
    products = _product_ids(query)
    company = (_one(query, "company_generations") or "false").lower()
    if company not in ("true", "false"):
        raise ApiError(400, "'company_generations' must be true or false.")
    if company == "true":
        raise ApiError(403, "Company generations are not enabled for this account.")
    records = core.history.between(req.account, start, end)
    if media_type is not None or products is not None:
        records = [
            r
            for r in records
            if (media_type is None or r.media_type == media_type)
            and (
                products is None
                or (r.product_id if r.product_id is not None else DEFAULT_PRODUCT_ID) in products
            )
        ]
    # Newest first: page p covers positions [(p-1)*size, p*size) counted from the end.
    stop = len(records) - (page - 1) * page_size
    chosen = records[max(0, stop - page_size) : max(0, stop)]
    return json_response(
        200,
        {
            "generations": [item_payload(core, r) for r in reversed(chosen)],
            "result_count": len(records),
        },
    )


def history_item(core: Core, req: Request) -> Response:
    """``GET /v3/ai/generation-history/{id}``."""
    generation_id = req.params["id"]
    core.lookup(generation_id)  # 404 for an unknown id, 410 for an expired one
    record = core.history.get(req.account, generation_id)
    if record is None:
        raise ApiError(404, f"No history for generation request '{generation_id}'.")
    return json_response(200, item_payload(core, record))
