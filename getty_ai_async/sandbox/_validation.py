"""Request-body schemas of the spec (all ``additionalProperties: false``) and their checker."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from ._http import ApiError

__all__ = [
    "BACKGROUND_GENERATION",
    "BACKGROUND_REMOVAL",
    "DOWNLOAD",
    "EXTEND",
    "FILE_REGISTRATION",
    "GENERATE",
    "INFLUENCE_COLOR",
    "INFLUENCE_COMPOSITION",
    "MEDIA_TYPES",
    "OBJECT_REMOVAL",
    "REDOWNLOAD",
    "REFINE",
    "VARIATION",
    "Schema",
    "parse_body",
]

ASPECT_RATIOS = ("1:1", "3:4", "4:3", "9:16", "16:9")
MEDIA_TYPES = ("photography", "illustration")
MOODS = ("black_and_white", "warm", "cool", "natural", "vivid", "dramatic", "bold")
LENS_TYPES = ("wide_angle", "telephoto")
DEPTHS_OF_FIELD = ("shallow", "deep")
CATEGORIES = ("ImageReference", "CustomerProduct")
SIZE_NAMES = ("1k", "4k")

_INT32 = (-(2**31), 2**31 - 1)


@dataclass(frozen=True)
class Field:
    """One property of a request schema."""

    kind: Literal["string", "integer", "number", "boolean", "object"]
    nullable: bool = True
    required: bool = False
    """Must be present and not null (and, for strings, not blank)."""
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    fields: Schema | None = None
    """Properties of a nested object."""


Schema = Mapping[str, Field]

_STR = Field("string")
_INT = Field("integer")
_NUM_NON_NEGATIVE = Field("number", minimum=0)


def _enum(*choices: str) -> Field:
    # Enum properties are $refs without "nullable" in the spec, so null is rejected.
    return Field("string", nullable=False, choices=choices)


def _required(spec: Field) -> Field:
    return replace(spec, required=True)


_COMMON: Schema = {"product_id": _INT, "project_code": _STR, "notes": _STR}
_REFERENCE_GENERATION = Field(
    "object",
    nullable=False,
    fields={
        "generation_request_id": _required(_STR),
        # int32 without "nullable": may be omitted (the service reads 0) but not null.
        "index": Field("integer", nullable=False),
    },
)
_REFERENCES: Schema = {"reference_asset_id": _STR, "reference_generation": _REFERENCE_GENERATION}
_PERCENTAGES: Schema = {
    f"{side}_percentage": _NUM_NON_NEGATIVE for side in ("left", "right", "top", "bottom")
}
_STYLE: Schema = {"media_type": _enum(*MEDIA_TYPES), "mood": _enum(*MOODS)}

GENERATE: Schema = {
    "prompt": _required(_STR),
    "seed": _INT,
    "negative_prompt": _STR,
    "aspect_ratio": Field("string", choices=ASPECT_RATIOS),
    **_STYLE,
    "lens_type": _enum(*LENS_TYPES),
    "depth_of_field": _enum(*DEPTHS_OF_FIELD),
    **_COMMON,
}
VARIATION: Schema = _COMMON
REFINE: Schema = {
    **_REFERENCES,
    "prompt": _STR,
    "negative_prompt": _STR,
    **_COMMON,
    "mask_url": Field("string", nullable=False, required=True),
}
EXTEND: Schema = {**_REFERENCES, "prompt": _STR, "negative_prompt": _STR, **_COMMON, **_PERCENTAGES}
BACKGROUND_REMOVAL: Schema = {**_REFERENCES, **_COMMON}
OBJECT_REMOVAL: Schema = {**_REFERENCES, **_COMMON, "mask_url": _required(_STR)}
_INFLUENCE: Schema = {
    **_REFERENCES,
    "reference_file_registration_id": _STR,
    "prompt": _required(_STR),
    "negative_prompt": _STR,
    **_STYLE,
    "seed": _INT,
    **_COMMON,
}
INFLUENCE_COLOR: Schema = {
    **_INFLUENCE,
    "noise_level": Field("number", required=True, minimum=0, maximum=1),
}
INFLUENCE_COMPOSITION: Schema = {
    **_INFLUENCE,
    "influence_level": Field("number", required=True, minimum=0, maximum=1),
}
BACKGROUND_GENERATION: Schema = {
    "reference_file_registration_id": _required(_STR),
    "prompt": _required(_STR),
    "negative_prompt": _STR,
    **_COMMON,
    **_PERCENTAGES,
}
DOWNLOAD: Schema = {
    "notes": _STR,
    "project_code": _STR,
    "size_name": Field("string", required=True, choices=SIZE_NAMES),
}
REDOWNLOAD: Schema = {
    "generated_asset_id": _required(_STR),
    "product_id": Field("integer", nullable=False),
    "size_name": Field("string", required=True, choices=SIZE_NAMES),
    "project_code": _STR,
    "notes": _STR,
}
FILE_REGISTRATION: Schema = {
    "url": _required(_STR),
    "rights_claimed": Field("boolean", required=True),
    "category": _enum(*CATEGORIES),
}


_FLOAT32_MAX = 3.4028234663852886e38
"""The spec's numbers are ``format: float``; larger values cannot be sent."""


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def parse_body(body: bytes, schema: Schema, *, allow_empty: bool = False) -> dict[str, Any]:
    """Decode a JSON object body and check it against ``schema``.

    Returns the present, non-null properties; raises ApiError(400) naming the field.
    """
    if not body.strip():
        if allow_empty:
            return {}
        raise ApiError(400, "A JSON request body is required.")
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"The request body is not valid JSON: {exc}") from None
    return _check_object(data, schema, "")


def _check_object(data: object, schema: Schema, prefix: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        where = f"'{prefix.rstrip('.')}'" if prefix else "The request body"
        raise ApiError(400, f"{where} must be a JSON object.")
    for name in data:
        if name not in schema:
            raise ApiError(400, f"'{prefix}{name}' is not a recognised field.")
    clean: dict[str, Any] = {}
    for name, spec in schema.items():
        path = prefix + name
        value = data.get(name)
        if value is None:
            if name in data and not spec.nullable:
                raise ApiError(400, f"'{path}' must not be null.")
            if spec.required:
                raise ApiError(400, f"'{path}' is required.")
            continue
        clean[name] = _check_value(value, spec, path)
    return clean


def _check_value(value: object, spec: Field, path: str) -> object:
    if spec.kind == "object":
        assert spec.fields is not None
        return _check_object(value, spec.fields, path + ".")
    if spec.kind == "boolean":
        if not isinstance(value, bool):
            raise ApiError(400, f"'{path}' must be a boolean.")
        return value
    if spec.kind == "string":
        if not isinstance(value, str):
            raise ApiError(400, f"'{path}' must be a string.")
        if spec.required and not value.strip():
            raise ApiError(400, f"'{path}' must not be empty.")
        if spec.choices is not None and value not in spec.choices:
            raise ApiError(400, f"'{path}' must be one of {', '.join(spec.choices)}.")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(400, f"'{path}' must be a number.")
    if spec.kind == "integer":
        if not isinstance(value, int):
            raise ApiError(400, f"'{path}' must be an integer.")
        if not _INT32[0] <= value <= _INT32[1]:
            raise ApiError(400, f"'{path}' is out of range for a 32-bit integer.")
    elif not abs(value) <= _FLOAT32_MAX:
        raise ApiError(400, f"'{path}' is out of range for a 32-bit float.")
    if spec.minimum is not None and value < spec.minimum:
        raise ApiError(400, f"'{path}' must be >= {spec.minimum:g}.")
    if spec.maximum is not None and value > spec.maximum:
        raise ApiError(400, f"'{path}' must be <= {spec.maximum:g}.")
    return value
