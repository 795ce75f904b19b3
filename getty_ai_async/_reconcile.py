"""Finding the generation a POST created when its reply never came.

A POST whose fate is unknown (the connection broke after sending, a 500 or a 504) may
have created a generation that is paid for. Rather than write it off, or send it again
and maybe pay twice, look in the account's generation history for one created since
the POST left, with the same prompt and options, that nobody here knows of yet.
"""

from __future__ import annotations

import datetime as dt
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from .errors import GettyAIError

if TYPE_CHECKING:
    from ._history import History
    from ._models import GenerationHistoryItem

__all__ = ["Claim", "find_in_history"]

Claim = Callable[[str], bool | Awaitable[bool]]
"""Takes an id for the POST being looked up; False when it is someone else's."""

log = logging.getLogger("getty_ai_async.reconcile")

# Clocks differ: look a little before the send time.
_CLOCK_SKEW = dt.timedelta(seconds=30)
_PAGE_SIZE = 100
_MAX_PAGES = 5
_LOOKS = 3

# Request fields and where a history item keeps them.
_TOP_LEVEL = ("prompt", "negative_prompt", "seed", "product_id", "project_code", "notes")
_OPTIONS = ("aspect_ratio", "media_type", "mood")


def _matches(item: GenerationHistoryItem, body: Mapping[str, Any]) -> bool:
    for name in _TOP_LEVEL:
        if body.get(name) is not None and getattr(item, name) != body[name]:
            return False
    options = item.generation_options
    for name in _OPTIONS:
        wanted = body.get(name)
        if wanted is not None and (options is None or getattr(options, name) != wanted):
            return False
    return True


async def find_in_history(
    history: History,
    body: Mapping[str, Any],
    *,
    sent_at: float,
    claim: Claim,
    grace: float,
) -> str | None:
    """The id of the generation `body` created at `sent_at` (wall clock), or None.

    Looks `_LOOKS` times over `grace` seconds (the history may lag behind); `claim`
    takes an id for this POST and says False for one already known here, so two lost
    POSTs of the same prompt never adopt the same generation.
    """
    if not body.get("prompt"):
        return None  # nothing to tell one generation from another
    since = dt.datetime.fromtimestamp(sent_at, dt.UTC) - _CLOCK_SKEW
    for look in range(_LOOKS):
        if look:
            await anyio.sleep(grace / (_LOOKS - 1))
        try:
            for number in range(1, _MAX_PAGES + 1):
                page = await history.page(number, page_size=_PAGE_SIZE, date_start=since)
                for item in page.generations:
                    if not _matches(item, body):
                        continue
                    taken = claim(item.generation_request_id)
                    if inspect.isawaitable(taken):
                        taken = await taken
                    if taken:
                        log.info(
                            "found generation %s in history for a POST without reply",
                            item.generation_request_id,
                        )
                        return item.generation_request_id
                if number * _PAGE_SIZE >= page.result_count:
                    break
        except GettyAIError as exc:
            log.debug("history lookup failed: %s", exc)
    return None
