"""Reading batch files: formats, line numbers, comments, encodings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from getty_ai_async._cli._errors import UsageError
from getty_ai_async._cli._inputs import InputFormat, InputLine, open_input

from ._helpers import write_lines


def prompt_of(line: InputLine) -> object:
    assert isinstance(line.request, dict)
    return line.request["prompt"]


def test_text_skips_blanks_and_comments_and_keeps_line_numbers(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.txt", "# header", "  a fox  ", "", "   ", "#x", "an owl")
    source = open_input(str(path))

    assert source.format is InputFormat.TEXT
    assert source.total == 2
    assert [(line.number, prompt_of(line)) for line in source.lines()] == [
        (2, "a fox"),
        (6, "an owl"),
    ]


def test_a_bom_is_not_part_of_the_first_prompt(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_bytes("\ufeffa fox\n".encode())

    assert [prompt_of(line) for line in open_input(str(path)).lines()] == ["a fox"]


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
    first = next(lines)
    assert (first.number, prompt_of(first)) == (1, "one")
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


def test_keys_follow_content_not_position(tmp_path: Path) -> None:
    """Fixing or inserting a line must not change the other inputs' journal keys."""
    before = write_lines(
        tmp_path / "a.jsonl", '{"prompt": "one"}', '{"prompt": "two",}', '{"prompt": "three"}'
    )
    after = write_lines(
        tmp_path / "b.jsonl", '{"prompt": "one"}', '{"prompt": "two"}', '{"prompt": "three"}'
    )
    keys_before = {
        prompt_of(line): line.request["key"]
        for line in open_input(str(before)).lines()
        if isinstance(line.request, dict)
    }  # type: ignore[index]
    keys_after = {
        prompt_of(line): line.request["key"]
        for line in open_input(str(after)).lines()
        if isinstance(line.request, dict)
    }  # type: ignore[index]
    assert keys_before["one"] == keys_after["one"]
    assert keys_before["three"] == keys_after["three"]


def test_the_same_prompt_twice_gets_two_keys(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.txt", "fox", "owl", "fox")
    keys = [line.request["key"] for line in open_input(str(path)).lines()]  # type: ignore[index]
    assert len(set(keys)) == 3


def test_deeply_nested_json_fails_alone(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "r.jsonl", '{"prompt": "a"}', "[" * 200_000, '{"prompt": "b"}')
    lines = list(open_input(str(path)).lines())
    assert lines[1].request is None
    assert lines[1].error is not None
    assert [prompt_of(line) for line in (lines[0], lines[2])] == ["a", "b"]


def test_a_pipe_is_read_once_whole(tmp_path: Path) -> None:
    read, write = os.pipe()
    os.write(write, b"fox\nowl\n")
    os.close(write)
    try:
        source = open_input(f"/dev/fd/{read}")
        assert source.total == 2
        assert [prompt_of(line) for line in source.lines()] == ["fox", "owl"]
    finally:
        os.close(read)
