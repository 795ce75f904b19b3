"""Errors: one line on stderr, the right exit code, and never a secret."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from getty_ai_async.sandbox import Sandbox

from ._helpers import PROMPTS_FILE, PYTHON, Cli, Served, fast_settings

SECRET = "s3cr3t-DO-NOT-PRINT"


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("getty-ai: error: ")
    return lines[0]


def test_missing_credentials(cli: Cli) -> None:
    result = cli("generate", "a fox")

    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert "GETTY_API_KEY" in line
    assert "--sandbox" in line
    assert result.stdout == ""


def test_missing_credentials_for_a_batch(cli: Cli, tmp_path: Path) -> None:
    result = cli("batch", str(PROMPTS_FILE), "--out", str(tmp_path))

    assert result.exit_code == 2
    assert "GETTY_API_KEY" in one_error_line(result.stderr)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--max-pending", "0", "--sandbox", "generate", "x"], "--max-pending"),
        (["--max-pending", "lots", "--sandbox", "generate", "x"], "--max-pending"),
        (["--sandbox", "--base-url", "http://127.0.0.1:1", "generate", "x"], "--sandbox"),
        (["--base-url", "http://example.com", "--api-key", "k", "generate", "x"], "plain http"),
        (["--sandbox", "history", "--since", "yesterday"], "--since"),
        (["--sandbox", "refine", "--asset-id", "a1"], "--mask"),
    ],
)
def test_usage_errors_exit_2_with_one_line(cli: Cli, args: list[str], expected: str) -> None:
    result = cli(*args)

    assert result.exit_code == 2
    assert expected in one_error_line(result.stderr)


def test_api_error_is_one_line_exit_1(cli: Cli) -> None:
    result = cli("--sandbox", "get", "nosuchgenerationid")

    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert "404" in line
    # With --sandbox, a 404 says why ids from elsewhere are unknown.
    assert "sandbox serve" in line
    assert "Traceback" not in result.output


def test_verbose_adds_the_traceback(cli: Cli) -> None:
    result = cli("--sandbox", "--verbose", "get", "nosuchgenerationid")

    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("getty-ai: error: ")


def test_secret_from_flags_is_never_printed(cli: Cli, served: Served) -> None:
    env = served.env()
    del env["GETTY_API_SECRET"]
    result = cli("--verbose", "--api-secret", SECRET, "generate", "a fox", env=env)

    assert result.exit_code == 0, result.output
    assert SECRET not in result.output


def test_secret_is_never_printed_on_auth_failure(cli: Cli) -> None:
    strict = Sandbox(api_keys={"sandbox-key": "the-right-secret"})
    with_secret = fast_settings(strict)
    with_secret.client_options["api_secret"] = SECRET
    result = cli("--sandbox", "--verbose", "generate", "a fox", settings=with_secret)

    assert result.exit_code == 1
    assert "authentication failed" in result.stderr
    assert SECRET not in result.output


def test_secret_from_env_is_never_printed(cli: Cli, served: Served) -> None:
    result = cli("--verbose", "history", env=served.env(GETTY_API_SECRET=SECRET))

    assert result.exit_code == 0, result.output
    assert SECRET not in result.output


def test_main_explains_a_missing_cli_extra() -> None:
    code = "import sys; sys.modules['typer'] = None\nfrom getty_ai_async._cli import main\nmain()\n"
    done = subprocess.run(  # noqa: S603 - our own interpreter, a fixed snippet
        [PYTHON, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )

    assert done.returncode == 1
    assert "pip install 'getty-ai-async[cli]'" in done.stderr
    assert "Traceback" not in done.stderr
