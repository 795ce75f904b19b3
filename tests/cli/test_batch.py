"""`getty-ai batch`: inputs, results file, downloads, exit codes, output modes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from getty_ai_async.sandbox import Sandbox

from ._helpers import PROMPTS_FILE, PROMPTS_IN_FILE, Cli, fast_settings, write_lines


def results_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def prompt_lines(path: Path) -> dict[int, str]:
    """Line number -> prompt, skipping blank and comment lines like the CLI."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return {
        number: line.strip()
        for number, line in enumerate(lines, 1)
        if line.strip() and not line.strip().startswith("#")
    }


def test_text_batch(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cli("--sandbox", "batch", str(PROMPTS_FILE), "--out", str(out))

    assert result.exit_code == 0, result.output
    results = results_of(out / "results.jsonl")
    assert len(results) == PROMPTS_IN_FILE
    assert {r["line"]: r["prompt"] for r in results} == prompt_lines(PROMPTS_FILE)
    assert {r["status"] for r in results} == {"done"}
    assert all(r["generation_request_id"] and len(r["images"]) == 4 for r in results)
    assert (out / ".getty-ai-journal.sqlite").is_file()
    # Not a terminal: one plain line per input, then the summary.
    lines = result.stdout.splitlines()
    assert len(lines) == PROMPTS_IN_FILE + 1
    assert all(line.startswith("done    [") for line in lines[:-1])
    assert lines[-1].startswith(f"{PROMPTS_IN_FILE} of {PROMPTS_IN_FILE} inputs succeeded")
    assert "\x1b[" not in result.output


def test_batch_downloads_and_skips_files_on_rerun(
    cli: Cli, sandbox: Sandbox, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ("--sandbox", "batch", str(PROMPTS_FILE), "--download", "1k", "--out", str(out))
    first = cli(*args, settings=fast_settings(sandbox))

    assert first.exit_code == 0, first.output
    images = sorted(out.glob("*.png"))
    assert len(images) == 4 * PROMPTS_IN_FILE
    assert all(image.read_bytes().startswith(b"\x89PNG") for image in images)
    for record in results_of(out / "results.jsonl"):
        assert all(Path(image["file"]).is_file() for image in record["images"])
    downloads, submissions = sandbox.stats.downloads, sandbox.stats.submissions
    assert downloads == 4 * PROMPTS_IN_FILE

    again = cli(*args, settings=fast_settings(sandbox))

    assert again.exit_code == 0, again.output
    assert sandbox.stats.downloads == downloads
    assert sandbox.stats.submissions == submissions
    assert f"{PROMPTS_IN_FILE} replayed from the journal" in again.stdout
    assert f"0 saved, {4 * PROMPTS_IN_FILE} already there" in again.stdout
    assert len(results_of(out / "results.jsonl")) == PROMPTS_IN_FILE


def test_images_per_prompt(cli: Cli, tmp_path: Path) -> None:
    result = cli(
        "--sandbox",
        "batch",
        str(PROMPTS_FILE),
        "--download",
        "1k",
        "--images-per-prompt",
        "1",
        "--out",
        str(tmp_path),
    )

    assert result.exit_code == 0, result.output
    assert len(list(tmp_path.glob("*_0_1k.png"))) == PROMPTS_IN_FILE
    assert len(list(tmp_path.glob("*.png"))) == PROMPTS_IN_FILE


def test_jsonl_batch_with_a_bad_line(cli: Cli, tmp_path: Path) -> None:
    source = write_lines(
        tmp_path / "requests.jsonl",
        '{"prompt": "a fox", "key": "fox", "aspect_ratio": "16:9"}',
        "",
        '{"prompt": "a lighthouse", "mood": "dramatic"}',
        '{"prompt": "broken", ',
        '{"prompt": "an owl", "key": "owl"}',
    )
    out = tmp_path / "out"
    result = cli("--sandbox", "batch", str(source), "--out", str(out))

    assert result.exit_code == 1, result.output
    results = {r["line"]: r for r in results_of(out / "results.jsonl")}
    assert sorted(results) == [1, 3, 4, 5]
    assert results[1]["key"] == "fox"
    assert results[5]["key"] == "owl"
    assert [results[n]["status"] for n in (1, 3, 5)] == ["done"] * 3
    bad = results[4]
    assert bad["status"] == "failed"
    assert bad["line"] == 4
    assert bad["error"].startswith("invalid JSON")
    assert "failed  [" in result.stdout
    assert "line 4: invalid JSON" in result.stdout
    summary = result.stdout.splitlines()[-1]
    assert "3 of 4 inputs succeeded" in summary
    assert "1 failed (1 unusable lines)" in summary
    assert str(out / "results.jsonl") in summary


def test_jsonl_invalid_requests_fail_with_their_line(cli: Cli, tmp_path: Path) -> None:
    source = write_lines(
        tmp_path / "requests.ndjson",
        '{"prompt": "a fox", "key": "a"}',
        '{"prompt": "a fox", "aspect_ratio": "2:1"}',
        '{"prompt": "an owl", "key": "a"}',
        '["not", "an", "object"]',
        '{"prompt": "a cat", "colour": "red"}',
    )
    result = cli("--sandbox", "batch", str(source), "--out", str(tmp_path))

    assert result.exit_code == 1
    results = {r["line"]: r for r in results_of(tmp_path / "results.jsonl")}
    assert results[1]["status"] == "done"
    assert "aspect_ratio" in results[2]["error"]
    assert "duplicate key 'a' (first on line 1)" in results[3]["error"]
    assert "expected a JSON object" in results[4]["error"]
    assert "colour" in results[5]["error"]
    assert [results[n]["status"] for n in (2, 3, 4, 5)] == ["failed"] * 4


def test_format_is_sniffed_from_content(cli: Cli, tmp_path: Path) -> None:
    source = write_lines(tmp_path / "requests.data", "# comment", '{"prompt": "a fox"}')
    result = cli("--sandbox", "batch", str(source), "--out", str(tmp_path))

    assert result.exit_code == 0, result.output
    [record] = results_of(tmp_path / "results.jsonl")
    assert record["prompt"] == "a fox"
    assert record["line"] == 2


def test_format_option_overrides(cli: Cli, tmp_path: Path) -> None:
    source = write_lines(tmp_path / "prompts.jsonl", '{"prompt": "a fox"}')
    result = cli("--sandbox", "batch", str(source), "--format", "text", "--out", str(tmp_path))

    assert result.exit_code == 0, result.output
    [record] = results_of(tmp_path / "results.jsonl")
    assert record["prompt"] == '{"prompt": "a fox"}'


def test_stdin(cli: Cli, tmp_path: Path) -> None:
    result = cli("--sandbox", "batch", "-", "--out", str(tmp_path), input="a fox\n\nan owl\n")

    assert result.exit_code == 0, result.output
    assert "[1/2]" in result.stdout
    assert {r["line"]: r["prompt"] for r in results_of(tmp_path / "results.jsonl")} == {
        1: "a fox",
        3: "an owl",
    }


def test_results_and_journal_paths(cli: Cli, tmp_path: Path) -> None:
    results, journal = tmp_path / "r" / "all.jsonl", tmp_path / "j" / "run.sqlite"
    result = cli(
        "--sandbox",
        "batch",
        str(PROMPTS_FILE),
        "--out",
        str(tmp_path / "out"),
        "--results",
        str(results),
        "--journal",
        str(journal),
        "--max-pending",
        "3",
        "--qps",
        "500",
    )

    assert result.exit_code == 0, result.output
    assert len(results_of(results)) == PROMPTS_IN_FILE
    assert journal.is_file()
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_quiet_prints_only_the_summary(cli: Cli, tmp_path: Path) -> None:
    result = cli("--sandbox", "batch", str(PROMPTS_FILE), "--out", str(tmp_path), "--quiet")

    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 1
    assert "inputs succeeded" in result.stdout


def test_blocked_generations_are_not_failures(cli: Cli, tmp_path: Path) -> None:
    blocking = Sandbox(blocked_rate=1.0, pending_seconds=0)
    result = cli(
        "--sandbox",
        "batch",
        str(PROMPTS_FILE),
        "--download",
        "1k",
        "--out",
        str(tmp_path),
        settings=fast_settings(blocking),
    )

    assert result.exit_code == 0, result.output
    assert {r["status"] for r in results_of(tmp_path / "results.jsonl")} == {"blocked"}
    assert "with every image blocked by policy" in result.stdout
    assert not list(tmp_path.glob("*.png"))


def test_authentication_failure_stops_the_batch(cli: Cli, tmp_path: Path) -> None:
    strict = Sandbox(api_keys={"sandbox-key": "another-secret"}, pending_seconds=0)
    result = cli(
        "--sandbox",
        "batch",
        str(PROMPTS_FILE),
        "--out",
        str(tmp_path),
        settings=fast_settings(strict),
    )

    assert result.exit_code == 1
    summary = result.stdout.splitlines()[-1]
    assert summary.startswith("Stopped: authentication failed")
    assert "--retry-failed" in summary
    assert strict.stats.submissions == 0


def test_unreadable_input(cli: Cli, tmp_path: Path) -> None:
    missing = cli("--sandbox", "batch", str(tmp_path / "nope.txt"), "--out", str(tmp_path))
    folder = cli("--sandbox", "batch", str(tmp_path), "--out", str(tmp_path))
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"a fox\n\xff\xfe\n")
    undecodable = cli("--sandbox", "batch", str(binary), "--out", str(tmp_path))

    for result in (missing, folder, undecodable):
        assert result.exit_code == 2
        assert len(result.stderr.strip().splitlines()) == 1
    assert "cannot read" in missing.stderr
    assert "line 2 is not UTF-8" in undecodable.stderr


def test_bad_batch_options(cli: Cli, tmp_path: Path) -> None:
    for args in (
        ["--qps", "0"],
        ["--max-pending", "-1"],
        ["--download", "8k"],
        ["--images-per-prompt", "0"],
        ["--format", "csv"],
    ):
        result = cli("--sandbox", "batch", str(PROMPTS_FILE), "--out", str(tmp_path), *args)
        assert result.exit_code == 2, args
    assert not (tmp_path / "results.jsonl").exists()


def test_outputs_that_would_destroy_the_input_are_refused(cli: Cli, tmp_path: Path) -> None:
    prompts = write_lines(tmp_path / "p.txt", "a fox", "an owl")
    same_results = cli("--sandbox", "batch", str(prompts), "--results", str(prompts))
    same_journal = cli("--sandbox", "batch", str(prompts), "--journal", str(prompts))

    for result in (same_results, same_journal):
        assert result.exit_code == 2
        assert "is the input file" in result.stderr
    assert prompts.read_text() == "a fox\nan owl\n"


def test_a_file_that_is_not_a_journal_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = cli("--sandbox", "batch", str(PROMPTS_FILE), "--out", str(out))
    assert first.exit_code == 0
    bad = tmp_path / "bad.sqlite"
    bad.write_text("not a database\n")

    result = cli("--sandbox", "batch", str(PROMPTS_FILE), "--out", str(out), "--journal", str(bad))

    assert result.exit_code == 2
    assert "is not a journal" in result.stderr
    assert len(results_of(out / "results.jsonl")) == PROMPTS_IN_FILE  # left as it was


def test_fixing_a_bad_line_and_rerunning_pays_nothing_twice(cli: Cli, tmp_path: Path) -> None:
    requests = write_lines(
        tmp_path / "r.jsonl", '{"prompt": "one"}', '{"prompt": "two",}', '{"prompt": "three"}'
    )
    sandbox = Sandbox(pending_seconds=0)
    settings = fast_settings(sandbox)
    first = cli("--sandbox", "batch", str(requests), "--out", str(tmp_path), settings=settings)
    assert first.exit_code == 1
    assert sandbox.stats.submissions == 2

    requests.write_text('{"prompt": "one"}\n{"prompt": "two"}\n{"prompt": "three"}\n')
    second = cli("--sandbox", "batch", str(requests), "--out", str(tmp_path), settings=settings)

    assert second.exit_code == 0, second.output
    assert sandbox.stats.submissions == 3  # only the fixed line was new


def test_retry_notices_stay_off_stderr_unless_verbose(cli: Cli, tmp_path: Path) -> None:
    flaky = Sandbox(pending_seconds=0, seed=3)
    flaky.faults.error_rate = 0.3
    result = cli(
        "--sandbox",
        "batch",
        str(PROMPTS_FILE),
        "--out",
        str(tmp_path),
        "--quiet",
        settings=fast_settings(flaky),
    )

    assert flaky.stats.faults_injected["error"] > 0
    assert "stamina" not in result.stderr
    assert result.stderr == ""
