"""Running a command: async bodies via anyio, failures as one line and an exit code."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, NoReturn, TypeVarTuple, Unpack

import anyio
import typer

from ..errors import GettyAIError, NotFoundError
from ._errors import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CliError,
    describe,
    leaf_error,
    missing_extra,
    more_errors,
)
from ._settings import Settings

__all__ = [
    "SandboxFlag",
    "cli_logging",
    "echo_error",
    "fail",
    "one_line",
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


_MAX_ERROR_CHARS = 500


def one_line(message: str) -> str:
    """`message` on one line (line breaks and runs of blanks become one space), not too long."""
    text = " ".join(message.split())
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"


def echo_error(message: str) -> None:
    """Report an error: always one line on stderr."""
    typer.echo(f"getty-ai: error: {one_line(message)}", err=True)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Report a usage error (or another failure) as one line and exit."""
    echo_error(message)
    raise typer.Exit(code)


def _sandbox_after_the_command(ctx: typer.Context, value: bool) -> None:
    if value:
        settings = settings_of(ctx)
        settings.sandbox = True
        try:
            settings.check()
        except CliError as exc:
            fail(exc.message, exc.exit_code)


SandboxFlag = Annotated[
    bool,
    typer.Option(
        "--sandbox",
        help="Run against a fresh in-process sandbox (the same as the global --sandbox).",
        callback=_sandbox_after_the_command,
        expose_value=False,
    ),
]
"""``--sandbox`` after the command name, as every command takes it."""


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
        message += more_errors(exc)
        if settings.verbose:
            traceback.print_exception(exc, file=sys.stderr)
        elif not isinstance(error, GettyAIError | CliError | OSError | sqlite3.Error) and not (
            missing_extra(error)
        ):
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
