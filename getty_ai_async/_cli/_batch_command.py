"""The typer side of ``getty-ai batch``: options, the display to use, the summary."""

from __future__ import annotations

import contextlib
import shlex
import sqlite3
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from .._models import SizeName
from .._redis._limiter import shown_redis_url
from ._batch import DEFAULT_JOURNAL_NAME, DEFAULT_RESULTS_NAME, BatchJob, run_batch, summary
from ._errors import UsageError
from ._inputs import STDIN, InputFormat, open_input
from ._paths import writable_file, writable_folder
from ._progress import PlainReporter, QuietReporter, Reporter, RichReporter
from ._run import SandboxFlag, fail, reporting_errors, run_async, settings_of
from ._scale_out import scale_out
from ._settings import parse_max_pending

__all__ = ["batch", "command_line"]

# Never repeated in a printed command line.
_SECRET_PARAMETERS = frozenset({"api_key", "api_secret"})


def _word(value: Any) -> str:
    return str(value.value) if isinstance(value, Enum) else str(value)


def command_line(ctx: typer.Context) -> str:
    """The command being run, rebuilt from what was given on the command line.

    Credentials are left out: they are expected from the environment.
    """
    words = ["getty-ai"]
    contexts = [ctx.find_root(), ctx] if ctx.parent is not None else [ctx]
    for context in contexts:
        if context is ctx and ctx.parent is not None:
            words.append(ctx.info_name or "")
        for param in context.command.params:
            name = param.name or ""
            source = context.get_parameter_source(name)
            if name in _SECRET_PARAMETERS or source is None or source.name != "COMMANDLINE":
                continue
            if name not in context.params:
                # Not passed to the command (--sandbox after the command): a flag.
                if getattr(param, "is_flag", False):
                    words.append(param.opts[0])
                continue
            value = context.params[name]
            if param.param_type_name == "argument":
                words.append(_word(value))
            elif getattr(param, "is_flag", False):
                if value:
                    words.append(param.opts[0])
            elif name == "redis":
                # Its password stays out of the terminal: the resume line shows *** instead.
                words.extend([param.opts[0], shown_redis_url(str(value))])
            else:
                words.extend([param.opts[0], _word(value)])
    return shlex.join(words)


def _reporter(quiet: bool) -> Reporter:
    if quiet:
        return QuietReporter()
    if sys.stdout.isatty():
        return RichReporter(Console())
    return PlainReporter()


def batch(
    ctx: typer.Context,
    file: Annotated[
        str,
        typer.Argument(
            help="Prompts: a text file (one prompt a line) or JSON Lines (one request object "
            'a line, e.g. {"prompt": "...", "aspect_ratio": "16:9", "key": "fox"}); '
            "'-' reads all of stdin first. Blank lines and lines starting with # are skipped.",
            metavar="FILE",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(help="Folder for images, results and journal.", file_okay=False),
    ] = Path("getty-ai-out"),
    download: Annotated[
        SizeName | None,
        typer.Option(help="Download every image that was not blocked, at this size."),
    ] = None,
    images_per_prompt: Annotated[
        int | None,
        typer.Option(help="With --download: save at most N images per prompt.", min=1),
    ] = None,
    results: Annotated[
        Path | None,
        typer.Option(
            help=f"Results, one JSON line per input [default: OUT/{DEFAULT_RESULTS_NAME}].",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    journal: Annotated[
        Path | None,
        typer.Option(
            help=f"SQLite journal that makes a rerun resume [default: OUT/{DEFAULT_JOURNAL_NAME}].",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    max_pending: Annotated[
        str | None,
        typer.Option(
            help="Cap on this batch's pending generations: a number or 'auto'.",
            metavar="N|auto",
        ),
    ] = None,
    qps: Annotated[
        float | None,
        typer.Option(help="Budget of API requests per second (submits, polls, downloads)."),
    ] = None,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed", help="Submit again the inputs an earlier run recorded as failed."
        ),
    ] = False,
    retry_uncertain: Annotated[
        bool,
        typer.Option(
            "--retry-uncertain",
            help=(
                "Look the inputs whose submission fate is unknown up in the history again, "
                "and submit those it still does not show (safe a minute or more after the "
                "run that lost them)."
            ),
        ),
    ] = False,
    input_format: Annotated[
        InputFormat | None,
        typer.Option("--format", help="Input format [default: from the extension or content]."),
    ] = None,
    download_concurrency: Annotated[
        int, typer.Option(help="Images saved at the same time.", min=1)
    ] = 16,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the final summary.")
    ] = False,
    redis: Annotated[
        str | None,
        typer.Option(
            "--redis",
            help="Share the account's pending cap, QPS budget and learned ceiling with every "
            "worker using this Redis [default: env GETTY_REDIS_URL].",
            metavar="URL",
            show_default=False,
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            help="Worker I of K: take only the inputs whose key hashes to I (0-based).",
            metavar="I/K",
            show_default=False,
        ),
    ] = None,
    _sandbox: SandboxFlag = False,
) -> None:
    """Generate images for every prompt of FILE, many at once; rerun to resume.

    Writes one JSON line per input to the results file. Exits with 0 when every input
    succeeded, 1 when some failed (see the results file), 130 when interrupted.
    """
    settings = settings_of(ctx)
    if qps is not None and not qps > 0:
        fail(f"--qps must be > 0, got {qps}")
    with reporting_errors(settings):
        batch_max_pending = parse_max_pending(max_pending) if max_pending else None
        # The batch's own --max-pending wins over the global one, for a shared cap too.
        scale = scale_out(redis, shard, batch_max_pending or settings.max_pending)
        job = BatchJob(
            source=scale.input(open_input(file, input_format)),
            out=out,
            results=results or scale.path(out / DEFAULT_RESULTS_NAME),
            journal=journal or scale.path(out / DEFAULT_JOURNAL_NAME),
            download=download,
            images_per_prompt=images_per_prompt,
            max_pending=batch_max_pending,
            retry_failed=retry_failed,
            retry_uncertain=retry_uncertain,
            save_concurrency=download_concurrency,
        )
        _check_outputs(job)
    reporter = _reporter(quiet)
    resume = command_line(ctx)

    async def body() -> int:
        options = {} if qps is None else {"max_requests_per_second": qps}
        async with settings.client(**options, **scale.client_options()) as client:
            result = await run_batch(client, job, reporter, handle_signals=True)
        in_process = settings.sandbox and settings.simulator is None
        typer.echo(summary(result, job, resume, in_process_sandbox=in_process))
        return result.exit_code

    run_async(settings, body)


def _check_outputs(job: BatchJob) -> None:
    """Before anything is sent: refuse outputs that would destroy the input, an unreadable
    journal, and any output (results, journal, image folder) that cannot be written.
    """
    outputs = (("--results", job.results), ("--journal", job.journal))
    if job.source.source != STDIN:
        source = Path(job.source.source).resolve()
        for option, path in outputs:
            if path is not None and path.resolve() == source:
                raise UsageError(f"{option} {path} is the input file; it would be overwritten")
    if job.download is not None:
        writable_folder("--out", job.out)
    writable_file("--results", job.results)
    if job.journal is not None:
        writable_file("--journal", job.journal)
        if job.journal.exists():
            try:
                with contextlib.closing(sqlite3.connect(job.journal)) as db:
                    db.execute("PRAGMA schema_version")
            except sqlite3.DatabaseError as exc:
                raise UsageError(f"--journal {job.journal} is not a journal: {exc}") from None
