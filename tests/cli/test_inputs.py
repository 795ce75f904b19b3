"""Reading batch files: formats, line numbers, comments, encodings."""

from __future__ import annotations

from pathlib import Path

import pytest

from getty_ai_async._cli._errors import UsageError
from getty_ai_async._cli._inputs import InputFormat, InputLine, open_input

from ._helpers import write_lines


def test_text_skips_blanks_and_comments_and_keeps_line_numbers(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.txt", "# header", "  a fox  ", "", "   ", "#x", "an owl")
    source = open_input(str(path))

    assert source.format is InputFormat.TEXT
    assert source.total == 2
    assert list(source.lines()) == [InputLine(2, "a fox"), InputLine(6, "an owl")]


def test_a_bom_is_not_part_of_the_first_prompt(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_bytes("\ufeffa fox\n".encode())

    assert list(open_input(str(path)).lines()) == [InputLine(1, "a fox")]


@pytest.mark.parametrize(
    ("name", "first", "expected"),
    [
        ("p.jsonl", "a fox", InputFormat.JSONL),
        ("p.NDJSON", "a fox", InputFormat.JSONL),
        ("p.txt", '{"prompt": "a fox"}', InputFormat.TEXT),
        ("p", '{"prompt": "a fox"}', InputFormat.JSONL),
        ("p.prompts", "a fox", InputFormat.TEXT),
    ],
)
def test_format_detection(tmp_path: Path, name: str, first: str, expected: InputFormat) -> None:
    path = write_lines(tmp_path / name, "# comment", first)

    assert open_input(str(path)).format is expected


def test_jsonl_lines(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "r.jsonl",
        '{"prompt": "a", "key": 7}',
        "{oops",
        "42",
        '{"prompt": "b", "key": "7"}',
        '{"prompt": "c", "key": true}',
    )
    lines = list(open_input(str(path)).lines())

    assert lines[0] == InputLine(1, {"prompt": "a", "key": "7"})
    assert lines[1].request is None
    assert lines[1].error is not None
    assert lines[1].error.startswith("invalid JSON")
    assert lines[2].error == "expected a JSON object, got int"
    assert lines[3].error == "duplicate key '7' (first on line 1)"
    assert lines[4].error == "'key' must be a string or an integer"


def test_reading_is_lazy(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.txt", "one", "two")
    lines = open_input(str(path)).lines()
    assert next(lines) == InputLine(1, "one")
    path.write_text("one\nchanged\n")
    # Opened on the first next(): later lines come from the file as it was then read.
    assert next(lines).number == 2
    lines.close()


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_bytes(b"fine\n\xc3\x28\n")

    with pytest.raises(UsageError, match="line 2 is not UTF-8"):
        open_input(str(path))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read"):
        open_input(str(tmp_path / "nope.txt"))
