"""What every resource namespace shares: the client's transport and input checking."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import pydantic

from .errors import (
    APIConnectionError,
    GenerationTimeoutError,
    GettyAIError,
    InternalServerError,
    RateLimitError,
    ValidationError,
)

if TYPE_CHECKING:
    from ._client import AsyncGettyAI

__all__ = ["AsyncResource", "build", "check_positive", "poll_until_ready"]

M = TypeVar("M", bound=pydantic.BaseModel)
T = TypeVar("T")


def build(model: type[M], **fields: Any) -> M:
    """Validate input into a request model, raising `ValidationError` naming the field."""
    given = {name: value for name, value in fields.items() if value is not None}
    try:
        return model(**given)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        location = ".".join(str(part) for part in error["loc"])
        field = location or str((error.get("ctx") or {}).get("field", model.__name__))
        raise ValidationError(field, error["msg"]) from None


def check_positive(field: str, seconds: float) -> float:
    """A duration that must be > 0 (a zero poll interval would spin)."""
    if not seconds > 0:
        raise ValidationError(field, f"must be > 0 seconds, got {seconds!r}")
    return seconds


async def poll_until_ready(
    fetch: Callable[[], Awaitable[T]],
    is_pending: Callable[[T], bool],
    *,
    generation_request_id: str,
    interval: float,
    timeout: float,
    what: str = "generation",
    immediate: bool = False,
) -> T:
    """Call `fetch` every `interval` seconds until it is no longer pending.

    The last poll happens at the deadline; after it, `GenerationTimeoutError` (which
    carries the id to resume with). A poll that fails for a passing reason (5xx, 429,
    a dropped connection: the transport already retried) does not lose the paid-for
    generation: polling goes on until the deadline.
    """
    check_positive("poll_interval", interval)
    check_positive("timeout", timeout)
    started = anyio.current_time()
    deadline = started + timeout
    transient: GettyAIError | None = None
    first = True
    while True:
        if not (first and immediate):
            now = anyio.current_time()
            if now >= deadline:
                error = GenerationTimeoutError(generation_request_id, now - started, what=what)
                raise error from transient
            await anyio.sleep(min(interval, deadline - now))
        first = False
        try:
            result = await fetch()
        except (APIConnectionError, InternalServerError, RateLimitError) as exc:
            transient = exc
            continue
        if not is_pending(result):
            return result


class AsyncResource:
    """A namespace of API methods bound to one client."""

    def __init__(self, client: AsyncGettyAI) -> None:
        self._client = client
        self._transport = client._transport
