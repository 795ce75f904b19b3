"""The single-shot commands: generate, get, download, sizes, history, variations, refine, extend."""

from __future__ import annotations

import datetime as dt
import mimetypes
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import anyio
import typer

from .._client import AsyncGettyAI
from .._generations import SubmitOptions
from .._models import AspectRatio, DepthOfField, Generation, LensType, MediaType, Mood, SizeName
from ..errors import GettyAIError
from ._errors import EXIT_FAILED, describe
from ._output import echo_json, generation_json, generation_text, history_line, sizes_text
from ._paths import writable_folder
from ._run import SandboxFlag, echo_error, fail, reporting_errors, run_async, settings_of
from ._saving import DownloadLedger, save_image
from ._settings import Settings

__all__ = ["download", "extend", "generate", "get", "history", "refine", "sizes", "variations"]

_SANDBOX_HISTORY_SEEDS = (
    "a lighthouse at dusk, long exposure",
    "a bowl of ramen, top-down, studio light",
    "a fox in fresh snow, telephoto",
)

# ------------------------------------------------------------------ shared options

NegativePrompt = Annotated[
    str | None, typer.Option(help="Concepts to keep out of the image.", show_default=False)
]
ProductId = Annotated[
    int | None, typer.Option(help="AI Generation product to charge.", show_default=False)
]
ProjectCode = Annotated[
    str | None, typer.Option(help="Project code, if the product needs one.", show_default=False)
]
Notes = Annotated[str | None, typer.Option(help="Notes, if the product needs them.")]
Download = Annotated[
    SizeName | None,
    typer.Option(
        "--download", help="Also download every image that was not blocked, at this size."
    ),
]
Out = Annotated[Path, typer.Option("--out", help="Folder for downloaded images.", file_okay=False)]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
GenerationIdArg = Annotated[str, typer.Argument(help="A generation_request_id.", metavar="ID")]
IndexArg = Annotated[
    int, typer.Argument(help="Image index (0-based).", min=0, max=2**31 - 1, metavar="INDEX")
]
AssetId = Annotated[
    str | None, typer.Option(help="Work from this Getty creative asset id.", show_default=False)
]
GenerationId = Annotated[
    str | None,
    typer.Option(
        "--generation-id", help="Or from an image of an earlier generation (with --index)."
    ),
]
Index = Annotated[
    int | None, typer.Option(help="Image index for --generation-id.", min=0, max=2**31 - 1)
]


# ------------------------------------------------------------------ helpers


async def _save_images(
    client: AsyncGettyAI,
    generation: Generation,
    size: SizeName,
    out: Path,
    product_id: int | None = None,
) -> tuple[list[Path], list[str]]:
    """Save every unblocked image concurrently; (files in index order, error lines)."""
    saved: dict[int, Path] = {}
    errors: list[str] = []

    async def save(ledger: DownloadLedger, index: int) -> None:
        try:
            image = await save_image(
                client,
                ledger,
                generation.generation_request_id,
                index,
                size,
                out,
                product_id=product_id,
            )
        except (GettyAIError, OSError) as exc:
            errors.append(f"image {index}: {describe(exc)[0]}")
        else:
            saved[index] = image.path

    with DownloadLedger(out) as ledger:
        async with anyio.create_task_group() as group:
            for image in generation.images:
                group.start_soon(save, ledger, image.index)
    return [saved[index] for index in sorted(saved)], errors


async def _wait_for(client: AsyncGettyAI, submitted: Generation) -> Generation:
    """Wait for a generation submitted with ``wait=False``; on Ctrl-C say how to pick it up."""
    if not submitted.is_pending:
        return submitted
    generation_id = submitted.generation_request_id
    try:
        return await client.generations.wait(generation_id)
    except anyio.get_cancelled_exc_class():
        typer.echo(
            f"still pending: {generation_id} (later: getty-ai get {generation_id} --wait)",
            err=True,
        )
        raise


def _submit_options(
    product_id: int | None, project_code: str | None, notes: str | None
) -> SubmitOptions:
    """The billing options every creating command takes; the CLI waits on its own terms."""
    return {"product_id": product_id, "project_code": project_code, "notes": notes, "wait": False}


def _finish(
    settings: Settings,
    submit: Callable[[AsyncGettyAI], Awaitable[Generation]],
    download: SizeName | None,
    out: Path,
    as_json: bool,
    product_id: int | None = None,
) -> None:
    """Submit, wait, optionally download, print: what every generating command does."""
    if download is not None:
        with reporting_errors(settings):
            writable_folder("--out", out)  # before paying for anything

    async def body() -> int:
        async with settings.client() as client:
            generation = await _wait_for(client, await submit(client))
            files, errors = (
                await _save_images(client, generation, download, out, product_id)
                if download
                else ([], [])
            )
        if as_json:
            data = generation_json(generation, files)
            if errors:
                data["download_errors"] = errors
            echo_json(data)
        else:
            for line in generation_text(generation, files):
                typer.echo(line)
        for error in errors:
            echo_error(f"download failed: {error}")
        return EXIT_FAILED if errors else 0

    run_async(settings, body)


# ------------------------------------------------------------------ commands


def generate(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="What to generate.")],
    aspect_ratio: Annotated[AspectRatio | None, typer.Option(help="Width:height.")] = None,
    media_type: Annotated[MediaType | None, typer.Option()] = None,
    mood: Annotated[Mood | None, typer.Option()] = None,
    lens_type: Annotated[LensType | None, typer.Option()] = None,
    depth_of_field: Annotated[DepthOfField | None, typer.Option()] = None,
    negative_prompt: NegativePrompt = None,
    seed: Annotated[
        int | None, typer.Option(help="Reuse a seed to reproduce an aesthetic.")
    ] = None,
    product_id: ProductId = None,
    project_code: ProjectCode = None,
    notes: Notes = None,
    download: Download = None,
    out: Out = Path("."),
    as_json: Json = False,
    _sandbox: SandboxFlag = False,
) -> None:
    """Generate images from a prompt; prints the generation id and image URLs."""

    async def submit(client: AsyncGettyAI) -> Generation:
        return await client.generations.create(
            prompt,
            aspect_ratio=aspect_ratio,
            media_type=media_type,
            mood=mood,
            lens_type=lens_type,
            depth_of_field=depth_of_field,
            negative_prompt=negative_prompt,
            seed=seed,
            **_submit_options(product_id, project_code, notes),
        )

    _finish(settings_of(ctx), submit, download, out, as_json, product_id)


def variations(
    ctx: typer.Context,
    generation_id: GenerationIdArg,
    index: IndexArg,
    product_id: ProductId = None,
    project_code: ProjectCode = None,
    notes: Notes = None,
    download: Download = None,
    out: Out = Path("."),
    as_json: Json = False,
    _sandbox: SandboxFlag = False,
) -> None:
    """New images in the spirit of image INDEX of generation ID."""

    async def submit(client: AsyncGettyAI) -> Generation:
        return await client.generations.variations(
            generation_id,
            index,
            **_submit_options(product_id, project_code, notes),
        )

    _finish(settings_of(ctx), submit, download, out, as_json, product_id)


def refine(
    ctx: typer.Context,
    asset_id: AssetId = None,
    generation_id: GenerationId = None,
    index: Index = None,
    mask: Annotated[
        Path | None,
        typer.Option(
            help="Mask image to upload (JPEG) marking the area to repaint.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ] = None,
    mask_url: Annotated[
        str | None, typer.Option(help="Or the URL of a mask uploaded before.")
    ] = None,
    prompt: Annotated[str | None, typer.Option(help="What to paint in the masked area.")] = None,
    negative_prompt: NegativePrompt = None,
    product_id: ProductId = None,
    project_code: ProjectCode = None,
    notes: Notes = None,
    download: Download = None,
    out: Out = Path("."),
    as_json: Json = False,
    _sandbox: SandboxFlag = False,
) -> None:
    """Repaint the masked area of a Getty asset or of a generated image."""
    settings = settings_of(ctx)
    if (mask is None) == (mask_url is None):
        fail("refine needs exactly one of --mask and --mask-url")

    async def submit(client: AsyncGettyAI) -> Generation:
        url = mask_url
        if mask is not None:
            content_type = mimetypes.guess_type(mask.name)[0] or "image/jpeg"
            url = await client.uploads.upload(mask, content_type=content_type)
        assert url is not None
        return await client.generations.refine(
            mask_url=url,
            asset_id=asset_id,
            generation_request_id=generation_id,
            index=index,
            prompt=prompt,
            negative_prompt=negative_prompt,
            **_submit_options(product_id, project_code, notes),
        )

    _finish(settings, submit, download, out, as_json, product_id)


def extend(
    ctx: typer.Context,
    asset_id: AssetId = None,
    generation_id: GenerationId = None,
    index: Index = None,
    left: Annotated[float | None, typer.Option(help="Extend the left side by this much.")] = None,
    right: Annotated[float | None, typer.Option(help="... the right side.")] = None,
    top: Annotated[float | None, typer.Option(help="... the top.")] = None,
    bottom: Annotated[float | None, typer.Option(help="... the bottom.")] = None,
    prompt: Annotated[str | None, typer.Option(help="What to paint in the new area.")] = None,
    negative_prompt: NegativePrompt = None,
    product_id: ProductId = None,
    project_code: ProjectCode = None,
    notes: Notes = None,
    download: Download = None,
    out: Out = Path("."),
    as_json: Json = False,
    _sandbox: SandboxFlag = False,
) -> None:
    """Extend an image past its borders (percentages as the API takes them: 0.2 = 20 %)."""

    async def submit(client: AsyncGettyAI) -> Generation:
        return await client.generations.extend(
            asset_id=asset_id,
            generation_request_id=generation_id,
            index=index,
            left_percentage=left,
            right_percentage=right,
            top_percentage=top,
            bottom_percentage=bottom,
            prompt=prompt,
            negative_prompt=negative_prompt,
            **_submit_options(product_id, project_code, notes),
        )

    _finish(settings_of(ctx), submit, download, out, as_json, product_id)


def get(
    ctx: typer.Context,
    generation_id: GenerationIdArg,
    wait: Annotated[bool, typer.Option("--wait", help="Poll until the images are ready.")] = False,
    as_json: Json = False,
    _sandbox: SandboxFlag = False,
) -> None:
    """Show a generation: its images, or that it is still pending."""
    settings = settings_of(ctx)

    async def body() -> None:
        async with settings.client() as client:
            if wait:
                generation = await client.generations.wait(generation_id)
            else:
                generation = await client.generations.get(generation_id)
        if as_json:
            echo_json(generation_json(generation, []) | {"pending": generation.is_pending})
        elif generation.is_pending:
            typer.echo(f"generation {generation_id} is still pending")
        else:
            for line in generation_text(generation, []):
                typer.echo(line)

    run_async(settings, body)


def download(
    ctx: typer.Context,
    generation_id: GenerationIdArg,
    index: IndexArg,
    size: Annotated[SizeName, typer.Option(help="Download size.")] = SizeName.SIZE_4K,
    out: Out = Path("."),
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Download again even if the file is already in --out (free when this "
            "folder's ledger knows the purchase: a re-download, not a new one).",
        ),
    ] = False,
    _sandbox: SandboxFlag = False,
) -> None:
    """Download image INDEX of generation ID (buys it at the given size) and print its path.

    An image already saved in --out is not bought again; one bought before (recorded in
    --out/.getty-ai-downloads.jsonl) is re-downloaded for free.
    """
    settings = settings_of(ctx)
    with reporting_errors(settings):
        writable_folder("--out", out)  # before paying for anything

    async def body() -> None:
        async with settings.client() as client:
            with DownloadLedger(out) as ledger:
                saved = await save_image(
                    client, ledger, generation_id, index, size, out, force=force
                )
        if saved.how == "present":
            typer.echo(
                f"{saved.path} is already there: not downloaded again (--force replaces it)",
                err=True,
            )
        elif saved.how != "bought":
            typer.echo("bought before: re-downloaded without buying it again", err=True)
        typer.echo(str(saved.path))

    run_async(settings, body)


def sizes(
    ctx: typer.Context,
    generation_id: GenerationIdArg,
    index: IndexArg,
    as_json: Json = False,
    _sandbox: SandboxFlag = False,
) -> None:
    """The sizes image INDEX of generation ID can be downloaded at."""
    settings = settings_of(ctx)

    async def body() -> None:
        async with settings.client() as client:
            found = await client.downloads.sizes(generation_id, index)
        if as_json:
            echo_json([size.model_dump(mode="json", exclude_none=True) for size in found])
        else:
            for line in sizes_text(found):
                typer.echo(line)

    run_async(settings, body)


def _date(option: str, value: str | None) -> dt.date | dt.datetime | None:
    """A date (the whole day, in UTC) or a date-time (naive ones are UTC)."""
    if value is None:
        return None
    try:
        if len(value.strip()) == 10:
            return dt.date.fromisoformat(value.strip())
        return dt.datetime.fromisoformat(value.strip())
    except ValueError:
        fail(f"{option}: expected a date like 2025-01-31 (or a date-time), got {value!r}")


async def _seed_sandbox(client: AsyncGettyAI) -> None:
    """Give a fresh ``--sandbox`` something to list, and say so."""
    for prompt in _SANDBOX_HISTORY_SEEDS:
        await client.generations.create(prompt, wait=False)
    if client.simulator is not None:
        # Fast-forward the simulated clock so the seeded generations are finished.
        client.simulator.advance(60)
    typer.echo(
        f"(sandbox: a fresh in-process sandbox, seeded with {len(_SANDBOX_HISTORY_SEEDS)} "
        "demo generations)",
        err=True,
    )


def history(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option(help="Only generations from this date on (ISO 8601; UTC unless an offset)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="Only generations up to this date, that day included (ISO 8601)."),
    ] = None,
    media_type: Annotated[MediaType | None, typer.Option()] = None,
    page_size: Annotated[
        int | None, typer.Option(help="Items per API request.", min=1, show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option(help="Show at most this many (0: all).", min=0)] = 20,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object a line (JSON Lines).")
    ] = False,
    _sandbox: SandboxFlag = False,
) -> None:
    """The account's past generations, newest first."""
    settings = settings_of(ctx)
    date_start, date_end = _date("--since", since), _date("--until", until)

    async def body() -> None:
        async with settings.client() as client:
            if settings.sandbox and settings.simulator is None:
                await _seed_sandbox(client)
            shown = 0
            async for item in client.history.list(
                page_size=page_size, date_start=date_start, date_end=date_end, media_type=media_type
            ):
                if as_json:
                    typer.echo(item.model_dump_json(exclude_none=True))
                else:
                    typer.echo(history_line(item))
                shown += 1
                if shown == limit:
                    break

    run_async(settings, body)
