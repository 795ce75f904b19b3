"""Exceptions raised by getty-ai-async.

The hierarchy::

    GettyAIError
    ├── ValidationError            bad input, raised before any HTTP call (also a ValueError)
    ├── GenerationTimeoutError     polling deadline passed; carries the id to resume with
    ├── SubmissionUncertainError   a POST may have created a generation, but no reply came
    ├── RecordedError              a failure replayed from a fan-out journal
    ├── JournalError               a fan-out journal could not be opened or written
    │   └── JournalLockedError     another process runs on the same journal
    ├── LimiterUnavailableError    the shared limiter's Redis cannot be reached: nothing new sent
    ├── MalformedResponseError     a 2xx reply that is not what the API documents
    ├── ClientClosedError          the client was closed (names any generation left waiting)
    ├── APIConnectionError         no usable reply (connect, read, protocol errors)
    │   ├── APITimeoutError
    │   └── TokenUnavailableError  no bearer token could be had: the request was not sent
    └── APIStatusError             the service answered 4xx/5xx
        ├── BadRequestError        400
        ├── AuthenticationError    401
        ├── PermissionDeniedError  403
        ├── NotFoundError          404
        ├── ConflictError          409
        ├── GoneError              410 (generations expire after 6 months)
        ├── RateLimitError         429
        └── InternalServerError    5xx
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ConflictError",
    "GenerationTimeoutError",
    "GettyAIError",
    "GoneError",
    "InternalServerError",
    "JournalError",
    "JournalLockedError",
    "LimiterUnavailableError",
    "MalformedResponseError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RecordedError",
    "SubmissionUncertainError",
    "TokenUnavailableError",
    "ValidationError",
]

REQUEST_ID_HEADERS = ("x-request-id", "x-correlation-id", "request-id")


class GettyAIError(Exception):
    """Base class of every error this package raises."""


class ValidationError(GettyAIError, ValueError):
    """Input rejected before any HTTP request; `field` names the offending argument."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class GenerationTimeoutError(GettyAIError, TimeoutError):
    """The generation (or download) was still pending when the polling deadline passed.

    Nothing is lost: resume with ``client.generations.wait(err.generation_request_id)``.
    """

    def __init__(
        self, generation_request_id: str, waited: float, *, what: str = "generation"
    ) -> None:
        super().__init__(
            f"{what} {generation_request_id!r} still pending after {waited:.1f}s; "
            f"resume with generations.wait({generation_request_id!r})"
        )
        self.generation_request_id = generation_request_id
        self.waited = waited


class SubmissionUncertainError(GettyAIError):
    """A generation POST was sent but its reply never came: it may or may not exist.

    It is never resubmitted automatically (that could pay twice). Look for it in
    ``client.history`` before submitting the input again.
    """

    def __init__(self, key: str, cause: str, *, history_checked: bool = False) -> None:
        checked = (
            "; generation history shows no match yet"
            if history_checked
            else "; check history before resubmitting"
        )
        super().__init__(f"input {key!r}: submission fate unknown ({cause}){checked}")
        self.key = key
        self.history_checked = history_checked


class RecordedError(GettyAIError):
    """An error recorded by an earlier run of the same journal, replayed as it was."""

    def __init__(self, kind: str, message: str, status_code: int | None = None) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.status_code = status_code


class APIConnectionError(GettyAIError):
    """No usable reply from the service.

    ``may_have_been_sent`` is True when the request may have reached the server (the
    connection broke or timed out after sending). For a POST that creates a generation
    this means its fate is unknown; it is not replayed unless the caller opted in.
    """

    def __init__(
        self,
        message: str,
        *,
        request: httpx.Request,
        may_have_been_sent: bool = False,
    ) -> None:
        super().__init__(message)
        self.request = request
        self.method = request.method
        self.url = str(request.url)
        self.may_have_been_sent = may_have_been_sent


class APITimeoutError(APIConnectionError):
    """The HTTP request timed out."""


class TokenUnavailableError(APIConnectionError):
    """No bearer token could be had, so the request was not sent (`may_have_been_sent`
    is False): the token endpoint failed (429, 5xx, a connection error...), after its
    own retries, and no still-valid token was left to use.

    It says nothing about the API route the request was for: it is not that route's
    429 (nor a sign that the account's pending cap is full). Sending again later is
    safe. `token_error` is the token endpoint's error (also the ``__cause__``). The
    token endpoint refusing the credentials is an `AuthenticationError` instead.
    """

    def __init__(self, message: str, *, request: httpx.Request, token_error: Exception) -> None:
        super().__init__(message, request=request, may_have_been_sent=False)
        self.token_error = token_error


class APIStatusError(GettyAIError):
    """The service answered with an error status."""

    status_code: int

    def __init__(self, message: str, *, response: httpx.Response, body: Any) -> None:
        super().__init__(message)
        self.response = response
        self.status_code = response.status_code
        self.body = body
        self.request_id = next(
            (response.headers[h] for h in REQUEST_ID_HEADERS if h in response.headers), None
        )


class BadRequestError(APIStatusError):
    """400: the service rejected the request."""


class AuthenticationError(APIStatusError):
    """401: credentials missing, wrong or expired (after one refresh and replay)."""


class PermissionDeniedError(APIStatusError):
    """403: not authorised, or product quota exceeded."""


class NotFoundError(APIStatusError):
    """404: unknown id or index (or the generation is still pending)."""


class ConflictError(APIStatusError):
    """409: a download is already in progress for this generation and index."""


class GoneError(APIStatusError):
    """410: the generation is older than the retention period (6 months)."""


class RateLimitError(APIStatusError):
    """429: too many requests per second or too many pending generations."""


class InternalServerError(APIStatusError):
    """5xx: the service failed."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    429: RateLimitError,
}


def make_status_error(response: httpx.Response) -> APIStatusError:
    """Build the most specific `APIStatusError` for an error response."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text or None
    detail = body.get("message") if isinstance(body, dict) else body
    request = response.request
    message = (
        f"{response.status_code} {response.reason_phrase} for {request.method} {request.url.path}"
    )
    if detail:
        message += f": {detail}"
    cls = _BY_STATUS.get(response.status_code)
    if cls is None:
        cls = InternalServerError if response.status_code >= 500 else APIStatusError
    return cls(message, response=response, body=body)


class MalformedResponseError(GettyAIError):
    """A reply the API documents otherwise (not JSON, fields missing or of the wrong type)."""

    def __init__(self, response: httpx.Response, problem: str) -> None:
        excerpt = response.text[:200]
        super().__init__(
            f"{response.status_code} reply to {response.request.method} "
            f"{response.request.url.path} is malformed ({problem}): {excerpt!r}"
        )
        self.status_code = response.status_code
        self.request_id = next(
            (response.headers[h] for h in REQUEST_ID_HEADERS if h in response.headers), None
        )
        self.excerpt = excerpt


class JournalError(GettyAIError):
    """A fan-out journal could not be opened, read or written."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"journal {path}: {message}")
        self.path = path


class JournalLockedError(JournalError):
    """Another process (or run) has the journal open: two runs on one file would both pay."""

    def __init__(self, path: str, pid: int | None) -> None:
        holder = f"process {pid}" if pid else "another process"
        super().__init__(path, f"in use by {holder}; wait for it to finish or use another file")
        self.pid = pid


class ClientClosedError(GettyAIError, RuntimeError):
    """The `AsyncGettyAI` was closed: nothing more is sent through it.

    When it names a `generation_request_id`, that generation was accepted (and paid
    for): wait for it with another client.
    """

    def __init__(self, generation_request_id: str | None = None) -> None:
        if generation_request_id is None:
            super().__init__("this AsyncGettyAI client is closed")
        else:
            super().__init__(
                f"client closed while waiting for generation {generation_request_id!r}; "
                f"resume with generations.wait({generation_request_id!r}) on another client"
            )
        self.generation_request_id = generation_request_id


class LimiterUnavailableError(GettyAIError):
    """The store a shared limiter keeps the account's leases in (Redis) cannot be reached.

    Nothing new is submitted without a lease. At start (the client's ``async with``, or
    the first lease) it is raised at once; mid-run, new submissions first wait and retry
    with backoff for the limiter's ``max_outage``. Generations already accepted keep
    being polled and journaled meanwhile, so nothing is lost: a rerun on the same
    journal picks up where this one stopped. The message names the store's address,
    never its password.
    """
