"""Typos in keyword options are type errors (issue 9.10), and the TypedDicts stay in step.

`client.generate(**options: Any)` and `AsyncGettyAI.sandbox(**options: Any)` let
``aspect_ration=`` or ``pending_secondz=`` pass ``mypy --strict``.
"""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from getty_ai_async import AsyncGettyAI, ClientOptions, GenerateOptions, SandboxOptions
from getty_ai_async._generations import Generations, SubmitOptions
from getty_ai_async.sandbox import FaultConfig, SandboxConfig

ROOT = Path(__file__).resolve().parents[2]
API_FILE = ROOT / "tests" / "typing" / "api.py"

MISSPELLED = textwrap.dedent(
    """
    from getty_ai_async import AsyncGettyAI

    async def main() -> None:
        async with AsyncGettyAI.sandbox(pending_secondz=1.0) as client:  # line 5
            await client.generate("a fox", aspect_ration="16:9")  # line 6
        AsyncGettyAI.sandbox(eror_rate=0.1)  # line 7
        AsyncGettyAI.sandbox(max_pending="lots")  # line 8
        client = AsyncGettyAI.sandbox()
        await client.generate("a fox", seed="lucky")  # line 10
        await client.generate("a fox", wiat=False)  # line 11
    """
)
EXPECTED = {
    5: 'Unexpected keyword argument "pending_secondz"',
    6: 'Unexpected keyword argument "aspect_ration"',
    7: 'Unexpected keyword argument "eror_rate"',
    8: '"max_pending"',
    10: '"seed"',
    11: 'Unexpected keyword argument "wiat"',
}


def keys(typed_dict: type) -> set[str]:
    return set(typed_dict.__required_keys__) | set(typed_dict.__optional_keys__)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, Path]:
    """One mypy run (with the project's config) over tests/typing/api.py and the typos."""
    snippet = tmp_path_factory.mktemp("typing") / "misspelled.py"
    snippet.write_text(MISSPELLED)
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "mypy", "--strict", "--no-pretty", str(API_FILE), str(snippet)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr, snippet


def test_public_api_usage_type_checks(mypy_output: tuple[int, str, Path]) -> None:
    _, output, _ = mypy_output
    assert "api.py" not in output, output


def test_misspelled_options_are_type_errors(mypy_output: tuple[int, str, Path]) -> None:
    status, output, snippet = mypy_output
    assert status == 1, output
    errors = [line for line in output.splitlines() if ": error:" in line]
    by_line = {int(line.split(":")[1]): line for line in errors if snippet.name in line}
    for line, message in EXPECTED.items():
        assert line in by_line, f"line {line} not reported: {output}"
        assert message in by_line[line]
    assert set(by_line) == set(EXPECTED), output


def test_generate_options_match_generations_create() -> None:
    parameters = inspect.signature(Generations.create).parameters.values()
    keyword_only = {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert keys(GenerateOptions) == keyword_only | keys(SubmitOptions)


def test_client_options_match_the_constructor() -> None:
    parameters = inspect.signature(AsyncGettyAI.__init__).parameters.values()
    keyword_only = {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert keys(ClientOptions) == keyword_only


def test_sandbox_options_are_client_options_plus_sandbox_and_fault_fields() -> None:
    set_by_sandbox = {"base_url", "token_url", "transport", "http_client", "http_backend"}
    fields = {f.name for config in (SandboxConfig, FaultConfig) for f in dataclasses.fields(config)}
    assert keys(SandboxOptions) == (keys(ClientOptions) - set_by_sandbox) | fields
