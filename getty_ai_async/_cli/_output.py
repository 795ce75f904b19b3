"""How single-shot commands print their results: short text, or JSON with ``--json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from .._models import DownloadSize, Generation, GenerationHistoryItem

__all__ = ["echo_json", "generation_json", "generation_text", "history_line", "sizes_text"]


def echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def generation_json(generation: Generation, files: list[Path]) -> dict[str, Any]:
    """The generation as the API returned it, plus the files saved from it."""
    data: dict[str, Any] = generation.model_dump(mode="json", exclude_none=True)
    if files:
        data["files"] = [str(file) for file in files]
    return data


def generation_text(generation: Generation, files: list[Path]) -> list[str]:
    """The id, then one line per image (its URL, or why there is none), then saved files."""
    seed = f" (seed {generation.seed})" if generation.seed is not None else ""
    lines = [f"generation {generation.generation_request_id}{seed}"]
    for image in generation.results or []:
        shown = "blocked by the AI generation policy" if image.is_blocked else image.url
        lines.append(f"  [{image.index}] {shown}")
    lines.extend(f"saved {file}" for file in files)
    return lines


def history_line(item: GenerationHistoryItem) -> str:
    """``<date>  <id>  <type>  <n> images  <prompt>``."""
    when = item.generation_date.strftime("%Y-%m-%d %H:%M:%S") if item.generation_date else "-"
    results = item.results or []
    blocked = sum(1 for result in results if result.is_blocked)
    images = f"{len(results)} images" + (f" ({blocked} blocked)" if blocked else "")
    prompt = f"  {item.prompt}" if item.prompt else ""
    return f"{when}  {item.generation_request_id}  {item.generation_type or '-'}  {images}{prompt}"


def sizes_text(sizes: list[DownloadSize]) -> list[str]:
    return [f"{size.size_name or '?':<3} {size.width} x {size.height} px" for size in sizes]
