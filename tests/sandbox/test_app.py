"""Sandbox construction, routing of all spec paths, the ASGI surface, clock and memory."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import anyio
import httpx
import pytest
from sandbox_helpers import FROZEN, Connect, generate

from getty_ai_async.sandbox import ROUTE_NAMES, FaultConfig, Sandbox, SandboxConfig
from getty_ai_async.sandbox._ids import GenerationKey, IdCodec

# Every (method, path) of the spec, with the route name the sandbox gives it.
SPEC_OPERATIONS = [
    ("POST", "/v3/ai/image-generations", "generate"),
    ("GET", "/v3/ai/image-generations/ID", "get_generation"),
    ("POST", "/v3/ai/image-generations/ID/images/0/variations", "variations"),
    ("POST", "/beta/ai/file-registrations", "file_registration_create"),
    ("GET", "/beta/ai/file-registrations/ID", "file_registration_get"),
    ("POST", "/v3/ai/image-generations/refine", "refine"),
    ("POST", "/v3/ai/image-generations/extend", "extend"),
    ("POST", "/v3/ai/image-generations/background-removal", "background_removal"),
    ("POST", "/v3/ai/image-generations/object-removal", "object_removal"),
    ("POST", "/v3/ai/image-generations/influence-color-by-image", "influence_color"),
    ("POST", "/v3/ai/image-generations/influence-composition-by-image", "influence_composition"),
    ("POST", "/beta/ai/image-generations/background-generations", "background_generation"),
    ("GET", "/v3/ai/generation-history", "history"),
    ("GET", "/v3/ai/generation-history/ID", "history_item"),
    ("GET", "/v3/ai/image-generations/ID/images/0/download-sizes", "download_sizes"),
    ("PUT", "/v3/ai/image-generations/ID/images/0/download", "download_put"),
    ("GET", "/v3/ai/image-generations/ID/images/0/download", "download_get"),
    ("POST", "/v3/ai/redownloads", "redownload"),
    ("PUT", "/v3/search/by-image/uploads/x.jpg", "upload"),
]


async def test_every_spec_operation_has_a_named_route(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    assert len({path.replace("ID", "{id}") for _, path, _ in SPEC_OPERATIONS}) == 18
    for method, path, _ in SPEC_OPERATIONS:
        await client.request(method, path, json={})
    routes = {route for route, _ in sandbox.stats.requests}
    assert routes == {name for _, _, name in SPEC_OPERATIONS} | {"token"}
    assert routes | {"cdn", "unknown"} == ROUTE_NAMES


async def test_unknown_paths_and_methods(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v3/ai/nothing-here")
    assert missing.status_code == 404
    assert missing.json() == {"message": "Not Found"}
    wrong = await client.delete("/v3/ai/image-generations")
    assert wrong.status_code == 405


async def test_lifespan_messages_are_answered() -> None:
    sandbox = Sandbox()
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await sandbox({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_construction_forms() -> None:
    assert Sandbox().config == SandboxConfig()
    assert Sandbox(pending_limit=3).config.pending_limit == 3
    base = SandboxConfig(seed=4)
    tweaked = Sandbox(base, qps=2.0).config
    assert (tweaked.seed, tweaked.qps) == (4, 2.0)
    faults = FaultConfig(error_rate=0.1)
    assert Sandbox(faults=faults).faults is faults
    with pytest.raises(TypeError):
        Sandbox(pending=3)
    assert Sandbox.IN_PROCESS_BASE_URL == "https://api.sandbox.gettyimages.test"
    sandbox = Sandbox()
    assert sandbox.api_base_url == Sandbox.IN_PROCESS_BASE_URL
    assert sandbox.token_url == "https://auth.sandbox.gettyimages.test/oauth2/token"
    assert sandbox.cdn_base_url == "https://cdn.sandbox.gettyimages.test"
    assert "Sandbox(" in repr(sandbox)


@pytest.mark.parametrize(
    "fields",
    [
        {"time_scale": 0},
        {"pending_seconds": -1},
        {"pending_seconds": (3.0, 1.0)},
        {"blocked_rate": 1.5},
        {"qps": 0},
        {"qps_burst": 0},
        {"images_per_generation": 0},
    ],
)
def test_config_is_checked(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(fields))):
        SandboxConfig(**fields)


def test_advance_only_moves_forward() -> None:
    with pytest.raises(ValueError, match="forward"):
        Sandbox().advance(-1)


async def test_time_scale_runs_simulated_time_fast(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=30.0, time_scale=0.001)  # 30 s take 30 ms
    async with connect(sandbox) as client:
        reply = await client.post("/v3/ai/image-generations", json={"prompt": "p"})
        assert reply.status_code == 202
        await anyio.sleep(0.04)
        path = f"/v3/ai/image-generations/{reply.json()['generation_request_id']}"
        assert (await client.get(path)).status_code == 200


async def test_changing_time_scale_keeps_the_clock_monotonic(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=1.0, time_scale=0.001)
    async with connect(sandbox) as client:
        reply = await client.post("/v3/ai/image-generations", json={"prompt": "p"})
        path = f"/v3/ai/image-generations/{reply.json()['generation_request_id']}"
        await anyio.sleep(0.002)
        sandbox.config.time_scale = 1000.0  # now practically frozen
        assert (await client.get(path)).status_code == 200


def test_id_codec_round_trip_and_tampering() -> None:
    codec = IdCodec(seed=1)
    key = GenerationKey(
        seq=12, created_ms=5, ready_ms=2005, count=4, blocked=0b0101, seed=-7, look=99,
        width=4096, height=2304,
    )  # fmt: skip
    text = codec.encode(key)
    assert text.isalnum()
    assert text.islower()
    assert codec.decode(text) == key
    assert key.is_blocked(0)
    assert not key.is_blocked(1)
    assert IdCodec(seed=2).decode(text) is None
    assert codec.decode(text.upper()) is None
    assert codec.decode(text[:-1]) is None
    assert codec.decode(text[:-1] + ("a" if text[-1] != "a" else "b")) is None
    assert codec.decode("") is None


async def _call(sandbox: Sandbox, body: bytes) -> int:
    """One generate request straight through the ASGI interface (no httpx overhead)."""
    messages: list[Any] = []
    incoming = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: Any) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v3/ai/image-generations",
        "raw_path": b"/v3/ai/image-generations",
        "query_string": b"",
        "headers": [(b"api-key", b"bench"), (b"content-type", b"application/json")],
    }
    await sandbox(scope, receive, send)
    status: int = messages[0]["status"]
    return status


async def test_finished_generations_cost_no_memory_without_history() -> None:
    sandbox = Sandbox(pending_seconds=0, require_token=False, keep_history=False)
    bodies = [json.dumps({"prompt": f"prompt number {i}"}).encode() for i in range(3000)]
    await _call(sandbox, bodies[0])  # warm caches
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for body in bodies:
            assert await _call(sandbox, body) == 200
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert growth < 3000 * 8, growth  # well under 8 bytes per generation
    assert sandbox.stats.submissions == 3001


async def test_pending_bookkeeping_shrinks_as_generations_finish() -> None:
    sandbox = Sandbox(
        pending_seconds=1.0, pending_limit=None, require_token=False, time_scale=FROZEN
    )
    for i in range(500):
        assert await _call(sandbox, json.dumps({"prompt": f"p{i}"}).encode()) == 202
    assert sandbox.stats.current_pending("bench") == 500
    sandbox.advance(1.0)
    assert await _call(sandbox, b'{"prompt": "last"}') == 202
    assert sandbox.stats.current_pending() == 1


async def test_hundreds_of_requests_in_process_keep_no_history(connect: Connect) -> None:
    # How fast is for the benchmarks (benchmarks/transport.py); here: they all succeed.
    sandbox = Sandbox(pending_seconds=0, keep_history=False)
    async with connect(sandbox) as client:
        for i in range(500):
            await generate(client, prompt=f"p{i}")
    assert sandbox.stats.submissions == 500
    assert sandbox.stats.current_pending() == 0


def test_works_in_process_under_trio() -> None:
    async def main() -> list[int]:
        sandbox = Sandbox(pending_seconds=0, require_token=False, time_scale=0.001)
        sandbox.faults.latency = 5.0
        async with httpx.AsyncClient(
            transport=sandbox.transport(), base_url=sandbox.api_base_url, headers={"Api-Key": "k"}
        ) as client:
            statuses = [(await client.get("/v3/ai/generation-history")).status_code]
            sandbox.faults.drop_rate = 1.0
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get("/v3/ai/generation-history")
            return statuses

    assert anyio.run(main, backend="trio") == [200]
