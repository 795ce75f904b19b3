"""`client.history`: past generations, fetched a page at a time as you iterate."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ._models import GenerationHistory, GenerationHistoryItem, MediaType
from ._resource import AsyncResource
from ._routes import ROUTES, validate_id
from .errors import ValidationError

__all__ = ["History"]


def _date(
    field: str, value: dt.date | dt.datetime | str | None, *, end_of_day: bool = False
) -> str | None:
    """`value` as the spec's ``date-time`` (RFC 3339, in UTC: ``2020-01-01T00:00:00Z``).

    A `datetime.date` (or a date-only string) means the start of that day in UTC, or its
    last microsecond with `end_of_day`, so ``date_end=date(2020, 1, 31)`` includes the
    31st. A naive datetime is taken as UTC. Anything else fails here, naming `field`.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = (
                dt.date.fromisoformat(text)
                if len(text) == 10
                else dt.datetime.fromisoformat(text.replace("z", "Z"))
            )
        except ValueError:
            raise ValidationError(
                field, f"expected an ISO 8601 date or date-time, got {text!r}"
            ) from None
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    elif isinstance(value, dt.date):
        clock = dt.time.max if end_of_day else dt.time.min
        moment = dt.datetime.combine(value, clock, tzinfo=dt.UTC)
    else:
        raise ValidationError(field, f"expected a date, datetime or ISO string, got {value!r}")
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


class History(AsyncResource):
    """The account's generation history."""

    async def page(
        self,
        page: int = 1,
        *,
        page_size: int | None = None,
        date_start: dt.date | dt.datetime | str | None = None,
        date_end: dt.date | dt.datetime | str | None = None,
        media_type: MediaType | str | None = None,
        product_ids: Sequence[int] | None = None,
        company_generations: bool | None = None,
    ) -> GenerationHistory:
        """One page of the history (1-based) and the total `result_count`.

        Dates go out as the spec's ``date-time`` in UTC: a `datetime.date` covers that
        whole day (``date_start`` from its first instant, ``date_end`` to its last), a
        naive datetime is taken as UTC, strings are parsed as ISO 8601.
        """
        if page < 1:
            raise ValidationError("page", "pages start at 1")
        if page_size is not None and page_size < 1:
            raise ValidationError("page_size", "must be at least 1")
        params: dict[str, Any] = {
            "page": page,
            "page_size": page_size,
            "date_start": _date("date_start", date_start),
            "date_end": _date("date_end", date_end, end_of_day=True),
            "media_type": MediaType(media_type).value if media_type is not None else None,
            "product_ids": list(product_ids) if product_ids is not None else None,
            "company_generations": None
            if company_generations is None
            else str(company_generations).lower(),
        }
        response = await self._transport.request(
            ROUTES["history_list"], params={k: v for k, v in params.items() if v is not None}
        )
        return GenerationHistory.model_validate(response.json())

    async def list(
        self,
        *,
        page_size: int | None = None,
        date_start: dt.date | dt.datetime | str | None = None,
        date_end: dt.date | dt.datetime | str | None = None,
        media_type: MediaType | str | None = None,
        product_ids: Sequence[int] | None = None,
        company_generations: bool | None = None,
    ) -> AsyncIterator[GenerationHistoryItem]:
        """Every matching generation, newest first; the next page is fetched only when needed.

        Generations created while iterating push older ones onto later pages; an item
        that shows up again at the top of the next page is skipped, not yielded twice.
        """
        number = 1
        seen = 0
        previous_page: set[str] = set()
        while True:
            current = await self.page(
                number,
                page_size=page_size,
                date_start=date_start,
                date_end=date_end,
                media_type=media_type,
                product_ids=product_ids,
                company_generations=company_generations,
            )
            for item in current.generations:
                if item.generation_request_id not in previous_page:
                    yield item
            previous_page = {item.generation_request_id for item in current.generations}
            seen += len(current.generations)
            if not current.generations or seen >= current.result_count:
                return
            number += 1

    async def get(self, generation_request_id: str) -> GenerationHistoryItem:
        """The history record of one generation."""
        response = await self._transport.request(
            ROUTES["history_get"],
            path_params={
                "generation_request_id": validate_id("generation_request_id", generation_request_id)
            },
        )
        return GenerationHistoryItem.model_validate(response.json())
