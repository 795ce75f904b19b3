"""The nine generation-creating routes and the generation poll."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._config import sample_duration
from ._files import registration, uploaded
from ._history import HistoryRecord
from ._http import ApiError, Request, Response, json_response, parse_index
from ._ids import GenerationKey
from ._images import aspect_shape, extended_shape, generation_payload
from ._validation import (
    BACKGROUND_GENERATION,
    BACKGROUND_REMOVAL,
    EXTEND,
    GENERATE,
    INFLUENCE_COLOR,
    INFLUENCE_COMPOSITION,
    OBJECT_REMOVAL,
    REFINE,
    VARIATION,
    Schema,
    parse_body,
)

if TYPE_CHECKING:
    from ._core import Core

__all__ = ["CREATING_HANDLERS", "get_generation"]

_DEFAULT_ASPECT = "1:1"
_SIDES = ("left", "right", "top", "bottom")


@dataclass(slots=True)
class _Spec:
    """What one accepted request asks to create."""

    generation_type: str
    shape: tuple[int, int]
    body: dict[str, Any]
    aspect_ratio: str | None = None
    source: tuple[str, int] | None = None
    original_asset: str | None = None


def _derived_seed(draw: int, spec: _Spec, prompt: str | None) -> int:
    """A seed for a request that gave none: the sandbox's next random draw (its seed and
    sequence) mixed with what is asked, so different prompts get different seeds even
    in a fresh sandbox, and a run can be replayed exactly.
    """
    material = (
        f"{draw}\0{spec.generation_type}\0{prompt or ''}\0{spec.source}\0{spec.original_asset}"
    )
    digest = hashlib.blake2b(material.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def _create(core: Core, req: Request, spec: _Spec) -> Response:
    """Create the generation (unless the pending cap is full) and answer 200 or 202."""
    config = core.config
    account = req.account
    now = core.clock.now_ms()
    pending = core.pending.count(account, now)
    if config.pending_limit is not None and pending >= config.pending_limit:
        core.stats.rate_limited_pending += 1
        raise ApiError(429, "Too Many Requests")
    rng = core.results_rng
    delay_ms = int(sample_duration(rng, config.pending_seconds) * 1000)
    count = config.images_per_generation
    blocked = 0
    if config.blocked_rate > 0:
        blocked = sum(1 << i for i in range(count) if rng.random() < config.blocked_rate)
    body = spec.body
    prompt = body.get("prompt")
    # Drawn only without a seed, as before: the other random choices keep their order.
    seed = body["seed"] if "seed" in body else _derived_seed(rng.randrange(2**31), spec, prompt)
    key = GenerationKey(
        seq=core.issued,
        created_ms=now,
        ready_ms=now + delay_ms,
        count=count,
        blocked=blocked,
        seed=seed,
        look=zlib.crc32(f"{spec.generation_type}:{prompt or ''}".encode()) & 0xFFFF,
        width=spec.shape[0],
        height=spec.shape[1],
    )
    core.issued += 1
    generation_id = core.codec.encode(key)
    if delay_ms > 0:
        core.pending.add(account, key.ready_ms)
        core.stats.record_pending(account, pending + 1)
    if spec.original_asset is not None:
        core.original_assets[generation_id] = spec.original_asset
    if config.keep_history:
        core.history.add(
            account,
            HistoryRecord(
                generation_id=generation_id,
                created_ms=now,
                generation_type=spec.generation_type,
                prompt=prompt,
                negative_prompt=body.get("negative_prompt"),
                product_id=body.get("product_id"),
                notes=body.get("notes"),
                project_code=body.get("project_code"),
                media_type=body.get("media_type"),
                aspect_ratio=spec.aspect_ratio,
                mood=body.get("mood"),
                source=spec.source,
                original_asset=spec.original_asset,
            ),
        )
    core.stats.submissions += 1
    if delay_ms == 0:
        return json_response(200, generation_payload(core, generation_id, key))
    return json_response(202, {"generation_request_id": generation_id})


def _referenced(
    core: Core,
    req: Request,
    generation_type: str,
    body: dict[str, Any],
    file_category: str | None = None,
) -> _Spec:
    """Resolve exactly one of the body's references into a spec."""
    names = ["reference_asset_id", "reference_generation"]
    if file_category is not None:
        names.append("reference_file_registration_id")
    given = [name for name in names if name in body]
    if len(given) != 1:
        raise ApiError(400, f"Exactly one of {', '.join(names)} is required.")
    square = aspect_shape(_DEFAULT_ASPECT)
    if "reference_asset_id" in body:
        asset = body["reference_asset_id"]
        if not asset.strip():
            raise ApiError(400, "'reference_asset_id' must not be empty.")
        return _Spec(generation_type, square, body, original_asset=asset)
    if "reference_generation" in body:
        reference = body["reference_generation"]
        generation_id, index = reference["generation_request_id"], reference.get("index", 0)
        key = core.finished_image(generation_id, index)
        return _Spec(generation_type, (key.width, key.height), body, source=(generation_id, index))
    assert file_category is not None
    registration(core, req.account, body["reference_file_registration_id"], file_category)
    return _Spec(generation_type, square, body)


def generate(core: Core, req: Request) -> Response:
    """``POST /v3/ai/image-generations``."""
    body = parse_body(req.body, GENERATE)
    aspect = body.get("aspect_ratio", _DEFAULT_ASPECT)
    return _create(core, req, _Spec("text_to_image", aspect_shape(aspect), body, aspect))


def variations(core: Core, req: Request) -> Response:
    """``POST /v3/ai/image-generations/{id}/images/{index}/variations`` (body optional)."""
    generation_id, index = req.params["id"], parse_index(req.params["index"])
    key = core.finished_image(generation_id, index)
    body = parse_body(req.body, VARIATION, allow_empty=True)
    spec = _Spec("variation", (key.width, key.height), body, source=(generation_id, index))
    return _create(core, req, spec)


def _masked(schema: Schema, generation_type: str) -> Callable[[Core, Request], Response]:
    def handler(core: Core, req: Request) -> Response:
        body = parse_body(req.body, schema)
        spec = _referenced(core, req, generation_type, body)
        uploaded(core, req.account, body["mask_url"], "mask_url")
        return _create(core, req, spec)

    return handler


def extend(core: Core, req: Request) -> Response:
    """``POST /v3/ai/image-generations/extend``: percentages are fractions of the side."""
    body = parse_body(req.body, EXTEND)
    amounts = [body.get(f"{side}_percentage", 0.0) for side in _SIDES]
    if not any(amount > 0 for amount in amounts):
        names = ", ".join(f"{side}_percentage" for side in _SIDES)
        raise ApiError(400, f"At least one of {names} must be greater than 0.")
    spec = _referenced(core, req, "extend", body)
    spec.shape = extended_shape(spec.shape, *amounts)
    return _create(core, req, spec)


def background_removal(core: Core, req: Request) -> Response:
    """``POST /v3/ai/image-generations/background-removal``."""
    body = parse_body(req.body, BACKGROUND_REMOVAL)
    return _create(core, req, _referenced(core, req, "background_removal", body))


def _influence(schema: Schema, generation_type: str) -> Callable[[Core, Request], Response]:
    def handler(core: Core, req: Request) -> Response:
        body = parse_body(req.body, schema)
        return _create(core, req, _referenced(core, req, generation_type, body, "ImageReference"))

    return handler


def background_generation(core: Core, req: Request) -> Response:
    """``POST /beta/ai/image-generations/background-generations``."""
    body = parse_body(req.body, BACKGROUND_GENERATION)
    registration(core, req.account, body["reference_file_registration_id"], "CustomerProduct")
    spec = _Spec("background_generation", aspect_shape(_DEFAULT_ASPECT), body)
    return _create(core, req, spec)


def get_generation(core: Core, req: Request) -> Response:
    """``GET /v3/ai/image-generations/{id}``: 202 while pending, then the results."""
    core.stats.polls += 1
    generation_id = req.params["id"]
    key = core.lookup(generation_id)
    if not key.is_ready(core.clock.now_ms()):
        core.stats.polls_pending += 1
        return json_response(202, {"generation_request_id": generation_id})
    return json_response(200, generation_payload(core, generation_id, key))


CREATING_HANDLERS: dict[str, Callable[[Core, Request], Response]] = {
    "generate": generate,
    "variations": variations,
    "refine": _masked(REFINE, "refine"),
    "extend": extend,
    "background_removal": background_removal,
    "object_removal": _masked(OBJECT_REMOVAL, "object_removal"),
    "influence_color": _influence(INFLUENCE_COLOR, "influence_color_by_image"),
    "influence_composition": _influence(INFLUENCE_COMPOSITION, "influence_composition_by_image"),
    "background_generation": background_generation,
}
"""Handlers of the routes that create a generation, by route name."""
