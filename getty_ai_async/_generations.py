"""`client.generations`: create images and every edit of them, then wait for the result."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any, TypedDict, Unpack

import anyio

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
from ._poller import parse_generation
from ._resource import AsyncResource, build, check_positive
from ._routes import ROUTES, Route, validate_id, validate_index
from ._submission import SubmitState
from ._submission import submit as submit_generation
from .errors import ValidationError

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
        response = await self._transport.request(
            ROUTES["get_generation"],
            path_params={"generation_request_id": generation_request_id},
        )
        return parse_generation(response)

    async def wait(
        self,
        generation_request_id: str,
        *,
        timeout: float | None = None,
        poll_interval: float | None = None,
    ) -> Generation:
        """Poll until the generation is ready; `GenerationTimeoutError` after `timeout` seconds.

        The id joins the client's poller (polled once right away, then every interval)
        and is polled along with every other pending generation of this client.
        """
        validate_id("generation_request_id", generation_request_id)
        client = self._client
        return await client._poller.wait(
            generation_request_id,
            timeout=client.wait_timeout if timeout is None else check_positive("timeout", timeout),
            interval=client.poll_interval
            if poll_interval is None
            else check_positive("poll_interval", poll_interval),
            immediate=True,
        )

    async def as_completed(
        self,
        generation_request_ids: Iterable[str],
        *,
        timeout: float | None = None,
        poll_interval: float | None = None,
    ) -> AsyncIterator[Generation]:
        """Poll many pending generations and yield each one as soon as it is ready.

        Polls are spread over the interval rather than sent in bursts. The first error
        (unknown id, expired, polling deadline) is raised; the others stop being waited
        for (the client's poller still returns their leases when they finish).
        """
        client = self._client
        ids = [validate_id("generation_request_id", value) for value in generation_request_ids]
        wait_timeout = (
            client.wait_timeout if timeout is None else check_positive("timeout", timeout)
        )
        interval = (
            client.poll_interval
            if poll_interval is None
            else check_positive("poll_interval", poll_interval)
        )
        poller = client._poller
        send, receive = anyio.create_memory_object_stream[Generation | BaseException](len(ids))
        handles = []
        try:
            for generation_request_id in ids:
                handle = poller.subscribe(
                    generation_request_id,
                    send.send_nowait,
                    timeout=wait_timeout,
                    interval=interval,
                    poll_now=True,
                )
                handles.append((generation_request_id, handle))
            for _ in ids:
                result = await receive.receive()
                if isinstance(result, BaseException):
                    raise result
                yield result
        finally:
            for generation_request_id, handle in handles:
                poller.unsubscribe(generation_request_id, handle)
            send.close()
            receive.close()

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

        The lease taken before the POST belongs to the generation: the client's poller
        returns it when the service reports the generation finished, even when this
        call returned early (``wait=False``), timed out or was cancelled.
        """
        client = self._client
        state = SubmitState(label=f"{route.method} {route.name}")
        generation = await submit_generation(
            client,
            route,
            request.to_body(),
            state=state,
            limiters=[client.limiter],
            path_params=path_params,
        )
        if not generation.is_pending:
            for limiter, lease in state.leases:
                await limiter.release(lease, finished=True)
            return generation
        client._poller.track(generation.generation_request_id, state.leases, kind=route.name)
        if not wait:
            return generation
        return await client._poller.wait(
            generation.generation_request_id,
            timeout=client.wait_timeout if timeout is None else check_positive("timeout", timeout),
            interval=client.poll_interval,
        )
