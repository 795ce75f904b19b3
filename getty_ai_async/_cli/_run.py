"""Running a command: async bodies via anyio, failures as one line and an exit code."""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator
from typing import NoReturn, TypeVarTuple, Unpack

import anyio
import typer

from ..errors import GettyAIError, NotFoundError
from ._errors import EXIT_INTERRUPTED, EXIT_USAGE, CliError, describe, leaf_error, missing_extra
from ._settings import Settings

__all__ = [
    "cli_logging",
    "echo_error",
    "fail",
    "reporting_errors",
    "run_async",
    "settings_of",
]

Ts = TypeVarTuple("Ts")

_LOGGER = "getty_ai_async"
_SANDBOX_IS_FRESH = (
    "--sandbox starts a fresh sandbox for each command, which knows only what that command "
    "created; to chain commands, run `getty-ai sandbox serve` and point GETTY_BASE_URL at it"
)


def settings_of(ctx: typer.Context) -> Settings:
    """The `Settings` the global options left on the context."""
    settings = ctx.find_root().obj
    if not isinstance(settings, Settings):
        raise RuntimeError("the getty-ai callback did not run")  # pragma: no cover
    return settings


def echo_error(message: str) -> None:
    typer.echo(f"getty-ai: error: {message}", err=True)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Report a usage error (or another failure) as one line and exit."""
    echo_error(message)
    raise typer.Exit(code)


@contextlib.contextmanager
def reporting_errors(settings: Settings) -> Iterator[None]:
    """Turn any failure inside into one line on stderr and the matching exit code.

    Tracebacks are shown only with ``--verbose``; typer's own exits pass through.
    """
    try:
        yield
    except (typer.Exit, typer.Abort, typer.TyperException):
        raise
    except KeyboardInterrupt:
        echo_error("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:
        error = leaf_error(exc)
        message, code = describe(error)
        if settings.verbose:
            traceback.print_exception(error, file=sys.stderr)
        elif not isinstance(error, GettyAIError | CliError | OSError) and not missing_extra(error):
            message = f"unexpected {message} (--verbose shows the traceback)"
        if settings.sandbox and isinstance(error, NotFoundError):
            message += f" ({_SANDBOX_IS_FRESH})"
        echo_error(message)
        raise typer.Exit(code) from None


def run_async(
    settings: Settings, command: Callable[[Unpack[Ts]], Awaitable[int | None]], *args: *Ts
) -> None:
    """Run an async command body; a non-zero result becomes the exit code."""
    with reporting_errors(settings):
        code = anyio.run(command, *args)
    if code:
        raise typer.Exit(code)


@contextlib.contextmanager
def cli_logging(verbose: bool) -> Iterator[None]:
    """Logs for the ``with`` block: with `verbose`, DEBUG records of ``getty_ai_async``
    and stamina's retry notices on stderr; without, nothing (stamina's warnings would
    otherwise reach stderr through Python's last-resort handler, one per retry).
    """
    handler: logging.Handler = logging.NullHandler()
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    loggers = [logging.getLogger(name) for name in (_LOGGER, "stamina")]
    saved = [(logger.level, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.propagate = False
    if verbose:
        loggers[0].setLevel(logging.DEBUG)
    try:
        yield
    finally:
        for logger, (level, propagate) in zip(loggers, saved, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate
