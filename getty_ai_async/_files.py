"""`client.files` and `client.uploads`: bring your own images to the generator."""

from __future__ import annotations

import os
import re
import uuid

import anyio

from ._models import Category, FileRegistration, FileRegistrationRequest
from ._resource import AsyncResource, build
from ._routes import ROUTES, validate_id
from .errors import ValidationError

__all__ = ["Files", "Uploads"]

# What a path segment id may not contain (see `_routes.validate_id`); ".." is handled apart.
_NOT_IN_UPLOAD_NAME = re.compile(r"[\s/\\?#%]+")


def _upload_name(local_name: str) -> str:
    """An upload name derived from a local file's name ("my mask.jpg" -> "my_mask.jpg")."""
    name = _NOT_IN_UPLOAD_NAME.sub("_", local_name)
    while ".." in name:
        name = name.replace("..", ".")
    return name if name.strip("._") else f"{uuid.uuid4().hex}.jpg"


class Files(AsyncResource):
    """File registrations: an uploaded image becomes a `reference_file_registration_id`."""

    async def register(
        self, url: str, *, rights_claimed: bool, category: Category | str | None = None
    ) -> FileRegistration:
        """Register an uploaded file; `rights_claimed=True` states you own or license it."""
        request = build(
            FileRegistrationRequest, url=url, rights_claimed=rights_claimed, category=category
        )
        response = await self._transport.request(ROUTES["file_register"], json=request.to_body())
        return FileRegistration.model_validate(response.json())

    async def get(self, file_registration_id: str) -> FileRegistration:
        """A registration with its preview URLs."""
        response = await self._transport.request(
            ROUTES["file_get"],
            path_params={
                "file_registration_id": validate_id("file_registration_id", file_registration_id)
            },
        )
        return FileRegistration.model_validate(response.json())


class Uploads(AsyncResource):
    """Uploads of masks and reference images (`PUT /v3/search/by-image/uploads/{name}`)."""

    async def upload(
        self,
        source: bytes | str | os.PathLike[str],
        *,
        file_name: str | None = None,
        content_type: str = "image/jpeg",
    ) -> str:
        """Upload bytes or a file; returns the URL to pass as `mask_url` or registration `url`."""
        if isinstance(source, bytes):
            data = source
            name = file_name or f"{uuid.uuid4().hex}.jpg"
        else:
            path = anyio.Path(source)
            try:
                data = await path.read_bytes()
            except OSError as exc:
                raise ValidationError(
                    "source", f"cannot read {str(source)!r}: {exc.strerror}"
                ) from None
            # A local name is not chosen as an id: make it one rather than refuse the file.
            name = file_name or _upload_name(path.name)
        if not data:
            raise ValidationError("source", "the upload is empty")
        route = ROUTES["upload"]
        await self._transport.request(
            route,
            path_params={"file_name": name},
            content=data,
            headers={"Content-Type": content_type},
        )
        return self._transport.url(route.path(file_name=name))
