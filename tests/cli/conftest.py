"""Fixtures for the CLI tests: a CliRunner, fast sandboxes, and a sandbox served on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from getty_ai_async.sandbox import Sandbox, run_in_thread

from ._helpers import ENV_NAMES, FAST_SANDBOX, Cli, Served


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def cli() -> Cli:
    return Cli(CliRunner())


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox(**FAST_SANDBOX)


@pytest.fixture
def served(sandbox: Sandbox) -> Iterator[Served]:
    with run_in_thread(sandbox) as urls:
        yield Served(sandbox, urls)
