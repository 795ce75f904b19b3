"""The package's loggers, its stamina retry hook, and how URLs are shown in logs and errors.

A library stays silent unless the application configures logging: the package logger
has a `logging.NullHandler` (so Python's last-resort handler never prints our records)
and the package's retries are logged here, not by stamina's default hook (a WARNING
per retry, which reached stderr in applications that configured no logging).

Loggers, all under ``getty_ai_async``:

- ``getty_ai_async.retry``: each retry scheduled (INFO): what, why, how long to wait.
- ``getty_ai_async.http``: each request's outcome and timing (DEBUG).
- ``getty_ai_async.auth``: token fetches (DEBUG); a failed refresh riding on a
  still-valid token (WARNING).
- ``getty_ai_async.downloads``: a download PUT whose reply was lost, and how it was
  resolved (INFO).

``GETTY_LOG=debug`` (or ``info``, ``warning``) in the environment prints them on stderr
without touching the application's logging setup.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager

import httpx
import stamina.instrumentation
from stamina.instrumentation import RetryDetails, RetryHook

from .errors import APIConnectionError, APIStatusError, GettyAIError

__all__ = ["LOGGER_NAME", "configure_from_env", "install_retry_hook", "shown_url"]

LOGGER_NAME = "getty_ai_async"
retry_log = logging.getLogger(f"{LOGGER_NAME}.retry")

# stamina's own default hooks: they log every retry at WARNING on "stamina" (stdlib) or
# print through structlog. Retries of this package skip them.
_STAMINA_LOGGING_HOOKS = frozenset(
    {"stamina.instrumentation._logging", "stamina.instrumentation._structlog"}
)

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_OFF = frozenset({"", "0", "off", "false", "no", "none"})


def shown_url(url: httpx.URL | str) -> str:
    """`url` as logs and errors show it: scheme, host, port and path; no query or user info.

    Download URLs are signed (the query string is a credential), and a URL may carry a
    password; the host is kept so that a connection error says where it went.
    """
    url = httpx.URL(url)
    return str(url.copy_with(query=None, fragment=None, username=None, password=None))


def _is_stamina_logging(hook: object) -> bool:
    return getattr(hook, "__module__", None) in _STAMINA_LOGGING_HOOKS


class _RetryHook:
    """stamina's hooks, but this package's retries go to ``getty_ai_async.retry``.

    Installed around whatever hooks were set (stamina's are process-wide): retries of
    other code reach them all, as before; ours reach every hook but stamina's logging
    ones (metrics hooks, say, still count them).
    """

    def __init__(self, hooks: tuple[RetryHook, ...]) -> None:
        self.hooks = hooks
        self._quiet = tuple(hook for hook in hooks if not _is_stamina_logging(hook))

    def __call__(self, details: RetryDetails) -> AbstractContextManager[None] | None:
        hooks = self.hooks
        if isinstance(details.caused_by, GettyAIError):
            _log_retry(details)
            hooks = self._quiet
        managers = [
            result for hook in hooks if isinstance(result := hook(details), AbstractContextManager)
        ]
        return _all_of(managers) if managers else None

    def __repr__(self) -> str:
        return f"getty_ai_async retry hook around {self.hooks!r}"


@contextlib.contextmanager
def _all_of(managers: list[AbstractContextManager[None]]) -> Iterator[None]:
    """The context managers some hooks returned, entered and left together."""
    with contextlib.ExitStack() as stack:
        for manager in managers:
            stack.enter_context(manager)
        yield


def _log_retry(details: RetryDetails) -> None:
    exc = details.caused_by
    request = None
    if isinstance(exc, APIConnectionError):
        request = exc.request
    elif isinstance(exc, APIStatusError):
        request = exc.response.request
    what = details.name if request is None else f"{request.method} {shown_url(request.url)}"
    retry_log.info(
        "retrying %s in %.2fs (retry %d, %.2fs waited before): %s: %s",
        what,
        details.wait_for,
        details.retry_num,
        details.waited_so_far,
        type(exc).__name__,
        exc,
    )


def install_retry_hook() -> None:
    """Route this package's retry notices to its own logger (idempotent).

    Called when a client's transport is made, so the hook wraps whatever the
    application set before; `stamina.instrumentation.set_on_retry_hooks` called later
    replaces it until the next client is made.
    """
    hooks = stamina.instrumentation.get_on_retry_hooks()
    if not any(isinstance(hook, _RetryHook) for hook in hooks):
        stamina.instrumentation.set_on_retry_hooks([_RetryHook(hooks)])


def configure_from_env(environ: Mapping[str, str] = os.environ) -> logging.Handler | None:
    """``GETTY_LOG=debug|info|warning``: print the package's records on stderr.

    For quick debugging without configuring logging; any other non-empty value (``1``,
    ``true``) means ``debug``, and ``0``/``off`` nothing. Returns the handler added.
    """
    value = environ.get("GETTY_LOG", "").strip().lower()
    if value in _OFF:
        return None
    logger = logging.getLogger(LOGGER_NAME)
    if any(getattr(handler, "_getty_log_env", False) for handler in logger.handlers):
        return None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler._getty_log_env = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(_LEVELS.get(value, logging.DEBUG))
    return handler
