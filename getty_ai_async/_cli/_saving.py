"""Saving images without ever paying twice for one.

Every command that saves images goes through `save_image`:

- an image whose complete file is already in the folder is not downloaded again
  (downloads are written to a temporary file and renamed, so a file under the final
  name is complete), unless ``force`` is given;
- a ledger in the folder (`LEDGER_NAME`, one JSON line per step) records each download
  as it is requested (before the PUT that may charge for it) and bought (with the
  ``generated_asset_id`` the service returns);
- an image the ledger says was bought is fetched again through ``POST /v3/ai/redownloads``,
  the service's free re-download, instead of being bought again;
- an image whose purchase was requested but never recorded (the PUT's reply was cut
  off, or the process was stopped while the download was being prepared) is looked up
  with ``GET .../download`` first: only when the service says no download was started
  is it bought.
"""

from __future__ import annotations

import glob
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Literal, Self

import anyio
import anyio.to_thread

from .._client import AsyncGettyAI
from .._downloads import safe_filename
from .._models import Download, SizeName
from .._resource import poll_until_ready
from ..errors import APIStatusError, ConflictError, GettyAIError, NotFoundError, ValidationError

__all__ = ["LEDGER_NAME", "DownloadLedger", "LedgerEntry", "SavedImage", "save_image"]

LEDGER_NAME = ".getty-ai-downloads.jsonl"

Step = Literal["requested", "bought", "refused"]
"""``requested``: a PUT is about to be sent (it may charge); ``bought``: the service
answered with the download (and its ``generated_asset_id``); ``refused``: the PUT was
refused for sure (a 4xx), so nothing was bought."""
How = Literal["present", "bought", "redownloaded", "resumed"]
"""How an image got into the folder: already there, bought now, re-downloaded for free
(bought by an earlier run), or picked up from a purchase an earlier run had started."""


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """The last step recorded for one image at one size."""

    generation_request_id: str
    index: int
    size_name: str
    step: Step
    generated_asset_id: str | None = None


@dataclass(frozen=True, slots=True)
class SavedImage:
    path: Path
    how: How


def _key(generation_request_id: str, index: int, size_name: str) -> tuple[str, int, str]:
    return generation_request_id, index, size_name


class DownloadLedger:
    """The downloads requested and bought for one folder (``LEDGER_NAME`` in it).

    Read whole when opened; each step is appended and flushed at once, so a process
    stopped at any point leaves every purchase it made on disk.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / LEDGER_NAME
        self._entries: dict[tuple[str, int, str], LedgerEntry] = {}
        self._file: IO[str] | None = None
        self._loaded = False

    def _load(self) -> None:
        self._loaded = True
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        for line in text.splitlines():
            try:
                entry = LedgerEntry(**json.loads(line))
            except (ValueError, TypeError):
                continue  # a line cut short by a crash: the one before it still holds
            key = _key(entry.generation_request_id, entry.index, entry.size_name)
            self._entries[key] = entry

    def get(self, generation_request_id: str, index: int, size_name: str) -> LedgerEntry | None:
        """The last step recorded for this image and size, if any."""
        if not self._loaded:
            self._load()
        return self._entries.get(_key(generation_request_id, index, size_name))

    def record(self, entry: LedgerEntry) -> None:
        """Append `entry` (flushed before returning)."""
        if not self._loaded:
            self._load()
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(json.dumps(asdict(entry)) + "\n")
        self._file.flush()
        self._entries[_key(entry.generation_request_id, entry.index, entry.size_name)] = entry

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def image_stem(generation_request_id: str, index: int, size_name: SizeName) -> str:
    """The file name of a saved image, without its extension."""
    return safe_filename(f"{generation_request_id}_{index}_{size_name.value}")


def existing_image(folder: Path, stem: str) -> Path | None:
    """A complete file saved earlier under `stem` (with whatever extension), if any.

    Partial downloads live under hidden ``.<name>.<id>.part`` names until renamed, so a
    file found here is complete.
    """
    for found in sorted(folder.glob(glob.escape(stem) + ".*")):
        if found.is_file() and found.stat().st_size > 0:
            return found
    plain = folder / stem
    return plain if plain.is_file() and plain.stat().st_size > 0 else None


async def _product_id(client: AsyncGettyAI, generation_request_id: str) -> int | None:
    """The product a generation was charged to (re-downloads name it), if history says."""
    try:
        return (await client.history.get(generation_request_id)).product_id
    except GettyAIError:
        return None


async def _started_download(
    client: AsyncGettyAI, generation_request_id: str, index: int
) -> Download | None:
    """The download an earlier run started for this image, or None if none was."""
    try:
        return await poll_until_ready(
            lambda: client.downloads.get(generation_request_id, index),
            lambda download: download.is_pending,
            generation_request_id=generation_request_id,
            interval=client.poll_interval,
            timeout=client.wait_timeout,
            what="download",
            immediate=True,
        )
    except NotFoundError:
        return None


async def _buy(
    client: AsyncGettyAI,
    ledger: DownloadLedger,
    generation_request_id: str,
    index: int,
    size_name: SizeName,
) -> Download:
    """PUT the download (which may charge), recorded before it is sent."""
    ledger.record(LedgerEntry(generation_request_id, index, size_name.value, "requested"))
    try:
        return await client.downloads.create(generation_request_id, index, size_name=size_name)
    except APIStatusError as exc:
        if 400 <= exc.status_code < 500 and not isinstance(exc, ConflictError):
            ledger.record(LedgerEntry(generation_request_id, index, size_name.value, "refused"))
        raise


async def save_image(
    client: AsyncGettyAI,
    ledger: DownloadLedger,
    generation_request_id: str,
    index: int,
    size_name: SizeName,
    folder: Path,
    *,
    force: bool = False,
    product_id: int | None = None,
) -> SavedImage:
    """Put image `index` of a generation into `folder`, paying for it at most once.

    With `force`, a file already in the folder is replaced (by a free re-download when
    the ledger knows the purchase).
    """
    stem = image_stem(generation_request_id, index, size_name)
    if not force:
        found = await anyio.to_thread.run_sync(existing_image, folder, stem)
        if found is not None:
            return SavedImage(found, "present")
    entry = ledger.get(generation_request_id, index, size_name.value)
    if entry is not None and entry.step == "refused":
        entry = None
    how: How
    download: Download | None = None
    if entry is not None and entry.generated_asset_id:
        if product_id is None:
            product_id = await _product_id(client, generation_request_id)
        download = await client.downloads.redownload(
            entry.generated_asset_id, size_name=size_name, product_id=product_id
        )
        how = "redownloaded"
    else:
        if entry is not None:
            download = await _started_download(client, generation_request_id, index)
        how = "resumed"
        if download is None:
            download = await _buy(client, ledger, generation_request_id, index, size_name)
            how = "bought"
        ledger.record(
            LedgerEntry(
                generation_request_id,
                index,
                size_name.value,
                "bought",
                download.generated_asset_id,
            )
        )
    if not download.url:
        raise ValidationError("url", "the service returned a download without a URL")
    path = await client.downloads.fetch(download.url, folder, stem)
    return SavedImage(path, how)
