"""Outputs are checked before anything is paid for; downloads are never bought twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from getty_ai_async._downloads import Downloads
from getty_ai_async.sandbox import Sandbox

from ._helpers import PROMPTS_FILE, Cli, fast_settings


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("getty-ai: error: ")
    return lines[0]


def unwritable_folders(tmp_path: Path) -> list[Path]:
    """Folders nothing can be written to, whoever runs the tests (root included)."""
    (tmp_path / "a-file").write_text("not a folder\n", encoding="utf-8")
    found = [tmp_path / "a-file", tmp_path / "a-file" / "sub"]
    if Path("/sys/fs").is_dir():
        found.append(Path("/sys/fs"))  # sysfs refuses new files, even to root
    if Path("/proc/self").exists():
        found.append(Path("/proc/getty-ai-test"))
    return found


@pytest.fixture
def shared(sandbox: Sandbox) -> Sandbox:
    sandbox.config.pending_seconds = 0
    sandbox.config.download_pending_seconds = 0
    return sandbox


def test_generate_checks_out_before_paying(cli: Cli, shared: Sandbox, tmp_path: Path) -> None:
    for folder in unwritable_folders(tmp_path):
        result = cli(
            "--sandbox",
            "generate",
            "fox",
            "--download",
            "1k",
            "--out",
            str(folder),
            settings=fast_settings(shared),
        )

        assert result.exit_code == 2, (folder, result.output)
        line = one_error_line(result.stderr)
        assert "--out" in line
        assert str(folder) in line
        assert "ExceptionGroup" not in line
    assert shared.stats.submissions_attempted == 0
    assert shared.stats.downloads == 0


def test_download_checks_out_before_buying(cli: Cli, shared: Sandbox, tmp_path: Path) -> None:
    settings = fast_settings(shared)
    created = cli("--sandbox", "generate", "fox", "--json", settings=settings)
    generation_id = json.loads(created.stdout)["generation_request_id"]

    for folder in unwritable_folders(tmp_path):
        result = cli("--sandbox", "download", generation_id, "0", "--out", str(folder),
                     settings=settings)  # fmt: skip

        assert result.exit_code == 2, (folder, result.output)
        assert str(folder) in one_error_line(result.stderr)
    assert shared.stats.downloads == 0


@pytest.mark.parametrize("option", ["--results", "--journal"])
def test_batch_checks_results_and_journal_before_submitting(
    cli: Cli, shared: Sandbox, tmp_path: Path, option: str
) -> None:
    (tmp_path / "a-file").write_text("not a folder\n", encoding="utf-8")
    target = tmp_path / "a-file" / "x"
    args = ["--sandbox", "batch", str(PROMPTS_FILE), "--out", str(tmp_path / "out")]

    result = cli(*args, "--download", "1k", option, str(target), settings=fast_settings(shared))

    assert result.exit_code == 2
    assert f"{option} {target}" in one_error_line(result.stderr)
    assert shared.stats.submissions_attempted == 0


def test_a_disk_failing_mid_download_is_one_line_per_image(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def disk_full(self: Downloads, url: str, directory: object, filename: str) -> Path:
        raise OSError(28, "No space left on device", str(tmp_path / filename))

    monkeypatch.setattr(Downloads, "fetch", disk_full)

    result = cli("--sandbox", "generate", "fox", "--download", "1k", "--out", str(tmp_path))

    assert result.exit_code == 1
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 4
    assert all("No space left on device" in line for line in errors)
    assert "ExceptionGroup" not in result.stderr


class TestDownloadOnce:
    """`getty-ai download` twice, with --force, and after the file was lost."""

    @pytest.fixture
    def generation_id(self, cli: Cli, shared: Sandbox) -> str:
        created = cli("--sandbox", "generate", "fox", "--json", settings=fast_settings(shared))
        return str(json.loads(created.stdout)["generation_request_id"])

    def download(self, cli: Cli, shared: Sandbox, generation_id: str, out: Path, *extra: str):  # type: ignore[no-untyped-def]
        return cli(
            "--sandbox", "download", generation_id, "0", "--size", "1k", "--out", str(out),
            *extra, settings=fast_settings(shared),
        )  # fmt: skip

    def test_an_image_already_saved_is_not_bought_again(
        self, cli: Cli, shared: Sandbox, generation_id: str, tmp_path: Path
    ) -> None:
        first = self.download(cli, shared, generation_id, tmp_path)
        assert first.exit_code == 0, first.output
        path = Path(first.stdout.strip())
        assert path.read_bytes().startswith(b"\x89PNG")
        assert shared.stats.downloads == 1

        again = self.download(cli, shared, generation_id, tmp_path)

        assert again.exit_code == 0, again.output
        assert again.stdout.strip() == str(path)
        assert "already there" in again.stderr
        assert "--force" in again.stderr
        assert shared.stats.downloads == 1
        assert shared.stats.redownloads == 0

    def test_force_uses_the_free_redownload(
        self, cli: Cli, shared: Sandbox, generation_id: str, tmp_path: Path
    ) -> None:
        first = self.download(cli, shared, generation_id, tmp_path)
        path = Path(first.stdout.strip())
        path.write_bytes(b"damaged")

        forced = self.download(cli, shared, generation_id, tmp_path, "--force")

        assert forced.exit_code == 0, forced.output
        assert "without buying it again" in forced.stderr
        assert path.read_bytes().startswith(b"\x89PNG")
        assert shared.stats.downloads == 1
        assert shared.stats.redownloads == 1

    def test_a_lost_file_comes_back_without_buying(
        self, cli: Cli, shared: Sandbox, generation_id: str, tmp_path: Path
    ) -> None:
        Path(self.download(cli, shared, generation_id, tmp_path).stdout.strip()).unlink()

        again = self.download(cli, shared, generation_id, tmp_path)

        assert again.exit_code == 0, again.output
        assert Path(again.stdout.strip()).exists()
        assert shared.stats.downloads == 1
        assert shared.stats.redownloads == 1

    def test_another_size_is_a_new_purchase(
        self, cli: Cli, shared: Sandbox, generation_id: str, tmp_path: Path
    ) -> None:
        self.download(cli, shared, generation_id, tmp_path)
        bigger = cli("--sandbox", "download", generation_id, "0", "--size", "4k",
                     "--out", str(tmp_path), settings=fast_settings(shared))  # fmt: skip

        assert bigger.exit_code == 0, bigger.output
        assert bigger.stdout.strip().endswith("_0_4k.png")
        assert shared.stats.downloads == 2
