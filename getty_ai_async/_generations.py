"""`client.generations`: create images and every edit of them, then wait for the result."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

import anyio

from ._fanout import GenerationRun
from ._limiter import Slot
from ._models import (
    AspectRatio,
    BackgroundGenerationRequest,
    BackgroundRemovalRequest,
    DepthOfField,
    ExtendRequest,
    Generation,
    GenerationRequest,
    InfluenceColorRequest,
    InfluenceCompositionRequest,
    LensType,
    MediaType,
    Mood,
    ReferenceGeneration,
    RefineRequest,
    RemoveObjectRequest,
    VariationRequest,
    _Request,
)
from ._resource import AsyncResource, build, poll_until_ready
from ._routes import ROUTES, Route, validate_id, validate_index
from ._transport import retry_after_seconds
from .errors import GettyAIError, GoneError, NotFoundError, RateLimitError, ValidationError

if TYPE_CHECKING:
    from ._client import AsyncGettyAI

__all__ = ["Generations", "InfluenceOptions", "SubmitOptions"]


class SubmitOptions(TypedDict, total=False):
    """Keyword options of every call that creates a generation."""

    product_id: int | None
    """Which AI Generation product to charge, when the account has several."""
    project_code: str | None
    """Required by some products, forbidden by others."""
    notes: str | None
    """Free text some products require."""
    wait: bool
    """Poll a 202 until the images are ready (default True); False returns at once."""
    timeout: float | None
    """Polling deadline in seconds (default: the client's `wait_timeout`)."""


class InfluenceOptions(SubmitOptions, total=False):
    """`SubmitOptions` plus what the influence-by-image calls share."""

    prompt: str | None
    negative_prompt: str | None
    media_type: MediaType | str | None
    mood: Mood | str | None
    seed: int | None


def _body_fields(options: SubmitOptions) -> dict[str, Any]:
    """The options that go into the request body: all but wait and timeout."""
    return {name: value for name, value in options.items() if name not in ("wait", "timeout")}


def _reference(
    asset_id: str | None, generation_request_id: str | None, index: int | None
) -> dict[str, Any]:
    """Turn the friendly `asset_id` / `generation_request_id`+`index` pair into the wire form."""
    if generation_request_id is None:
        if index is not None:
            raise ValidationError(
                "generation_request_id", "index given without generation_request_id"
            )
        return {"reference_asset_id": asset_id}
    if index is None:
        raise ValidationError("index", "required with generation_request_id")
    return {
        "reference_asset_id": asset_id,
        "reference_generation": build(
            ReferenceGeneration, generation_request_id=generation_request_id, index=index
        ),
    }


class Generations(AsyncResource):
    """Text-to-image generation, edits (refine, extend, variations, ...) and polling."""

    def __init__(self, client: AsyncGettyAI) -> None:
        super().__init__(client)
        self._ended = anyio.Event()

    def _generation_ended(self) -> None:
        """A poll saw one of this client's generations end: the account has room again."""
        self._ended.set()
        self._ended = anyio.Event()

    async def create(
        self,
        prompt: str | GenerationRequest,
        *,
        negative_prompt: str | None = None,
        seed: int | None = None,
        aspect_ratio: AspectRatio | str | None = None,
        media_type: MediaType | str | None = None,
        mood: Mood | str | None = None,
        lens_type: LensType | str | None = None,
        depth_of_field: DepthOfField | str | None = None,
        **options: Unpack[SubmitOptions],
    ) -> Generation:
        """Generate images from a prompt (or a prepared `GenerationRequest`).

        With ``wait=True`` (the default) a 202 is polled until the images are ready;
        with ``wait=False`` the pending `Generation` comes back at once.
        """
        fields: dict[str, Any] = {
            "negative_prompt": negative_prompt,
            "seed": seed,
            "aspect_ratio": aspect_ratio,
            "media_type": media_type,
            "mood": mood,
            "lens_type": lens_type,
            "depth_of_field": depth_of_field,
        }
        if not isinstance(prompt, GenerationRequest):
            return await self._create(
                ROUTES["generate"], GenerationRequest, options, prompt=prompt, **fields
            )
        beside = [
            name for name, value in (fields | _body_fields(options)).items() if value is not None
        ]
        if beside:
            raise ValidationError(beside[0], "set it on the GenerationRequest, not beside it")
        return await self._create(ROUTES["generate"], prompt, options)

    async def get(self, generation_request_id: str) -> Generation:
        """One GET of a generation; check `is_pending` on the result."""
        validate_id("generation_request_id", generation_request_id)
        limiter = self._client._limiter
        try:
            response = await self._transport.request(
                ROUTES["get_generation"],
                path_params={"generation_request_id": generation_request_id},
            )
        except (NotFoundError, GoneError):
            limiter.finished(generation_request_id)
            self._generation_ended()
            raise
        generation = Generation.from_response(response.json(), pending=response.status_code == 202)
        if not generation.is_pending:
            limiter.finished(generation_request_id)
            self._generation_ended()
        return generation

    async def wait(
        self,
        generation_request_id: str,
        *,
        timeout: float | None = None,
        poll_interval: float | None = None,
    ) -> Generation:
        """Poll until the generation is ready; `GenerationTimeoutError` after `timeout` seconds."""
        validate_id("generation_request_id", generation_request_id)
        return await self._poll(generation_request_id, timeout, poll_interval, immediate=True)

    async def as_completed(
        self,
        generation_request_ids: Iterable[str],
        *,
        timeout: float | None = None,
        poll_interval: float | None = None,
    ) -> AsyncIterator[Generation]:
        """Poll many pending generations and yield each one as soon as it is ready.

        Polls are spread over the interval rather than sent in bursts. The first error
        (unknown id, expired, polling deadline) is raised after stopping the rest.
        """
        run = GenerationRun(
            self._client,
            generation_request_ids,
            return_exceptions=False,
            poll_interval=poll_interval,
            timeout=timeout,
            _resume_ids=True,
        )
        async with run:
            async for outcome in run:
                assert outcome.generation is not None
                yield outcome.generation

    async def variations(
        self, generation_request_id: str, index: int, **options: Unpack[SubmitOptions]
    ) -> Generation:
        """New images in the spirit of one image of an earlier generation."""
        path_params: dict[str, str | int] = {
            "generation_request_id": validate_id("generation_request_id", generation_request_id),
            "index": validate_index(index),
        }
        return await self._create(
            ROUTES["variations"], VariationRequest, options, path_params=path_params
        )

    async def refine(
        self,
        *,
        mask_url: str,
        asset_id: str | None = None,
        generation_request_id: str | None = None,
        index: int | None = None,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        **options: Unpack[SubmitOptions],
    ) -> Generation:
        """Repaint the masked area of a Getty asset or a generated image."""
        return await self._create(
            ROUTES["refine"],
            RefineRequest,
            options,
            reference=(asset_id, generation_request_id, index),
            mask_url=mask_url,
            prompt=prompt,
            negative_prompt=negative_prompt,
        )

    async def extend(
        self,
        *,
        asset_id: str | None = None,
        generation_request_id: str | None = None,
        index: int | None = None,
        left_percentage: float | None = None,
        right_percentage: float | None = None,
        top_percentage: float | None = None,
        bottom_percentage: float | None = None,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        **options: Unpack[SubmitOptions],
    ) -> Generation:
        """Extend an image past its borders; percentages >= 0, at least one > 0."""
        return await self._create(
            ROUTES["extend"],
            ExtendRequest,
            options,
            reference=(asset_id, generation_request_id, index),
            left_percentage=left_percentage,
            right_percentage=right_percentage,
            top_percentage=top_percentage,
            bottom_percentage=bottom_percentage,
            prompt=prompt,
            negative_prompt=negative_prompt,
        )

    async def remove_background(
        self,
        *,
        asset_id: str | None = None,
        generation_request_id: str | None = None,
        index: int | None = None,
        **options: Unpack[SubmitOptions],
    ) -> Generation:
        """Cut the subject out of a Getty asset or a generated image."""
        return await self._create(
            ROUTES["remove_background"],
            BackgroundRemovalRequest,
            options,
            reference=(asset_id, generation_request_id, index),
        )

    async def remove_object(
        self,
        *,
        mask_url: str,
        asset_id: str | None = None,
        generation_request_id: str | None = None,
        index: int | None = None,
        **options: Unpack[SubmitOptions],
    ) -> Generation:
        """Erase the masked object from a Getty asset or a generated image."""
        return await self._create(
            ROUTES["remove_object"],
            RemoveObjectRequest,
            options,
            reference=(asset_id, generation_request_id, index),
            mask_url=mask_url,
        )

    async def influence_color(
        self,
        *,
        asset_id: str | None = None,
        generation_request_id: str | None = None,
        index: int | None = None,
        file_registration_id: str | None = None,
        noise_level: float | None = None,
        **style: Unpack[InfluenceOptions],
    ) -> Generation:
        """Generate images whose colours follow a reference image (noise_level 0-1)."""
        return await self._create(
            ROUTES["influence_color"],
            InfluenceColorRequest,
            style,
            reference=(asset_id, generation_request_id, index),
            reference_file_registration_id=file_registration_id,
            noise_level=noise_level,
        )

    async def influence_composition(
        self,
        *,
        asset_id: str | None = None,
        generation_request_id: str | None = None,
        index: int | None = None,
        file_registration_id: str | None = None,
        influence_level: float | None = None,
        **style: Unpack[InfluenceOptions],
    ) -> Generation:
        """Generate images whose composition follows a reference image (influence_level 0-1)."""
        return await self._create(
            ROUTES["influence_composition"],
            InfluenceCompositionRequest,
            style,
            reference=(asset_id, generation_request_id, index),
            reference_file_registration_id=file_registration_id,
            influence_level=influence_level,
        )

    async def generate_background(
        self,
        *,
        file_registration_id: str,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        left_percentage: float | None = None,
        right_percentage: float | None = None,
        top_percentage: float | None = None,
        bottom_percentage: float | None = None,
        **options: Unpack[SubmitOptions],
    ) -> Generation:
        """Place a registered product image (category CustomerProduct) on a generated background."""
        return await self._create(
            ROUTES["generate_background"],
            BackgroundGenerationRequest,
            options,
            reference_file_registration_id=file_registration_id,
            prompt=prompt,
            negative_prompt=negative_prompt,
            left_percentage=left_percentage,
            right_percentage=right_percentage,
            top_percentage=top_percentage,
            bottom_percentage=bottom_percentage,
        )

    async def _create(
        self,
        route: Route,
        request: type[_Request] | _Request,
        options: SubmitOptions,
        *,
        path_params: dict[str, str | int] | None = None,
        reference: tuple[str | None, str | None, int | None] | None = None,
        **fields: Any,
    ) -> Generation:
        """Validate the request (unless prepared already), then `submit` it."""
        if isinstance(request, type):
            if reference is not None:
                fields |= _reference(*reference)
            request = build(request, **fields, **_body_fields(options))
        return await self.submit(
            route,
            request,
            path_params=path_params,
            wait=options.get("wait", True),
            timeout=options.get("timeout"),
        )

    async def submit(
        self,
        route: Route,
        request: _Request,
        *,
        path_params: dict[str, str | int] | None = None,
        wait: bool = True,
        timeout: float | None = None,
    ) -> Generation:
        """POST a generation-creating request under the pending cap, then wait if asked.

        The slot is taken before the POST and held until the generation ends; with
        ``wait=False`` it stays parked until a `get`/`wait` sees the generation finish.
        """
        limiter = self._client._limiter
        policy = self._transport.policy
        body = request.to_body()
        started = anyio.current_time()
        rate_limited = 0
        while True:
            slot = await self._acquire_slot()
            try:
                # Taken before the POST, so that a generation ending meanwhile is not missed.
                ended = self._ended
                try:
                    response = await self._transport.request(
                        route, path_params=path_params, json=body, retry_rate_limits=False
                    )
                except RateLimitError as exc:
                    limiter.rate_limited(slot)
                    delay = retry_after_seconds(exc.response, policy.max_retry_after)
                    # Without Retry-After the account's pending cap is full. While other
                    # generations of this client are pending at the service, their ends
                    # will make room: waiting for that is not a failed attempt, and only
                    # max_retry_time bounds it.
                    if delay is not None or limiter.accepted_count == 0:
                        rate_limited += 1
                    elapsed = anyio.current_time() - started
                    if rate_limited > policy.max_retries or elapsed > policy.max_retry_time:
                        raise
                else:
                    limiter.accepted(slot)
                    generation = Generation.from_response(
                        response.json(), pending=response.status_code == 202
                    )
                    if not generation.is_pending:
                        limiter.succeeded()
                        return generation
                    if not wait:
                        limiter.park(slot, generation.generation_request_id)
                        return generation
                    finished = await self._poll(generation.generation_request_id, timeout, None)
                    limiter.succeeded()
                    return finished
            finally:
                if not slot.parked:
                    limiter.release(slot)
            if delay is None:
                # Out of the slot: a 429 without Retry-After usually means the account's
                # pending cap is full, so retry when one of our generations ends. Not on
                # any slot release: a 429'd attempt releases its slot too, and waking on
                # that turned each 429 into an instant retry that 429'd again, using up
                # max_retries in a few milliseconds.
                with anyio.move_on_after(policy.rate_limit_wait):
                    await ended.wait()
            else:
                await anyio.sleep(delay)

    async def _acquire_slot(self) -> Slot:
        """A pending slot; if generations parked by ``wait=False`` fill the cap, check them.

        Nobody may poll those before this call returns (submit a batch with
        ``wait=False``, then wait for all of it), so rather than block until their slots
        time out, poll them in turn: a finished one gives its slot back.
        """
        limiter = self._client._limiter
        while (parked := limiter.next_parked()) is not None:
            slot = limiter.try_acquire()
            if slot is not None:
                return slot
            with contextlib.suppress(GettyAIError):
                await self.get(parked)
            if limiter.is_parked(parked):
                await anyio.sleep(self._client.poll_interval / max(1, limiter.parked_count))
        return await limiter.acquire()

    async def _poll(
        self,
        generation_request_id: str,
        timeout: float | None,
        poll_interval: float | None,
        *,
        immediate: bool = False,
    ) -> Generation:
        client = self._client
        return await poll_until_ready(
            lambda: self.get(generation_request_id),
            lambda generation: generation.is_pending,
            generation_request_id=generation_request_id,
            interval=client.poll_interval if poll_interval is None else poll_interval,
            timeout=client.wait_timeout if timeout is None else timeout,
            immediate=immediate,
        )
