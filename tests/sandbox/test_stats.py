"""SandboxStats: live counters and snapshot()."""

from __future__ import annotations

import json

from sandbox_helpers import FROZEN, Connect, generate

from getty_ai_async.sandbox import Sandbox, SandboxStats


async def test_counters_and_snapshot(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=3.0, pending_limit=2, time_scale=FROZEN)
    stats = sandbox.stats
    assert isinstance(stats, SandboxStats)
    async with connect(sandbox) as client:
        ids = []
        for _ in range(3):
            reply = await client.post("/v3/ai/image-generations", json={"prompt": "p"})
            ids.append(reply.json().get("generation_request_id"))
        assert stats.current_pending("key") == 2
        assert stats.current_pending() == 2
        assert stats.current_pending("nobody") == 0
        await client.get(f"/v3/ai/image-generations/{ids[0]}")
        sandbox.advance(3.0)
        await client.get(f"/v3/ai/image-generations/{ids[0]}")
        assert stats.current_pending() == 0
        await client.get("/nowhere")
        await client.delete("/v3/ai/generation-history")

    snapshot = stats.snapshot()
    json.dumps(snapshot)  # plain data only
    assert snapshot["requests"] == {
        "token": {200: 1},
        "generate": {202: 2, 429: 1},
        "get_generation": {200: 1, 202: 1},
        "unknown": {404: 1, 405: 1},
    }
    assert snapshot["submissions"] == 2
    assert snapshot["submissions_attempted"] == 3
    assert snapshot["rate_limited_pending"] == 1
    assert snapshot["peak_pending"] == 2
    assert snapshot["peak_pending_by_account"] == {"key": 2}
    assert snapshot["current_pending"] == 0
    assert snapshot["polls"] == 2
    assert snapshot["polls_pending"] == 1
    assert snapshot["token_requests"] == snapshot["tokens_issued"] == 1
    assert stats.count("generate") == 3
    assert stats.count(status=202) == 3
    assert stats.count() == 8


async def test_peak_pending_is_the_highest_account_peak(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=10.0, pending_limit=None, time_scale=FROZEN)
    async with connect(sandbox) as client, connect(sandbox, key="other") as other:
        for _ in range(5):
            await client.post("/v3/ai/image-generations", json={"prompt": "p"})
        await other.post("/v3/ai/image-generations", json={"prompt": "p"})
    assert sandbox.stats.peak_pending == 5
    assert sandbox.stats.peak_pending_by_account == {"key": 5, "other": 1}
    assert sandbox.stats.current_pending() == 6


def test_snapshot_is_a_copy(sandbox: Sandbox) -> None:
    snapshot = sandbox.stats.snapshot()
    sandbox.stats.record_request("generate", 200)
    assert "generate" not in snapshot["requests"]
    assert sandbox.stats.snapshot()["requests"]["generate"] == {200: 1}


async def test_unauthorized_and_rate_limited_counts(connect: Connect) -> None:
    sandbox = Sandbox(pending_seconds=0, qps=1.0, time_scale=FROZEN)
    async with connect(sandbox) as client:
        await generate(client)
        await client.get("/v3/ai/generation-history")  # over the QPS budget
        del client.headers["Api-Key"]
        await client.get("/v3/ai/generation-history")
    snapshot = sandbox.stats.snapshot()
    assert snapshot["rate_limited_qps"] == 1
    assert snapshot["unauthorized"] == 1
    assert snapshot["requests"]["history"] == {401: 1, 429: 1}
