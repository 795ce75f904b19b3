"""`client.downloads`: buy a full-size image, poll its 202, stream it to disk."""

from __future__ import annotations

import logging
import os
import re
import uuid
from pathlib import Path

import anyio
import httpx

from ._logging import shown_url
from ._models import (
    Download,
    DownloadRequest,
    DownloadSize,
    DownloadSizes,
    RedownloadRequest,
    SizeName,
)
from ._resource import AsyncResource, build, poll_until_ready
from ._routes import ROUTES, validate_id, validate_index
from ._transport import Deadline, annotate
from .errors import (
    APIConnectionError,
    ConflictError,
    GettyAIError,
    InternalServerError,
    NotFoundError,
    ValidationError,
    make_status_error,
)

__all__ = ["Downloads"]

log = logging.getLogger("getty_ai_async.downloads")

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
_MAX_REDIRECTS = 5


def safe_filename(name: str) -> str:
    """A file name that cannot leave its folder or surprise a shell."""
    cleaned = _UNSAFE_NAME.sub("_", os.path.basename(name.replace("\\", "/"))).strip("._")
    if not cleaned:
        raise ValidationError("filename", f"{name!r} leaves nothing usable as a file name")
    return cleaned[:200]


class Downloads(AsyncResource):
    """Full-size downloads of generated images (1k or 4k)."""

    async def create(
        self,
        generation_request_id: str,
        index: int,
        *,
        size_name: SizeName | str = SizeName.SIZE_4K,
        project_code: str | None = None,
        notes: str | None = None,
        wait: bool = True,
        timeout: float | None = None,
    ) -> Download:
        """Request a download (PUT); a 202 is polled until the URL is ready.

        Each PUT is a purchase, so one whose reply never came is not sent again blindly:
        ``GET .../download`` tells whether it took effect (200 or 202: it did), and only a
        404 (no download started) leads to another PUT. A 409 (this image's download is
        already in progress) is treated as pending. (The GET cannot tell sizes apart: if
        another size of this image was bought before, that download may be what it shows.)
        """
        path_params = self._path_params(generation_request_id, index)
        request = build(
            DownloadRequest, size_name=size_name, project_code=project_code, notes=notes
        )
        download = await self._buy(generation_request_id, index, path_params, request.to_body())
        if not download.is_pending or not wait:
            return download
        return await poll_until_ready(
            lambda: self.get(generation_request_id, index),
            lambda download: download.is_pending,
            generation_request_id=generation_request_id,
            interval=self._client.poll_interval,
            timeout=self._client.wait_timeout if timeout is None else timeout,
            what="download",
        )

    async def _buy(
        self,
        generation_request_id: str,
        index: int,
        path_params: dict[str, str | int],
        body: object,
    ) -> Download:
        """PUT the download, sending it again only once the service says it did not happen."""
        transport = self._transport
        route = ROUTES["download_create"]
        deadline = Deadline.after(transport.policy.max_retry_time)
        resent = 0
        while True:
            try:
                response = await transport.request(route, path_params=path_params, json=body)
            except ConflictError:
                return Download.from_response(None, pending=True)
            except (APIConnectionError, InternalServerError) as exc:
                if not _reply_lost(exc):
                    raise
                lost = exc
            else:
                return Download.from_response(_json(response), pending=response.status_code == 202)
            log.info(
                "no reply to the download PUT of %s image %d (%s); asking whether it took effect",
                generation_request_id,
                index,
                type(lost).__name__,
            )
            try:
                return await self.get(generation_request_id, index)
            except NotFoundError:
                pass  # no download was started: the PUT did not take effect
            except GettyAIError as exc:
                annotate(
                    lost,
                    f"not sent again: it may have been bought, and asking failed ({exc}): call "
                    "downloads.get() to find out before buying again",
                )
                raise lost from exc
            resent += 1
            if resent > transport.policy.max_retries or not await deadline.sleep(
                transport.backoff(resent)
            ):
                annotate(lost, "not sent again: the service reports no download started")
                raise lost
            log.info("the download PUT did not take effect; sending it again")

    async def get(self, generation_request_id: str, index: int) -> Download:
        """One GET of a download; `is_pending` while the service still answers 202."""
        response = await self._transport.request(
            ROUTES["download_get"], path_params=self._path_params(generation_request_id, index)
        )
        return Download.from_response(_json(response), pending=response.status_code == 202)

    async def sizes(self, generation_request_id: str, index: int) -> list[DownloadSize]:
        """The sizes (1k, 4k) this image can be downloaded at, with pixel dimensions."""
        response = await self._transport.request(
            ROUTES["download_sizes"], path_params=self._path_params(generation_request_id, index)
        )
        return DownloadSizes.model_validate(response.json()).download_sizes or []

    async def redownload(
        self,
        generated_asset_id: str,
        *,
        size_name: SizeName | str = SizeName.SIZE_4K,
        product_id: int | None = None,
        project_code: str | None = None,
        notes: str | None = None,
    ) -> Download:
        """Download again an asset bought before (`Download.generated_asset_id`)."""
        request = build(
            RedownloadRequest,
            generated_asset_id=generated_asset_id,
            size_name=size_name,
            product_id=product_id,
            project_code=project_code,
            notes=notes,
        )
        try:
            response = await self._transport.request(ROUTES["redownload"], json=request.to_body())
        except (APIConnectionError, InternalServerError) as exc:
            if _reply_lost(exc):
                annotate(
                    exc,
                    "not sent again: it may have been bought, and nothing tells "
                    "whether a redownload took effect",
                )
            raise
        return Download.from_response(_json(response), pending=False)

    async def save(
        self,
        generation_request_id: str,
        index: int,
        directory: str | os.PathLike[str] = ".",
        *,
        size_name: SizeName | str = SizeName.SIZE_4K,
        filename: str | None = None,
        project_code: str | None = None,
        notes: str | None = None,
        timeout: float | None = None,
    ) -> Path:
        """Download the image into `directory` and return the file's path.

        The bytes stream to a temporary file in the same folder, renamed when complete,
        so a crash never leaves a truncated image under the final name.
        """
        download = await self.create(
            generation_request_id,
            index,
            size_name=size_name,
            project_code=project_code,
            notes=notes,
            timeout=timeout,
        )
        if not download.url:
            raise ValidationError("url", "the service returned a download without a URL")
        stem = filename or f"{generation_request_id}_{index}_{SizeName(size_name).value}"
        return await self.fetch(download.url, directory, safe_filename(stem))

    async def fetch(self, url: str, directory: str | os.PathLike[str], filename: str) -> Path:
        """Stream `url` into `directory/filename` (extension added from the content type).

        Credentials go only to the API's own host; a CDN URL gets a bare request.
        """
        folder = await anyio.Path(directory).resolve()
        await folder.mkdir(parents=True, exist_ok=True)
        name = safe_filename(filename)
        transport = self._transport
        return await transport.call_with_retries(
            lambda _: self._stream_to(url, folder, name),
            lambda exc, attempt: transport.retry_decision(exc, attempt, idempotent=True),
        )

    async def _stream_to(self, url: str, folder: anyio.Path, name: str) -> Path:
        transport = self._transport
        partial = folder / f".{name}.{uuid.uuid4().hex}.part"
        try:
            for hop in range(_MAX_REDIRECTS + 1):
                # Redirects are followed here, one request per hop, so that `transport.auth`
                # decides per host: a CDN hop never sees the API's credentials.
                async with transport.http.stream(
                    "GET", url, auth=transport.auth, follow_redirects=False
                ) as response:
                    if response.has_redirect_location and hop < _MAX_REDIRECTS:
                        url = str(response.url.join(response.headers["location"]))
                        continue
                    if not response.is_success:
                        await response.aread()
                        raise make_status_error(response)
                    content_type = response.headers.get("content-type", "").split(";")[0].strip()
                    suffix = "" if Path(name).suffix else _EXTENSIONS.get(content_type, "")
                    async with await anyio.open_file(partial, "wb") as file:
                        async for chunk in response.aiter_bytes():
                            await file.write(chunk)
                break
            target = folder / (name + suffix)
            await partial.rename(target)
            return Path(target)
        except httpx.TransportError as exc:
            # Download URLs are signed: the query string is a credential, keep it out.
            shown = shown_url(url)
            request = httpx.Request("GET", shown)
            raise APIConnectionError(f"download of {shown} failed: {exc}", request=request) from exc
        finally:
            # Shielded: on cancellation the cleanup's own awaits would be cancelled too.
            with anyio.CancelScope(shield=True):
                await partial.unlink(missing_ok=True)

    @staticmethod
    def _path_params(generation_request_id: str, index: int) -> dict[str, str | int]:
        return {
            "generation_request_id": validate_id("generation_request_id", generation_request_id),
            "index": validate_index(index),
        }


def _reply_lost(exc: APIConnectionError | InternalServerError) -> bool:
    """The request may have taken effect, but its reply never came back."""
    if isinstance(exc, InternalServerError):
        return exc.status_code == 504
    return exc.may_have_been_sent


def _json(response: httpx.Response) -> object:
    """202s on downloads have no body; 200s carry JSON."""
    return response.json() if response.content else None
