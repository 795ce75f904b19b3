"""``getty-ai sandbox serve``: the simulator on a loopback port, for any client to use."""

from __future__ import annotations

import contextlib
import ipaddress
import signal
from typing import Annotated, Any

import anyio
import typer

from ..sandbox import FaultConfig, Sandbox, SandboxConfig, serve
from ._errors import UsageError
from ._run import reporting_errors, run_async, settings_of

__all__ = ["sandbox_app"]

sandbox_app = typer.Typer(
    help="The built-in simulator of the Getty AI API.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

_LOOPBACK_NAMES = frozenset({"localhost"})


def _check_loopback(host: str) -> None:
    if host in _LOOPBACK_NAMES:
        return
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).is_loopback:
            return
    raise UsageError(f"--host {host}: the sandbox only listens on loopback (127.0.0.1, ::1)")


def _given(options: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in options.items() if value is not None}


def _build(config: dict[str, Any], faults: dict[str, Any]) -> Sandbox:
    try:
        return Sandbox(SandboxConfig(**config), faults=FaultConfig(**faults))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


async def _wait_for_stop() -> None:
    with contextlib.ExitStack() as stack:
        try:
            signals = stack.enter_context(anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM))
        except (NotImplementedError, RuntimeError, ValueError):
            await anyio.sleep_forever()
        async for _ in signals:
            return


async def _serve(sandbox: Sandbox, host: str, port: int) -> None:
    async with anyio.create_task_group() as group:
        base_url: str = await group.start(serve, sandbox, host, port)
        token_url = f"{base_url}/oauth2/token"
        for line in (
            f"Getty AI sandbox listening on {base_url} (Ctrl-C to stop)",
            f"  API base URL: {base_url}",
            f"  token URL:    {token_url}",
            "Use it from another shell (the sandbox accepts any key and secret):",
            f"  export GETTY_BASE_URL={base_url} GETTY_TOKEN_URL={token_url} "
            "GETTY_API_KEY=sandbox-key GETTY_API_SECRET=sandbox-secret",
        ):
            typer.echo(line)
        await _wait_for_stop()
        group.cancel_scope.cancel()
    stats = sandbox.stats
    typer.echo(
        f"Sandbox stopped: {sum(stats.requests.values())} requests, "
        f"{stats.submissions} generations, {stats.downloads} downloads."
    )


@sandbox_app.command("serve")
def serve_command(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Loopback address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).", min=0, max=65535)] = 8000,
    pending_limit: Annotated[
        int | None,
        typer.Option(
            help="Generations pending at once per API key (0: no limit) [default: 8].",
            min=0,
            show_default=False,
        ),
    ] = None,
    pending_seconds: Annotated[
        float | None,
        typer.Option(
            help="How long a generation stays pending (simulated s) [default: 2].",
            min=0,
            show_default=False,
        ),
    ] = None,
    download_pending_seconds: Annotated[
        float | None,
        typer.Option(
            help="How long a download stays pending (simulated s) [default: 1].",
            min=0,
            show_default=False,
        ),
    ] = None,
    qps: Annotated[
        float | None,
        typer.Option(
            help="Requests per simulated second per API key (429 past it).", show_default=False
        ),
    ] = None,
    fault_rate: Annotated[
        float | None,
        typer.Option(help="Probability of a 503 on any request.", min=0, max=1, show_default=False),
    ] = None,
    drop_rate: Annotated[
        float | None,
        typer.Option(help="Probability of a dropped connection.", min=0, max=1, show_default=False),
    ] = None,
    latency: Annotated[
        float | None,
        typer.Option(
            help="Extra delay before each reply (simulated s).", min=0, show_default=False
        ),
    ] = None,
    blocked_rate: Annotated[
        float | None,
        typer.Option(
            help="Probability that an image is blocked by policy.", min=0, max=1, show_default=False
        ),
    ] = None,
    time_scale: Annotated[
        float | None,
        typer.Option(
            help="Real seconds per simulated second (0.1 runs 10x faster) [default: 1].",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Seed of every random choice [default: 0].", show_default=False),
    ] = None,
) -> None:
    """Serve the sandbox over HTTP on loopback, and print the settings to use it."""
    settings = settings_of(ctx)
    with reporting_errors(settings):
        _check_loopback(host)
        config = _given(
            {
                "pending_limit": pending_limit,
                "pending_seconds": pending_seconds,
                "download_pending_seconds": download_pending_seconds,
                "qps": qps,
                "blocked_rate": blocked_rate,
                "time_scale": time_scale,
                "seed": seed,
            }
        )
        if pending_limit == 0:
            config["pending_limit"] = None  # SandboxConfig's spelling of "no cap"
        faults = _given({"error_rate": fault_rate, "drop_rate": drop_rate, "latency": latency})
        sandbox = _build(config, faults)
    run_async(settings, _serve, sandbox, host, port)
