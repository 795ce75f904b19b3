"""Constants and helpers shared by the CLI tests (fixtures live in conftest.py)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from getty_ai_async._cli import app
from getty_ai_async._cli._settings import Settings
from getty_ai_async.sandbox import Sandbox, ServedSandbox

# A sandbox that answers in milliseconds: 1-2 simulated seconds of pending at 1/50 speed.
FAST_SANDBOX: dict[str, Any] = {
    "pending_seconds": (1.0, 2.0),
    "download_pending_seconds": 0.5,
    "time_scale": 0.02,
}
FAST_CLIENT: dict[str, Any] = {"poll_interval": 0.01, "history_grace": 0.05}
ENV_NAMES = ("GETTY_API_KEY", "GETTY_API_SECRET", "GETTY_BASE_URL", "GETTY_TOKEN_URL")
PROMPTS_FILE = Path(__file__).parents[2] / "examples" / "prompts.txt"
PROMPTS_IN_FILE = 12


def fast_settings(simulator: Sandbox | None = None) -> Settings:
    """What `--sandbox` uses, sped up; `simulator` makes commands share one sandbox."""
    return Settings(
        simulator=simulator, sandbox_options=dict(FAST_SANDBOX), client_options=dict(FAST_CLIENT)
    )


@dataclass
class Cli:
    """Invokes the typer app in process."""

    runner: CliRunner

    def __call__(self, *args: str, settings: Settings | None = None, **kwargs: Any) -> Result:
        return self.runner.invoke(
            app, list(args), obj=settings or fast_settings(), catch_exceptions=False, **kwargs
        )


@dataclass
class Served:
    sandbox: Sandbox
    urls: ServedSandbox

    def env(self, **extra: str) -> dict[str, str]:
        """Environment variables that point a client (or getty-ai) at this sandbox."""
        return {
            "GETTY_BASE_URL": self.urls.base_url,
            "GETTY_TOKEN_URL": self.urls.token_url,
            "GETTY_API_KEY": "sandbox-key",
            "GETTY_API_SECRET": "sandbox-secret",
        } | extra


def one_error_line(stderr: str) -> str:
    """The one line an error printed (the test fails unless there is exactly one)."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("getty-ai: error: ")
    return lines[0]


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


PYTHON = sys.executable
