"""``getty-ai batch --redis URL --shard I/K`` and ``getty-ai limits`` (real redis-server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
import typer
from typer.testing import Result

from getty_ai_async import RedisLimiter
from getty_ai_async._cli._app import app
from getty_ai_async._cli._batch_command import command_line
from getty_ai_async._cli._errors import UsageError
from getty_ai_async._cli._shard import parse_shard, shard_of
from getty_ai_async.sandbox import Sandbox

from ._helpers import FAST_SANDBOX, Cli, fast_settings, one_error_line, write_lines


def results_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("bad", ["4", "4/4", "-1/4", "a/b", "1/0", "/2"])
def test_a_shard_is_i_of_k(bad: str) -> None:
    with pytest.raises(UsageError, match="--shard"):
        parse_shard(bad)
    assert parse_shard("3/4") == (3, 4)


def test_shards_split_keys_evenly_and_stably() -> None:
    counts = [0, 0, 0, 0]
    for number in range(4000):
        counts[shard_of(f"key-{number}", 4)] += 1
    assert all(900 < count < 1100 for count in counts), counts
    assert shard_of("same key", 4) == shard_of("same key", 4)


def test_k_workers_split_a_batch_and_share_one_cap(
    cli: Cli, tmp_path: Path, redis_server: Any
) -> None:
    prompts = write_lines(tmp_path / "prompts.txt", *(f"shard prompt {i}" for i in range(40)))
    sandbox = Sandbox(**FAST_SANDBOX, pending_limit=3, images_per_generation=1)
    out = tmp_path / "out"
    for index in range(3):
        result = cli(
            "--sandbox",
            "--max-pending",
            "3",
            "batch",
            str(prompts),
            "--out",
            str(out),
            "--redis",
            redis_server.url,
            "--shard",
            f"{index}/3",
            "--quiet",
            settings=fast_settings(sandbox),
        )
        assert result.exit_code == 0, result.output
    files = sorted(out.glob("results.*of3.jsonl"))
    assert [path.name for path in files] == [f"results.{i}of3.jsonl" for i in range(3)]
    assert sorted(out.glob(".getty-ai-journal.*of3.sqlite")), "one journal per worker"
    lines = [record["line"] for path in files for record in results_of(path)]
    assert sorted(lines) == list(range(1, 41)), "every input once, in exactly one shard"
    assert all(results_of(path) for path in files), "each worker got a share"
    assert sandbox.stats.peak_pending <= 3
    assert sandbox.stats.rate_limited_pending == 0

    shown = cli("--sandbox", "limits", "--redis", redis_server.url)
    assert shown.exit_code == 0, shown.output
    assert "limit:" in shown.output
    assert "3 (fixed)" in shown.output
    assert "expired leases reclaimed: 0" in shown.output.replace("  ", " ").replace("  ", " ")
    as_json = json.loads(cli("--sandbox", "limits", "--redis", redis_server.url, "--json").output)
    assert (as_json["mode"], as_json["limit"], as_json["in_use"]) == ("3", 3, 0)


def test_limits_of_an_account_nobody_used(cli: Cli, redis_server: Any) -> None:
    result = cli("--sandbox", "limits", "--redis", redis_server.url)
    assert result.exit_code == 0
    assert "nothing recorded yet" in result.output


def test_limits_lists_the_live_workers_caps(cli: Cli, redis_server: Any) -> None:
    async def two_workers_then_limits() -> Result:
        limiters = [
            RedisLimiter(redis_server.url, api_key="sandbox-key", max_pending=cap)
            for cap in (12, 8)
        ]
        try:
            for limiter in limiters:
                await limiter.release(await limiter.acquire(), finished=False)
            return await anyio.to_thread.run_sync(
                lambda: cli("--sandbox", "limits", "--redis", redis_server.url)
            )
        finally:
            for limiter in limiters:
                await limiter.aclose()

    shown = anyio.run(two_workers_then_limits)
    assert shown.exit_code == 0, shown.output
    assert "8 (fixed)" in shown.output
    assert "2 (max_pending 8, 12: the lowest number applies)" in shown.output
    after = json.loads(cli("--sandbox", "limits", "--redis", redis_server.url, "--json").output)
    assert (after["mode"], after["workers"]) == ("8", {}), "closed workers no longer count"


def test_limits_needs_a_redis_and_hides_its_password(cli: Cli) -> None:
    missing = cli("--sandbox", "limits")
    assert missing.exit_code == 2
    assert "--redis" in missing.output
    down = cli("--sandbox", "limits", "--redis", "redis://:pa55word@127.0.0.1:1/0")
    assert down.exit_code == 1
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in down.output
    assert "pa55word" not in down.output


def test_a_shard_without_redis_says_it_shares_no_cap(cli: Cli, tmp_path: Path) -> None:
    prompts = write_lines(tmp_path / "prompts.txt", "a fox", "an owl")
    result = cli("--sandbox", "batch", str(prompts), "--out", str(tmp_path), "--shard", "0/2")
    assert result.exit_code == 0, result.output
    assert "each worker keeps a cap of its own" in result.output


def test_the_resume_line_never_shows_the_redis_password() -> None:
    group = typer.main.get_command(app)
    url = "redis://:pa55word@127.0.0.1:6379/0"
    root = group.make_context("getty-ai", ["batch", "prompts.txt", "--redis", url])
    # click keeps the subcommand's words apart (`_protected_args` since 8.2).
    protected = getattr(root, "_protected_args", None) or getattr(root, "protected_args", [])
    name, command, rest = group.resolve_command(root, [*protected, *root.args])
    assert name is not None
    assert command is not None
    line = command_line(command.make_context(name, rest, parent=root))
    assert "pa55word" not in line
    assert "--redis 'redis://:***@127.0.0.1:6379/0'" in line


def test_the_batchs_own_max_pending_sets_the_shared_cap(
    cli: Cli, tmp_path: Path, redis_server: Any
) -> None:
    prompts = write_lines(tmp_path / "prompts.txt", *(f"capped prompt {i}" for i in range(6)))
    sandbox = Sandbox(**FAST_SANDBOX, pending_limit=3, images_per_generation=1)
    result = cli(
        "--sandbox",
        "batch",
        str(prompts),
        "--out",
        str(tmp_path / "out"),
        "--redis",
        redis_server.url,
        "--max-pending",
        "3",
        "--quiet",
        settings=fast_settings(sandbox),
    )
    assert result.exit_code == 0, result.output
    assert sandbox.stats.rate_limited_pending == 0
    as_json = json.loads(cli("--sandbox", "limits", "--redis", redis_server.url, "--json").output)
    assert (as_json["mode"], as_json["limit"]) == ("3", 3)


MALFORMED_REDIS_URLS = [
    "redis://localhost:notaport",
    "redis://:pa55word@localhost:notaport/0",
    "redis://localhost:99999/0",
    "redis://[::1/0",
    "redis://localhost/0?db=zero",
    "http://localhost:6379",
]


@pytest.mark.parametrize("url", MALFORMED_REDIS_URLS)
def test_a_malformed_redis_url_is_one_line_naming_redis(cli: Cli, tmp_path: Path, url: str) -> None:
    prompts = write_lines(tmp_path / "prompts.txt", "a fox")
    batch = cli("--sandbox", "batch", str(prompts), "--out", str(tmp_path), "--redis", url)
    limits = cli("--sandbox", "limits", "--redis", url)
    for result in (batch, limits):
        assert result.exit_code == 2, result.output
        assert one_error_line(result.stderr).startswith("getty-ai: error: --redis: ")
        assert "pa55word" not in result.output
    assert not (tmp_path / "results.jsonl").exists(), "nothing ran"


def test_a_malformed_getty_redis_url_is_named_as_such(cli: Cli, tmp_path: Path) -> None:
    prompts = write_lines(tmp_path / "prompts.txt", "a fox")
    env = {"GETTY_REDIS_URL": "redis://localhost:notaport"}
    batch = cli("--sandbox", "batch", str(prompts), "--out", str(tmp_path), env=env)
    limits = cli("--sandbox", "limits", env=env)
    for result in (batch, limits):
        assert result.exit_code == 2, result.output
        line = one_error_line(result.stderr)
        assert line.startswith("getty-ai: error: GETTY_REDIS_URL: ")
        assert "max_pending" not in line
    assert not (tmp_path / "results.jsonl").exists(), "nothing ran"
