"""The typer application: global options, the command table, and `run`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any, Protocol, cast

import typer
from typer.core import TyperGroup

from .._version import __version__
from ._batch_command import batch
from ._commands import download, extend, generate, get, history, refine, sizes, variations
from ._errors import EXIT_INTERRUPTED, UsageError
from ._limits_command import limits
from ._run import cli_logging, echo_error, one_line, reporting_errors
from ._sandbox_command import sandbox_app
from ._settings import Settings, parse_max_pending

__all__ = ["app", "run"]


class _ClickError(Protocol):
    """What click's exceptions offer (typer may bring its own copy of click)."""

    exit_code: int

    def format_message(self) -> str:
        """The error's message, as click prints it."""

    def show(self) -> None:
        """Print the error the way click does."""


def _click_class(name: str) -> type[Exception]:
    # typer re-exports BadParameter from whichever click it uses; its bases are the rest.
    for cls in typer.BadParameter.__mro__:
        if cls.__name__ == name:
            return cast("type[Exception]", cls)
    raise RuntimeError(f"click has no {name}")  # pragma: no cover


_CLICK_ERROR = _click_class("ClickException")
_USAGE_ERROR = _click_class("UsageError")


def usage_message(error: Exception) -> str:
    """click's error as one line (click prints usage, a hint and the error on three)."""
    message = cast("_ClickError", error).format_message().replace("Value error, ", "")
    message = message.rstrip(".")
    if message[:1].isupper() and message[1:2].islower():
        message = message[0].lower() + message[1:]
    context = getattr(error, "ctx", None)
    if isinstance(error, _USAGE_ERROR) and context is not None:
        message += f" (see '{context.command_path} --help')"
    return one_line(message)


class _Group(TyperGroup):
    """The root command; click's own errors become one line, like every other error."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except _CLICK_ERROR as exc:
            error = cast("_ClickError", exc)
            if type(exc).__name__ == "NoArgsIsHelpError":
                error.show()  # no arguments at all: the help text is the answer
            else:
                echo_error(usage_message(exc))
            sys.exit(error.exit_code)
        except typer.Abort:
            echo_error("interrupted")
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="getty-ai",
    cls=_Group,
    help="Generate images with the Getty Images AI Generator API (or its built-in sandbox).",
    no_args_is_help=True,
    add_completion=False,
    # Plain click output: errors stay one readable line instead of a boxed panel.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"getty-ai {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    ctx: typer.Context,
    sandbox: Annotated[
        bool,
        typer.Option(
            "--sandbox",
            help="Run against a fresh in-process sandbox: no account, no network. Its state "
            "lives only as long as the command.",
        ),
    ] = False,
    base_url: Annotated[
        str | None,
        typer.Option(
            help="API base URL [default: env GETTY_BASE_URL, else Getty's].", metavar="URL"
        ),
    ] = None,
    token_url: Annotated[
        str | None,
        typer.Option(
            help="OAuth2 token URL [default: env GETTY_TOKEN_URL, else Getty's].", metavar="URL"
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(help="API key; prefer env GETTY_API_KEY.", metavar="KEY", show_default=False),
    ] = None,
    api_secret: Annotated[
        str | None,
        typer.Option(
            help="API secret; prefer env GETTY_API_SECRET (a flag shows up in `ps`).",
            metavar="SECRET",
            show_default=False,
        ),
    ] = None,
    max_pending: Annotated[
        str | None,
        typer.Option(
            help="Cap on generations pending at once: a number, or 'auto' to learn the "
            "account's cap [default: 8].",
            metavar="N|auto",
        ),
    ] = None,
    poll_interval: Annotated[
        float | None,
        typer.Option(
            help="Seconds between polls of a pending generation [default: 1, or 0.2 with "
            "--sandbox].",
            metavar="SECONDS",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Debug logs on stderr; tracebacks on errors."),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Generate images with the Getty Images AI Generator API (or its built-in sandbox).

    Credentials come from GETTY_API_KEY and GETTY_API_SECRET. Add --sandbox to any
    command to try it with no account.
    """
    settings = ctx.obj if isinstance(ctx.obj, Settings) else Settings()
    ctx.obj = settings
    settings.sandbox = sandbox
    settings.verbose = verbose
    settings.api_key = api_key
    settings.api_secret = api_secret
    settings.base_url = base_url
    settings.token_url = token_url
    with reporting_errors(settings):
        settings.max_pending = parse_max_pending(max_pending) if max_pending else None
        if poll_interval is not None:
            if not poll_interval > 0:
                raise UsageError(f"--poll-interval must be > 0, got {poll_interval}")
            settings.client_options["poll_interval"] = poll_interval
        settings.check()
    ctx.with_resource(cli_logging(verbose))


for _command in (generate, batch, get, download, sizes, history, variations, refine, extend):
    app.command()(_command)
app.command()(limits)
app.add_typer(sandbox_app, name="sandbox")


def run() -> None:
    """Run the app on ``sys.argv``."""
    app(prog_name="getty-ai")
