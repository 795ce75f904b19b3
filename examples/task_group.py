"""One client shared by many tasks of an anyio task group.

    python examples/task_group.py [OUT_DIR]

Each task generates an image set and downloads its first image. They share the
client's connection pool, token and pending-generation cap, so starting twenty tasks
never puts more than `max_pending` generations in flight: the rest wait for a slot.
The task group also gives structured cancellation: if one task fails, the others are
cancelled and the error comes out of the ``async with`` block.

Uses the sandbox unless GETTY_USE_REAL_API=1 and GETTY_API_KEY are set.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import anyio

from getty_ai_async import AsyncGettyAI, SizeName

SCENES = {
    "fox": "a red fox curled up in fresh snow",
    "lighthouse": "a lighthouse on a rocky coast at dusk",
    "ramen": "a bowl of steaming ramen seen from above",
    "bicycle": "a vintage bicycle against a yellow wall",
    "owl": "a snowy owl on a fence post at dawn",
    "tram": "a futuristic tram gliding through a city garden",
}
MAX_PENDING = 3


def make_client() -> AsyncGettyAI:
    if os.environ.get("GETTY_USE_REAL_API") == "1" and os.environ.get("GETTY_API_KEY"):
        return AsyncGettyAI(max_pending=MAX_PENDING)
    return AsyncGettyAI.sandbox(
        pending_seconds=(2.0, 4.0),
        download_pending_seconds=1.0,
        time_scale=0.05,
        max_pending=MAX_PENDING,
        poll_interval=0.02,
    )


@dataclass(frozen=True)
class Made:
    name: str
    generation_request_id: str
    file: Path


async def make_one(
    client: AsyncGettyAI, name: str, prompt: str, out: Path, made: list[Made]
) -> None:
    """Generate, then download the first image that was not blocked."""
    generation = await client.generate(prompt, aspect_ratio="4:3")
    if not generation.images:
        print(f"{name}: every image was blocked")
        return
    file = await client.downloads.save(
        generation.generation_request_id,
        generation.images[0].index,
        out,
        size_name=SizeName.SIZE_1K,
        filename=name,
    )
    made.append(Made(name, generation.generation_request_id, file))
    print(f"{name}: {file}  (pending slots in use: {client.limiter.in_use}/{client.limiter.limit})")


async def main(out: Path = Path("task-group-out")) -> list[Made]:
    """Run one task per scene; all of them share one client."""
    made: list[Made] = []
    async with make_client() as client:
        async with anyio.create_task_group() as group:
            for name, prompt in SCENES.items():
                group.start_soon(make_one, client, name, prompt, out, made)
        # The task group has waited for every task: the client can close now.
        if client.simulator is not None:
            peak = client.simulator.stats.peak_pending
            print(f"peak pending generations seen by the sandbox: {peak} (cap {MAX_PENDING})")
    return made


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]) if len(sys.argv) > 1 else Path("task-group-out"))
