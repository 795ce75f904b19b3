"""Pydantic models for every request and response schema of the AI Generator API.

Requests forbid unknown fields (a typo fails before any HTTP call); responses allow
them, so a field the service adds tomorrow does not break parsing today.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "AspectRatio",
    "AssetDetail",
    "BackgroundGenerationRequest",
    "BackgroundRemovalRequest",
    "Category",
    "DepthOfField",
    "Download",
    "DownloadRequest",
    "DownloadSize",
    "DownloadSizes",
    "ExtendRequest",
    "FileRegistration",
    "FileRegistrationRequest",
    "GeneratedImage",
    "Generation",
    "GenerationHistory",
    "GenerationHistoryItem",
    "GenerationHistoryResult",
    "GenerationOptions",
    "GenerationRequest",
    "GenerationType",
    "InfluenceColorRequest",
    "InfluenceCompositionRequest",
    "LensType",
    "MediaType",
    "Mood",
    "PreviewUrl",
    "RedownloadRequest",
    "ReferenceGeneration",
    "RefineRequest",
    "RemoveObjectRequest",
    "SizeName",
    "SourceGenerationRequest",
    "User",
    "VariationRequest",
]


class AspectRatio(StrEnum):
    """Width:height of generated images."""

    SQUARE = "1:1"
    PORTRAIT_3_4 = "3:4"
    LANDSCAPE_4_3 = "4:3"
    PORTRAIT_9_16 = "9:16"
    LANDSCAPE_16_9 = "16:9"


class MediaType(StrEnum):
    PHOTOGRAPHY = "photography"
    ILLUSTRATION = "illustration"


class Mood(StrEnum):
    BLACK_AND_WHITE = "black_and_white"
    WARM = "warm"
    COOL = "cool"
    NATURAL = "natural"
    VIVID = "vivid"
    DRAMATIC = "dramatic"
    BOLD = "bold"


class LensType(StrEnum):
    WIDE_ANGLE = "wide_angle"
    TELEPHOTO = "telephoto"


class DepthOfField(StrEnum):
    SHALLOW = "shallow"
    DEEP = "deep"


class SizeName(StrEnum):
    """Download size: longest side 1024 or 4096 pixels."""

    SIZE_1K = "1k"
    SIZE_4K = "4k"


class Category(StrEnum):
    IMAGE_REFERENCE = "ImageReference"
    CUSTOMER_PRODUCT = "CustomerProduct"


class GenerationType(StrEnum):
    TEXT_TO_IMAGE = "text_to_image"
    VARIATION = "variation"
    EXTEND = "extend"
    REFINE = "refine"
    BACKGROUND_REMOVAL = "background_removal"
    INFLUENCE_COLOR_BY_IMAGE = "influence_color_by_image"
    INFLUENCE_COMPOSITION_BY_IMAGE = "influence_composition_by_image"
    OBJECT_REMOVAL = "object_removal"
    INFLUENCE_OUTLINE_BY_IMAGE = "influence_outline_by_image"
    BACKGROUND_GENERATION = "background_generation"


NonEmptyStr = Annotated[str, StringConstraints(strip_whitespace=False, min_length=1)]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank_string", "must not be empty or only whitespace")
    return value


Prompt = Annotated[str, AfterValidator(_not_blank)]
Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
"""The spec's ``format: int32`` (seeds, product ids): larger values are refused locally."""
Percentage = Annotated[float, Field(ge=0, le=3.4e38, allow_inf_nan=False)]
Level = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Index = Annotated[int, Field(ge=0)]


# --------------------------------------------------------------------------- requests


class _Request(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        use_enum_values=True,
        use_attribute_docstrings=True,
        defer_build=True,
    )

    def to_body(self) -> dict[str, Any]:
        """The JSON body the service expects: unset fields left out."""
        return self.model_dump(mode="json", exclude_none=True)


class _BillingFields(_Request):
    product_id: Int32 | None = None
    """Which AI Generation product to charge, when the account has several."""
    project_code: str | None = None
    """Required by some products, forbidden by others."""
    notes: str | None = None
    """Free text some products require."""


class GenerationRequest(_BillingFields):
    """Text-to-image request (`POST /v3/ai/image-generations`)."""

    prompt: Prompt
    """What to generate; must not be empty."""
    negative_prompt: str | None = None
    """Concepts to exclude."""
    seed: Int32 | None = None
    """Reuse a previous generation's seed to reproduce its aesthetic."""
    aspect_ratio: AspectRatio | None = None
    media_type: MediaType | None = None
    mood: Mood | None = None
    lens_type: LensType | None = None
    depth_of_field: DepthOfField | None = None


class ReferenceGeneration(_Request):
    """Points at one image of an earlier generation."""

    generation_request_id: NonEmptyStr
    index: Index


class _Referenced(_BillingFields):
    reference_asset_id: NonEmptyStr | None = None
    """A Getty creative image id to work from."""
    reference_generation: ReferenceGeneration | None = None
    """Or an image of an earlier generation."""

    @model_validator(mode="after")
    def _exactly_one_reference(self) -> Self:
        given = [name for name in self._reference_fields() if getattr(self, name) is not None]
        if len(given) != 1:
            names = " or ".join(self._reference_fields())
            problem = f"{' and '.join(given)} given" if given else "none given"
            raise PydanticCustomError(
                "reference",
                "exactly one of {names} is required ({problem})",
                {
                    "names": names,
                    "problem": problem,
                    "field": (given or self._reference_fields())[0],
                },
            )
        return self

    @classmethod
    def _reference_fields(cls) -> tuple[str, ...]:
        return ("reference_asset_id", "reference_generation")


class _Prompted(_Request):
    prompt: str | None = None
    """What the new or changed part should show."""
    negative_prompt: str | None = None
    """Concepts to exclude."""


class _Margins(_Request):
    left_percentage: Percentage | None = None
    """How much to add on the left, as a fraction of the width (0.2 = 20%)."""
    right_percentage: Percentage | None = None
    top_percentage: Percentage | None = None
    bottom_percentage: Percentage | None = None


class RefineRequest(_Referenced, _Prompted):
    """Repaint the masked part of an image (`POST /v3/ai/image-generations/refine`)."""

    mask_url: NonEmptyStr
    """URL of an uploaded JPEG mask (see `uploads.upload`)."""


class ExtendRequest(_Referenced, _Prompted, _Margins):
    """Outpaint beyond the borders (`POST /v3/ai/image-generations/extend`)."""

    @model_validator(mode="after")
    def _some_extension(self) -> Self:
        sides = (
            self.left_percentage,
            self.right_percentage,
            self.top_percentage,
            self.bottom_percentage,
        )
        if not any(side for side in sides):
            raise PydanticCustomError(
                "extension",
                "at least one of left/right/top/bottom_percentage must be > 0",
                {"field": "left_percentage"},
            )
        return self


class BackgroundRemovalRequest(_Referenced):
    """`POST /v3/ai/image-generations/background-removal`."""


class RemoveObjectRequest(_Referenced):
    """`POST /v3/ai/image-generations/object-removal`."""

    mask_url: NonEmptyStr
    """URL of an uploaded mask covering the object to remove."""


class _InfluenceRequest(_Referenced, _Prompted):
    reference_file_registration_id: NonEmptyStr | None = None
    """Or a registered file (see `files.register`)."""
    media_type: MediaType | None = None
    mood: Mood | None = None
    seed: Int32 | None = None

    @classmethod
    def _reference_fields(cls) -> tuple[str, ...]:
        return ("reference_asset_id", "reference_generation", "reference_file_registration_id")


class InfluenceColorRequest(_InfluenceRequest):
    """`POST /v3/ai/image-generations/influence-color-by-image`."""

    noise_level: Level | None = None
    """0-1; higher means more different from the reference."""


class InfluenceCompositionRequest(_InfluenceRequest):
    """`POST /v3/ai/image-generations/influence-composition-by-image`."""

    influence_level: Level | None = None
    """0-1; higher means closer to the reference."""


class BackgroundGenerationRequest(_BillingFields, _Prompted, _Margins):
    """`POST /beta/ai/image-generations/background-generations`."""

    reference_file_registration_id: NonEmptyStr
    """A registered product image (category CustomerProduct)."""


class VariationRequest(_BillingFields):
    """Body of `POST .../images/{index}/variations`."""


class DownloadRequest(_Request):
    """Body of `PUT .../images/{index}/download`."""

    size_name: SizeName = SizeName.SIZE_4K
    project_code: str | None = None
    notes: str | None = None


class RedownloadRequest(_Request):
    """`POST /v3/ai/redownloads`."""

    generated_asset_id: NonEmptyStr
    size_name: SizeName = SizeName.SIZE_4K
    product_id: Int32 | None = None
    project_code: str | None = None
    notes: str | None = None


class FileRegistrationRequest(_Request):
    """`POST /beta/ai/file-registrations`."""

    url: NonEmptyStr
    rights_claimed: bool
    """You own or license the file."""
    category: Category | None = None


# -------------------------------------------------------------------------- responses


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True, defer_build=True)


class _Pollable(_Response):
    _pending: bool = PrivateAttr(default=False)

    @classmethod
    def from_response(cls, body: Any, *, pending: bool) -> Self:
        parsed = cls.model_validate(body if body is not None else {})
        parsed._pending = pending
        return parsed

    @classmethod
    def from_json(cls, content: bytes, *, pending: bool) -> Self:
        """`from_response` of a raw JSON body, parsed and validated in one pass."""
        parsed = cls.model_validate_json(content)
        parsed._pending = pending
        return parsed

    @property
    def is_pending(self) -> bool:
        """True while the service answered 202 (poll again later)."""
        return self._pending


class PreviewUrl(_Response):
    preview_size: str | None = None
    image_url: str | None = None
    width: int | None = None
    height: int | None = None


class GeneratedImage(_Response):
    """One image of a generation."""

    index: int
    is_blocked: bool = False
    """True when the result was blocked by the AI generation policy (no URL then)."""
    url: str | None = None
    preview_urls: list[PreviewUrl] | None = None


class AssetDetail(_Response):
    id: str | None = None


class Generation(_Pollable):
    """A generation: pending (only an id) or finished (with results)."""

    generation_request_id: str
    seed: int | None = None
    results: list[GeneratedImage] | None = None
    original_asset: AssetDetail | None = None

    @property
    def images(self) -> list[GeneratedImage]:
        """The images that were not blocked."""
        return [image for image in self.results or () if not image.is_blocked]

    @property
    def blocked(self) -> list[GeneratedImage]:
        """The images blocked by policy."""
        return [image for image in self.results or () if image.is_blocked]


class Download(_Pollable):
    """A download's URL (short-lived, often on a CDN host) and the asset id for redownloads."""

    url: str | None = None
    generated_asset_id: str | None = None


class DownloadSize(_Response):
    size_name: str | None = None
    width: int | None = None
    height: int | None = None


class DownloadSizes(_Response):
    download_sizes: list[DownloadSize] | None = None


class GenerationOptions(_Response):
    media_type: str | None = None
    aspect_ratio: str | None = None
    mood: str | None = None


class SourceGenerationRequest(_Response):
    source_generation_request_id: str | None = None
    source_generation_result_index: int | None = None


class User(_Response):
    username: str | None = None
    first_name: str | None = None
    middle_name: str | None = None
    last_name: str | None = None


class GenerationHistoryResult(_Response):
    index: int
    is_blocked: bool = False
    preview_urls: list[PreviewUrl] | None = None


class GenerationHistoryItem(_Response):
    """One past generation as recorded in the history."""

    generation_request_id: str
    seed: int | None = None
    generation_date: dt.datetime | None = None
    product_revoked_date: dt.datetime | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    product_id: int | None = None
    notes: str | None = None
    project_code: str | None = None
    generation_type: str | None = None
    generation_options: GenerationOptions | None = None
    source_generation_request: SourceGenerationRequest | None = None
    original_asset: AssetDetail | None = None
    results: list[GenerationHistoryResult] | None = None
    user: User | None = None


class GenerationHistory(_Response):
    """One page of the history and the total count."""

    generations: list[GenerationHistoryItem] = Field(default_factory=list)
    result_count: int = 0


class FileRegistration(_Response):
    """A registered file; use `id` as `reference_file_registration_id`."""

    id: str
    preview_urls: list[PreviewUrl] | None = None
