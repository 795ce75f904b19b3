"""Errors: one line on stderr, the right exit code, and never a secret."""

from __future__ import annotations

import http.server
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from getty_ai_async.sandbox import Sandbox

from ._helpers import PROMPTS_FILE, PYTHON, Cli, Served, fast_settings, one_error_line

SECRET = "s3cr3t-DO-NOT-PRINT"


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


class _NotTheApi(http.server.BaseHTTPRequestHandler):
    """Any web server that is not the Getty API: an HTML error page for everything."""

    def _page(self) -> None:
        body = (
            b"<!DOCTYPE HTML>\n<html lang='en'>\n<head><title>Error response</title></head>\n"
            b"<body>\n<h1>Error response</h1>\n<p>Error code: 404</p>\n</body>\n</html>\n"
        )
        self.send_response(404)
        self.send_header("Content-Type", "text/html;charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _page

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def not_the_api() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotTheApi)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_base_url_that_is_not_the_api_is_one_line(cli: Cli, not_the_api: str) -> None:
    env = {"GETTY_API_KEY": "k", "GETTY_API_SECRET": "s"}
    args = ("--base-url", not_the_api, "--token-url", f"{not_the_api}/oauth2/token")

    settings = fast_settings()
    settings.client_options["max_retries"] = 0
    result = cli(*args, "generate", "a fox", env=env, settings=settings)

    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert "404" in line
    assert "HTML page" in line
    assert "--base-url" in line
    assert "<" not in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--sandbox", "generate", "fox", "--aspect-ratio", "100:1"], "'--aspect-ratio'"),
        (["--sandbox", "generate"], "missing argument"),
        (["--sandbox", "generate", "fox", "--nope"], "no such option: --nope"),
        (["--sandbox", "nosuchcommand"], "no such command"),
        (["--sandbox", "download", "someid", "3000000000"], "INDEX"),
        (["--sandbox", "batch", "no/such/file.txt"], "cannot read no/such/file.txt"),
        (["--sandbox", "refine", "--asset-id", "a", "--mask", "no/such.png"], "--mask"),
    ],
)
def test_click_usage_errors_are_one_line(cli: Cli, args: list[str], expected: str) -> None:
    result = cli(*args)

    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert expected in line
    assert "Usage:" not in result.stderr
    assert "Value error" not in line


def test_no_arguments_shows_the_help(cli: Cli) -> None:
    result = cli()

    assert "Usage: getty-ai [OPTIONS] COMMAND" in result.output
    assert "getty-ai: error" not in result.output


def test_a_blank_prompt_is_refused_in_words(cli: Cli, sandbox: Sandbox) -> None:
    result = cli("--sandbox", "generate", "   ", settings=fast_settings(sandbox))

    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert line == "getty-ai: error: invalid prompt: must not be empty or only whitespace"
    assert sum(sandbox.stats.requests.values()) == 0


@pytest.mark.parametrize(
    "args",
    [
        ["generate", "fox", "--seed", "99999999999999999999"],
        ["generate", "fox", "--seed", "2147483648"],
        ["generate", "fox", "--product-id", "-2147483649"],
    ],
)
def test_out_of_range_numbers_are_refused_before_sending(
    cli: Cli, sandbox: Sandbox, args: list[str]
) -> None:
    result = cli("--sandbox", *args, settings=fast_settings(sandbox))

    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert args[2].removeprefix("--").replace("-", "_") in line
    assert "400" not in line
    assert sum(sandbox.stats.requests.values()) == 0


def test_an_unusable_journal_path_is_one_line_naming_it(
    cli: Cli, sandbox: Sandbox, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("not a folder\n")
    journal = tmp_path / "a-file" / "x.sqlite"
    args = ("--sandbox", "batch", str(PROMPTS_FILE), "--out", str(tmp_path / "out"))

    result = cli(*args, "--journal", str(journal), settings=fast_settings(sandbox))

    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert f"--journal {journal}" in line
    assert "unexpected" not in line
    assert sandbox.stats.submissions_attempted == 0


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")
def test_a_journal_in_proc_is_one_line_naming_it(
    cli: Cli, sandbox: Sandbox, tmp_path: Path
) -> None:
    args = ("--sandbox", "batch", str(PROMPTS_FILE), "--out", str(tmp_path / "out"))

    result = cli(*args, "--journal", "/proc/x.sqlite", settings=fast_settings(sandbox))

    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert "--journal /proc/x.sqlite" in line
    assert "OperationalError" not in line
    assert sandbox.stats.submissions_attempted == 0


def test_an_unusable_out_folder_is_a_usage_error(
    cli: Cli, sandbox: Sandbox, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("not a folder\n")
    out = tmp_path / "a-file" / "sub"

    result = cli(
        "--sandbox", "batch", str(PROMPTS_FILE), "--out", str(out), settings=fast_settings(sandbox)
    )

    assert result.exit_code == 2
    assert str(out) in one_error_line(result.stderr)
    assert sandbox.stats.submissions_attempted == 0


def test_invalid_jsonl_line_is_not_repeated(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "requests.jsonl"
    source.write_text('{"prompt": "a fox"}\n{bad\n', encoding="utf-8")

    result = cli("--sandbox", "batch", str(source), "--out", str(tmp_path / "out"))

    assert result.exit_code == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("failed")]
    assert len(failed) == 1
    assert "] line 2: invalid JSON" in failed[0]
    assert "line 2: line 2" not in result.stdout


@pytest.mark.parametrize(
    "command",
    [
        ["generate", "a fox"],
        ["history", "--limit", "1"],
        ["batch", str(PROMPTS_FILE), "--quiet"],
    ],
)
def test_sandbox_after_the_command(cli: Cli, tmp_path: Path, command: list[str]) -> None:
    # The README: every command also takes --sandbox.
    extra = ["--out", str(tmp_path / "out")] if command[0] == "batch" else []

    result = cli(*command, *extra, "--sandbox")

    assert result.exit_code == 0, result.output


def test_sandbox_after_the_command_still_conflicts_with_base_url(cli: Cli) -> None:
    result = cli("--base-url", "http://127.0.0.1:1", "generate", "a fox", "--sandbox")

    assert result.exit_code == 2
    assert "--sandbox" in one_error_line(result.stderr)
