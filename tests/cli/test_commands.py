"""The single-shot commands besides generate: get, download, sizes, history, edits."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from getty_ai_async import AsyncGettyAI
from getty_ai_async.sandbox import Sandbox

from ._helpers import FAST_CLIENT, Cli, Served, fast_settings


def generation_in(sandbox: Sandbox, prompt: str = "a red fox") -> str:
    """The id of a finished generation made in `sandbox`."""

    async def make() -> str:
        async with AsyncGettyAI.sandbox(sandbox, **FAST_CLIENT) as client:
            generation = await client.generate(prompt)
        return generation.generation_request_id

    return anyio.run(make)


@pytest.fixture
def generation_id(sandbox: Sandbox) -> str:
    return generation_in(sandbox)


def test_get(cli: Cli, sandbox: Sandbox, generation_id: str) -> None:
    text = cli("--sandbox", "get", generation_id, settings=fast_settings(sandbox))
    as_json = cli("--sandbox", "get", generation_id, "--json", settings=fast_settings(sandbox))

    assert text.exit_code == 0, text.output
    assert text.stdout.startswith(f"generation {generation_id}")
    assert json.loads(as_json.stdout)["pending"] is False


def test_get_pending_and_wait(cli: Cli) -> None:
    # Real-time pending of a minute: only advance() finishes it, so "pending" is certain.
    slow = Sandbox(pending_seconds=60)

    async def submit() -> str:
        async with AsyncGettyAI.sandbox(slow) as client:
            pending = await client.generations.create("an owl", wait=False)
        return pending.generation_request_id

    generation_id = anyio.run(submit)
    settings = fast_settings(slow)
    pending = cli("--sandbox", "get", generation_id, settings=settings)
    slow.advance(60)
    waited = cli("--sandbox", "get", generation_id, "--wait", settings=settings)

    assert pending.exit_code == 0, pending.output
    assert pending.stdout.strip() == f"generation {generation_id} is still pending"
    assert waited.exit_code == 0, waited.output
    assert len([line for line in waited.stdout.splitlines() if line.startswith("  [")]) == 4


def test_download(cli: Cli, sandbox: Sandbox, generation_id: str, tmp_path: Path) -> None:
    result = cli(
        "--sandbox",
        "download",
        generation_id,
        "2",
        "--size",
        "1k",
        "--out",
        str(tmp_path),
        settings=fast_settings(sandbox),
    )

    assert result.exit_code == 0, result.output
    path = Path(result.stdout.strip())
    assert path.parent == tmp_path.resolve()
    assert path.name == f"{generation_id}_2_1k.png"
    assert path.read_bytes().startswith(b"\x89PNG")
    assert sandbox.stats.downloads == 1


def test_download_default_size_is_4k_in_the_current_folder(
    cli: Cli, sandbox: Sandbox, generation_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("--sandbox", "download", generation_id, "0", settings=fast_settings(sandbox))

    assert result.exit_code == 0, result.output
    assert Path(result.stdout.strip()) == tmp_path.resolve() / f"{generation_id}_0_4k.png"
    assert Path(result.stdout.strip()).is_file()


def test_download_with_a_fresh_sandbox_explains_the_404(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("--sandbox", "download", "aaaaaaaaaaaaaaaa", "0")

    assert result.exit_code == 1
    assert "404" in result.stderr
    assert "fresh sandbox" in result.stderr


def test_negative_index_is_a_usage_error(cli: Cli) -> None:
    assert cli("--sandbox", "download", "abc", "-1").exit_code == 2


def test_sizes(cli: Cli, sandbox: Sandbox, generation_id: str) -> None:
    text = cli("--sandbox", "sizes", generation_id, "0", settings=fast_settings(sandbox))
    as_json = cli(
        "--sandbox", "sizes", generation_id, "0", "--json", settings=fast_settings(sandbox)
    )

    assert text.exit_code == 0, text.output
    assert [line.split()[0] for line in text.stdout.splitlines()] == ["1k", "4k"]
    sizes = json.loads(as_json.stdout)
    assert [size["size_name"] for size in sizes] == ["1k", "4k"]
    assert max(sizes[1]["width"], sizes[1]["height"]) == 4096


def test_history_of_a_fresh_sandbox_is_seeded(cli: Cli) -> None:
    result = cli("--sandbox", "history")

    assert result.exit_code == 0, result.output
    assert "seeded with 3 demo generations" in result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert all("text_to_image  4 images" in line for line in lines)


def test_history_json_and_limit(cli: Cli, sandbox: Sandbox) -> None:
    for prompt in ("one", "two", "three"):
        generation_in(sandbox, prompt)
    result = cli(
        "--sandbox",
        "history",
        "--json",
        "--limit",
        "2",
        "--page-size",
        "1",
        settings=fast_settings(sandbox),
    )

    assert result.exit_code == 0, result.output
    items = [json.loads(line) for line in result.stdout.splitlines()]
    assert [item["prompt"] for item in items] == ["three", "two"]
    assert "seeded" not in result.stderr


def test_history_date_filters(cli: Cli, served: Served) -> None:
    generation_in(served.sandbox)
    future = cli("history", "--since", "2999-01-01", env=served.env())
    past = cli("history", "--until", "2000-01-01T00:00:00", env=served.env())
    everything = cli("history", "--since", "2000-01-01", env=served.env())

    assert future.exit_code == past.exit_code == everything.exit_code == 0
    assert future.stdout == past.stdout == ""
    assert len(everything.stdout.splitlines()) == 1


def test_variations(cli: Cli, sandbox: Sandbox, generation_id: str) -> None:
    result = cli(
        "--sandbox", "variations", generation_id, "1", "--json", settings=fast_settings(sandbox)
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["generation_request_id"] != generation_id


def test_refine_uploads_the_mask(
    cli: Cli, sandbox: Sandbox, generation_id: str, tmp_path: Path
) -> None:
    mask = tmp_path / "mask.jpg"
    mask.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    result = cli(
        "--sandbox",
        "refine",
        "--generation-id",
        generation_id,
        "--index",
        "0",
        "--mask",
        str(mask),
        "--prompt",
        "a blue hat",
        "--download",
        "1k",
        "--out",
        str(tmp_path / "out"),
        settings=fast_settings(sandbox),
    )

    assert result.exit_code == 0, result.output
    assert sandbox.stats.uploads == 1
    assert len(list((tmp_path / "out").glob("*.png"))) == 4


def test_refine_with_a_mask_url_and_an_asset(cli: Cli, sandbox: Sandbox, tmp_path: Path) -> None:
    async def upload() -> str:
        async with AsyncGettyAI.sandbox(sandbox) as client:
            return await client.uploads.upload(b"\xff\xd8\xff mask bytes", file_name="m.jpg")

    mask_url = anyio.run(upload)
    result = cli(
        "--sandbox",
        "refine",
        "--asset-id",
        "1234567",
        "--mask-url",
        mask_url,
        settings=fast_settings(sandbox),
    )

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("generation ")


def test_refine_needs_a_reference(cli: Cli, tmp_path: Path) -> None:
    result = cli("--sandbox", "refine", "--mask-url", "https://x.test/m.jpg")

    assert result.exit_code == 2
    assert "reference" in result.stderr


def test_extend(cli: Cli, sandbox: Sandbox, generation_id: str) -> None:
    result = cli(
        "--sandbox",
        "extend",
        "--generation-id",
        generation_id,
        "--index",
        "0",
        "--left",
        "0.25",
        "--right",
        "0.25",
        "--prompt",
        "more meadow",
        "--json",
        settings=fast_settings(sandbox),
    )

    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["results"]) == 4


def test_extend_needs_a_side(cli: Cli) -> None:
    result = cli("--sandbox", "extend", "--asset-id", "123")

    assert result.exit_code == 2
    assert "percentage" in result.stderr


def test_history_until_a_date_includes_that_day(cli: Cli, served: Served) -> None:
    generation_in(served.sandbox)
    listed = cli("history", "--json", env=served.env())
    day = json.loads(listed.stdout)["generation_date"][:10]

    result = cli("history", "--until", day, "--since", day, env=served.env())

    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 1
