"""What every resource namespace shares: the client's transport and input checking."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import pydantic

from .errors import GenerationTimeoutError, ValidationError

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
    """Call `fetch` every `interval` seconds until it is no longer pending or `timeout` passes."""
    check_positive("poll_interval", interval)
    check_positive("timeout", timeout)
    started = anyio.current_time()
    deadline = started + timeout
    if immediate:
        result = await fetch()
        if not is_pending(result):
            return result
    while True:
        now = anyio.current_time()
        if now + interval > deadline:
            raise GenerationTimeoutError(generation_request_id, now - started, what=what)
        await anyio.sleep(interval)
        result = await fetch()
        if not is_pending(result):
            return result


class AsyncResource:
    """A namespace of API methods bound to one client."""

    def __init__(self, client: AsyncGettyAI) -> None:
        self._client = client
        self._transport = client._transport
