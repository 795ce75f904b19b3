"""Purchases against the sandbox: a download PUT whose reply is lost is never bought twice."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from getty_ai_async import AsyncGettyAI, errors
from getty_ai_async.sandbox import Sandbox

SandboxClientFactory = Callable[..., AsyncGettyAI]


def sim(client: AsyncGettyAI) -> Sandbox:
    assert client.simulator is not None
    return client.simulator


@pytest.mark.parametrize("download_pending_seconds", [0, 1])
async def test_save_buys_once_when_every_put_reply_is_lost(
    make_sandbox_client: SandboxClientFactory, tmp_path: Path, download_pending_seconds: float
) -> None:
    """Issue 9.1: the PUT was replayed after its reply was lost; one save() bought 2 or more.

    Here the sandbox processes every download PUT and then drops the connection.
    """
    client = make_sandbox_client(
        pending_seconds=0, download_pending_seconds=download_pending_seconds
    )
    generation = await client.generate("a red fox in snow")
    faults = sim(client).faults
    faults.route_drop_rates = {"download_put": 1.0}
    faults.drop_after_processing = True

    path = await client.downloads.save(generation.generation_request_id, 0, tmp_path)

    stats = sim(client).stats
    assert stats.downloads == 1
    assert stats.count("download_put") == 1
    assert stats.count("download_get") >= 1
    assert path.stat().st_size > 0


async def test_put_dropped_before_it_took_effect_is_sent_again(
    make_sandbox_client: SandboxClientFactory,
) -> None:
    """Dropped before processing: GET says no download exists, so the PUT is resent."""
    client = make_sandbox_client(pending_seconds=0, download_pending_seconds=0)
    generation = await client.generate("a lighthouse")
    faults = sim(client).faults
    faults.route_drop_rates = {"download_put": 1.0}
    faults.drop_after_processing = False

    with pytest.raises(errors.APIConnectionError) as caught:
        await client.downloads.create(generation.generation_request_id, 0)

    stats = sim(client).stats
    retries = client._transport.policy.max_retries
    assert caught.value.may_have_been_sent
    assert stats.downloads == 0
    assert stats.count("download_put") == retries + 1
    assert stats.count("download_get", 404) == retries + 1

    faults.route_drop_rates = {}
    download = await client.downloads.create(generation.generation_request_id, 0)
    assert download.url
    assert sim(client).stats.downloads == 1
