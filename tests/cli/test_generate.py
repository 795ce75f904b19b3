"""`getty-ai generate` (and the global options it shares with every command)."""

from __future__ import annotations

import json
from pathlib import Path

import anyio

from getty_ai_async import AsyncGettyAI
from getty_ai_async.sandbox import Sandbox

from ._helpers import Cli, fast_settings


def test_generate_prints_id_and_urls(cli: Cli) -> None:
    result = cli("--sandbox", "generate", "a red fox in snow")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("generation ")
    assert "(seed " in lines[0]
    urls = [line for line in lines[1:] if line.startswith("  [")]
    assert len(urls) == 4
    assert all(".png" in line for line in urls)


def test_generate_json(cli: Cli) -> None:
    result = cli("--sandbox", "generate", "a red fox", "--seed", "7", "--json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["seed"] == 7
    assert len(data["results"]) == 4
    assert data["generation_request_id"]
    assert "files" not in data


def test_generate_sends_the_options(cli: Cli, sandbox: Sandbox) -> None:
    result = cli(
        "--sandbox",
        "generate",
        "a lighthouse",
        "--aspect-ratio",
        "16:9",
        "--media-type",
        "illustration",
        "--mood",
        "dramatic",
        "--negative-prompt",
        "people",
        "--product-id",
        "5",
        "--project-code",
        "P-1",
        "--notes",
        "for the blog",
        "--json",
        settings=fast_settings(sandbox),
    )

    assert result.exit_code == 0, result.output
    generation_id = json.loads(result.stdout)["generation_request_id"]

    async def recorded() -> dict[str, object]:
        async with AsyncGettyAI.sandbox(sandbox) as client:
            item = await client.history.get(generation_id)
        return item.model_dump(mode="json")

    item = anyio.run(recorded)
    assert item["prompt"] == "a lighthouse"
    assert item["negative_prompt"] == "people"
    assert item["product_id"] == 5
    assert item["project_code"] == "P-1"
    assert item["notes"] == "for the blog"
    assert item["generation_options"] == {
        "media_type": "illustration",
        "aspect_ratio": "16:9",
        "mood": "dramatic",
    }


def test_generate_download(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "images"
    result = cli("--sandbox", "generate", "a fox", "--download", "1k", "--out", str(out))

    assert result.exit_code == 0, result.output
    files = sorted(out.glob("*.png"))
    assert len(files) == 4
    assert all(file.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for file in files)
    saved = [line.removeprefix("saved ") for line in result.stdout.splitlines() if "saved" in line]
    assert sorted(Path(path).name for path in saved) == [file.name for file in files]


def test_generate_download_json_lists_files(cli: Cli, tmp_path: Path) -> None:
    result = cli(
        "--sandbox", "generate", "a fox", "--download", "1k", "--out", str(tmp_path), "--json"
    )

    assert result.exit_code == 0, result.output
    files = json.loads(result.stdout)["files"]
    assert len(files) == 4
    assert all(Path(file).is_file() for file in files)


def test_bad_choice_is_a_usage_error(cli: Cli) -> None:
    result = cli("--sandbox", "generate", "a fox", "--aspect-ratio", "2:1")

    assert result.exit_code == 2
    assert "2:1" in result.stderr
    assert "Traceback" not in result.output


def test_empty_prompt_is_a_usage_error(cli: Cli) -> None:
    result = cli("--sandbox", "generate", "")

    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "getty-ai: error: invalid prompt: must not be empty or only whitespace"
    ]


def test_version(cli: Cli) -> None:
    from getty_ai_async import __version__

    result = cli("--version")

    assert result.exit_code == 0
    assert result.stdout.strip() == f"getty-ai {__version__}"


def test_verbose_logs_requests_on_stderr(cli: Cli) -> None:
    result = cli("--sandbox", "--verbose", "generate", "a fox")

    assert result.exit_code == 0, result.output
    assert "POST /v3/ai/image-generations" in result.stderr
    assert "DEBUG getty_ai_async" in result.stderr
    assert "POST" not in result.stdout
