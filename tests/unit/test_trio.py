"""A few key paths under trio (pytest-asyncio only drives asyncio)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import anyio
import httpx
import pytest
import respx
import sniffio

from getty_ai_async import AsyncGettyAI, Generation, errors

from ._helpers import (
    GEN_ID,
    client_options,
    finished,
    pending,
    token_json,
    url,
)

POST_PATH = "/v3/ai/image-generations"
GET_PATH = f"/v3/ai/image-generations/{GEN_ID}"


def new_client(**overrides: object) -> AsyncGettyAI:
    return AsyncGettyAI(**client_options(**overrides))


def test_create_with_polling_under_trio(router: respx.MockRouter) -> None:
    post = router.post(url(POST_PATH)).respond(202, json=pending())
    poll = router.get(url(GET_PATH)).mock(
        side_effect=[
            respx.MockResponse(202, json=pending()),
            respx.MockResponse(200, json=finished()),
        ]
    )

    async def main() -> tuple[Generation, int]:
        assert sniffio.current_async_library() == "trio"
        async with new_client() as client:
            generation = await client.generations.create("a fox", aspect_ratio="1:1")
            return generation, client.limiter.in_use

    generation, in_use = anyio.run(main, backend="trio")
    assert post.call_count == 1
    assert poll.call_count == 2
    assert generation.is_pending is False
    assert in_use == 0


def test_token_single_flight_under_trio(router: respx.MockRouter) -> None:
    async def slow_token(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(0.02)
        return httpx.Response(200, json=token_json("tok-trio"))

    token = router.routes["token"].mock(side_effect=slow_token)
    api = router.get(url(GET_PATH)).respond(200, json=finished())

    async def main() -> None:
        async with new_client() as client, anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(client.generations.get, GEN_ID)

    anyio.run(main, backend="trio")
    assert token.call_count == 1
    assert api.call_count == 50
    assert {c.request.headers["Authorization"] for c in api.calls} == {"Bearer tok-trio"}


def test_retry_and_cancellation_under_trio(router: respx.MockRouter) -> None:
    router.get(url(GET_PATH)).mock(
        side_effect=[respx.MockResponse(503), respx.MockResponse(200, json=finished())]
    )
    router.post(url(POST_PATH)).respond(202, json=pending("gen-slow"))
    router.get(url("/v3/ai/image-generations/gen-slow")).respond(202, json=pending("gen-slow"))

    async def main() -> tuple[bool, bool, int]:
        async with new_client() as client:
            generation = await client.generations.get(GEN_ID)  # 503 then 200
            with anyio.move_on_after(0.03) as scope:
                await client.generations.create("slow")
            return generation.is_pending, scope.cancelled_caught, client.limiter.in_use

    is_pending, cancelled, in_use = anyio.run(main, backend="trio")
    assert is_pending is False
    assert cancelled is True
    assert in_use == 1  # still pending at the service: the poller keeps its lease


def test_polling_deadline_under_trio(router: respx.MockRouter) -> None:
    router.get(url(GET_PATH)).respond(202, json=pending())

    async def main() -> None:
        async with new_client() as client:
            await client.generations.wait(GEN_ID, timeout=0.02)

    with pytest.raises(errors.GenerationTimeoutError) as caught:
        anyio.run(main, backend="trio")
    assert caught.value.generation_request_id == GEN_ID


def test_lost_download_reply_and_retry_deadline_under_trio(router: respx.MockRouter) -> None:
    """The lost-PUT check, the bounded retry waits and the token fallback, under trio."""
    dl_path = f"/v3/ai/image-generations/{GEN_ID}/images/0/download"
    put = router.put(url(dl_path)).mock(side_effect=[httpx.ReadTimeout("slow")])
    router.get(url(dl_path)).mock(
        side_effect=[respx.MockResponse(202), respx.MockResponse(200, json={"url": "u"})]
    )
    router.get(url(GET_PATH)).respond(429, headers={"Retry-After": "30"})

    async def main() -> tuple[str | None, str]:
        async with new_client() as client:
            download = await client.downloads.create(GEN_ID, 0)
            started = anyio.current_time()
            with pytest.raises(errors.RateLimitError) as caught:
                await client.generations.get(GEN_ID)  # 30 s > max_retry_time: at once
            assert anyio.current_time() - started < 10.0  # far from the 30 s Retry-After
            return download.url, str(caught.value)

    download_url, message = anyio.run(main, backend="trio")
    assert download_url == "u"
    assert put.call_count == 1
    assert "max_retry_time" in message


def test_background_tasks_are_shielded_from_ctrl_c_even_when_trio_comes_later() -> None:
    # A fresh interpreter: the library first (trio not imported by it), trio afterwards.
    script = textwrap.dedent(
        """
        import sys
        import anyio
        import getty_ai_async._background as background
        assert "trio" not in sys.modules, "importing the library imported trio"

        seen = []

        @background.ki_protected  # as the library's own task bodies are, at import
        async def child():
            seen.append(trio.lowlevel.currently_ki_protected())

        import trio

        async def body():  # a system task: trio protects it, but not its children
            async with anyio.create_task_group() as group:
                group.start_soon(child)

        async def main():
            task = background.spawn(body, name="probe")
            await task.wait()

        trio.run(main)
        print(seen)
        """
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "[True]", done.stdout + done.stderr
