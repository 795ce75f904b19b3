"""The repository's declarations hold: license, changelog, extras, the Pythons CI runs."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from getty_ai_async import __version__

ROOT = Path(__file__).parents[2]
CI_RUN = ROOT / ".ci" / "run"


def pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)["project"]  # type: ignore[no-any-return]


def test_license_file_matches_the_declared_license() -> None:
    assert pyproject()["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text


def test_changelog_keeps_unreleased_and_the_current_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "keepachangelog.com" in text
    headings = re.findall(r"^## \[([^\]]+)\]", text, flags=re.MULTILINE)
    assert headings[0] == "Unreleased"
    assert __version__ in headings


def test_the_cli_extra_can_serve_the_sandbox() -> None:
    # The Quickstart installs '.[cli]' and the README then runs `getty-ai sandbox serve`.
    extras = pyproject()["optional-dependencies"]
    assert isinstance(extras, dict)
    assert any(requirement.startswith("uvicorn") for requirement in extras["cli"])


def find_python(version: str, **env: str) -> str:
    script = f'set -euo pipefail; source "{CI_RUN}"; find_python {version}'
    done = subprocess.run(  # noqa: S603 - bash, on the repository's own script
        ["/bin/bash", "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", **env},
    )
    return done.stdout.strip()


def fake_python(root: Path, name: str) -> Path:
    python = root / "versions" / name / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n", encoding="utf-8")
    python.chmod(0o755)
    return python


@pytest.mark.skipif(not Path("/bin/bash").exists(), reason="needs bash")
def test_ci_finds_the_newest_patch_release_of_each_python(tmp_path: Path) -> None:
    for name in ("3.11.2", "3.12.1", "3.12.10", "3.13.0", "3.13.1-dev", "3.130.0"):
        fake_python(tmp_path, name)
    found = {
        version: find_python(version, PYENV_ROOT=str(tmp_path), HOME=str(tmp_path))
        for version in ("3.11", "3.12", "3.13", "3.14")
    }

    assert found == {
        "3.11": str(tmp_path / "versions/3.11.2/bin/python"),
        "3.12": str(tmp_path / "versions/3.12.10/bin/python"),
        "3.13": str(tmp_path / "versions/3.13.0/bin/python"),
        "3.14": "",
    }


@pytest.mark.skipif(not Path("/bin/bash").exists(), reason="needs bash")
def test_ci_runs_every_supported_python_and_fails_cleanly_without_one(tmp_path: Path) -> None:
    text = CI_RUN.read_text(encoding="utf-8")
    assert "set -euo pipefail" in text
    assert '"${CI_PYTHONS:-3.11 3.12 3.13}"' in text
    classifiers = pyproject().get("classifiers", [])
    assert isinstance(classifiers, list)
    for version in ("3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in classifiers

    done = subprocess.run(  # noqa: S603 - bash, on the repository's own script
        ["/bin/bash", str(CI_RUN)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "CI_PYTHONS": "3.98 3.99",
            "CI_VENV": str(tmp_path / "venv"),
        }
        | ({"SYSTEMROOT": os.environ["SYSTEMROOT"]} if "SYSTEMROOT" in os.environ else {}),
    )

    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == "ci: none of Python 3.98 3.99 was found"
    assert not list(tmp_path.glob("venv*"))
