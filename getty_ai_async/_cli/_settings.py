"""The global options, and the client they describe."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from .._client import AsyncGettyAI
from .._limiter import MaxPending
from ._errors import UsageError

if TYPE_CHECKING:
    from ..sandbox import Sandbox

__all__ = ["SANDBOX_DEMO_OPTIONS", "SANDBOX_POLL_INTERVAL", "Settings", "parse_max_pending"]

SANDBOX_DEMO_OPTIONS: Final[dict[str, Any]] = {
    # Simulated seconds run at half speed: a generation takes 0.5-1 s of real time, so a
    # dozen prompts finish in a few seconds and the progress display still shows a run.
    "pending_seconds": (1.0, 2.0),
    "download_pending_seconds": 0.5,
    "time_scale": 0.5,
}
"""Sandbox settings behind ``--sandbox``."""
SANDBOX_POLL_INTERVAL: Final = 0.2
"""Poll interval with ``--sandbox``, matched to its short pending times."""


def parse_max_pending(value: str) -> MaxPending:
    """``auto`` or a positive integer."""
    text = value.strip().lower()
    if text == "auto":
        return "auto"
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise UsageError(f"--max-pending: expected a positive integer or 'auto', got {value!r}")
    return number


@dataclass
class Settings:
    """What the global options say; commands ask it for a client.

    A preconfigured instance can be handed to the typer app as ``obj`` (embedding, tests):
    the global options then fill it in, and ``simulator`` / ``sandbox_options`` /
    ``client_options`` keep what the caller set.
    """

    api_key: str | None = field(default=None, repr=False)
    api_secret: str | None = field(default=None, repr=False)
    base_url: str | None = None
    token_url: str | None = None
    max_pending: MaxPending | None = None
    sandbox: bool = False
    verbose: bool = False
    simulator: Sandbox | None = None
    """With ``--sandbox``: this sandbox instead of a fresh one per command."""
    sandbox_options: dict[str, Any] = field(default_factory=lambda: dict(SANDBOX_DEMO_OPTIONS))
    """`SandboxConfig` / `FaultConfig` fields of a fresh ``--sandbox``."""
    client_options: dict[str, Any] = field(default_factory=dict)
    """Extra `AsyncGettyAI` keyword arguments for every command."""

    def check(self) -> None:
        """Reject contradictory global options."""
        if self.sandbox and (self.base_url or self.token_url):
            raise UsageError("--sandbox runs in process: drop --base-url/--token-url")

    def client(self, **options: Any) -> AsyncGettyAI:
        """A client for one command (`options` override the global ones)."""
        merged = {**self.client_options, **options}
        if self.max_pending is not None:
            merged.setdefault("max_pending", self.max_pending)
        if not self.sandbox:
            return AsyncGettyAI(
                api_key=self.api_key,
                api_secret=self.api_secret,
                base_url=self.base_url,
                token_url=self.token_url,
                **merged,
            )
        merged.setdefault("poll_interval", SANDBOX_POLL_INTERVAL)
        if self.simulator is not None:
            return AsyncGettyAI.sandbox(self.simulator, **merged)
        return AsyncGettyAI.sandbox(**self.sandbox_options, **merged)
