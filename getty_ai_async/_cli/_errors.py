"""Exit codes, and turning any failure into one clear line."""

from __future__ import annotations

import sqlite3
from typing import Final

from ..errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    GettyAIError,
    PermissionDeniedError,
    TokenUnavailableError,
    ValidationError,
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliError",
    "UsageError",
    "describe",
    "leaf_error",
    "missing_extra",
    "more_errors",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
"""Some request failed (API error, failed inputs of a batch)."""
EXIT_USAGE: Final = 2
"""Bad options, missing credentials, unreadable input: nothing was sent."""
EXIT_INTERRUPTED: Final = 130
"""Ctrl-C (128 + SIGINT), as shells report it."""

_CLI_EXTRA_PACKAGES = frozenset({"typer", "rich", "uvicorn", "click"})

MISSING_CREDENTIALS = (
    "no API key: set GETTY_API_KEY and GETTY_API_SECRET (or pass --api-key/--api-secret), "
    "or add --sandbox to try everything without an account"
)


class CliError(Exception):
    """A failure to report as one line, with the exit code to use."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(CliError):
    """The command line or its input files are wrong; nothing was sent."""

    exit_code = EXIT_USAGE


def leaf_error(exc: BaseException) -> BaseException:
    """The first error inside (nested) exception groups, else `exc` itself.

    A group of several errors is reported by its first (``describe`` says how many more).
    """
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _leaves(exc: BaseException) -> int:
    if isinstance(exc, BaseExceptionGroup):
        return sum(_leaves(inner) for inner in exc.exceptions)
    return 1


def more_errors(exc: BaseException) -> str:
    """`` (and 3 more errors)`` when `exc` is a group of several errors, else nothing."""
    extra = _leaves(exc) - 1
    return f" (and {extra} more error{'s' if extra > 1 else ''})" if extra > 0 else ""


def missing_extra(exc: BaseException) -> str | None:
    """For a package of the ``cli`` extra that is not installed: what to install."""
    if not isinstance(exc, ImportError):
        return None
    package = (exc.name or "").partition(".")[0]
    if package not in _CLI_EXTRA_PACKAGES:
        return None
    if "getty-ai-async[" in str(exc):
        return str(exc)
    return (
        f"{package} is not installed; it comes with the 'cli' extra: "
        "pip install 'getty-ai-async[cli]'"
    )


_MAX_DETAIL_CHARS = 200


def _status_message(exc: APIStatusError) -> str:
    """The error, with a body that is not the API's JSON summarised instead of pasted."""
    if not isinstance(exc.body, str):
        return str(exc)
    response = exc.response
    request = response.request
    head = (
        f"{response.status_code} {response.reason_phrase} for {request.method} {request.url.path}"
    )
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    text = exc.body.strip()
    if "html" in content_type or text.startswith("<"):
        return (
            f"{head}: the server answered with an HTML page, not the Getty API "
            "(check --base-url/--token-url or GETTY_BASE_URL/GETTY_TOKEN_URL)"
        )
    first = text.splitlines()[0] if text else ""
    if len(first) > _MAX_DETAIL_CHARS:
        first = first[: _MAX_DETAIL_CHARS - 1] + "…"
    return f"{head}: {first}" if first else head


def describe(exc: BaseException) -> tuple[str, int]:
    """One line saying what went wrong, and the exit code that goes with it."""
    if isinstance(exc, CliError):
        return exc.message, exc.exit_code
    extra = missing_extra(exc)
    if extra is not None:
        return extra, EXIT_FAILED
    if isinstance(exc, ValidationError):
        if exc.field == "api_key":
            return MISSING_CREDENTIALS, EXIT_USAGE
        return f"invalid {exc}", EXIT_USAGE
    if isinstance(exc, AuthenticationError):
        return (
            f"authentication failed: {exc} (check GETTY_API_KEY / GETTY_API_SECRET)",
            EXIT_FAILED,
        )
    if isinstance(exc, PermissionDeniedError):
        return f"permission denied: {exc} (is the product enabled for this key?)", EXIT_FAILED
    if isinstance(exc, APIStatusError):
        suffix = f" [request id {exc.request_id}]" if exc.request_id else ""
        return f"{_status_message(exc)}{suffix}", EXIT_FAILED
    if isinstance(exc, TokenUnavailableError) and isinstance(exc.token_error, APIStatusError):
        return f"cannot get a token: {_status_message(exc.token_error)}", EXIT_FAILED
    if isinstance(exc, APIConnectionError):
        return f"cannot reach the service: {exc}", EXIT_FAILED
    if isinstance(exc, GettyAIError):
        return str(exc), EXIT_FAILED
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}", EXIT_FAILED
    if isinstance(exc, sqlite3.Error):
        return f"journal: {exc}", EXIT_FAILED
    return f"{type(exc).__name__}: {exc}", EXIT_FAILED
