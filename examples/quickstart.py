"""Quickstart: generate images for one prompt and print their URLs.

    python examples/quickstart.py "a red fox curled up in fresh snow"

It runs against the built-in sandbox, so it works with no Getty account. To use your
account instead, set GETTY_API_KEY and GETTY_API_SECRET, and GETTY_USE_REAL_API=1.
"""

from __future__ import annotations

import os
import sys

import anyio

from getty_ai_async import AsyncGettyAI, Generation


def make_client() -> AsyncGettyAI:
    """The real API only when asked for explicitly; the in-process sandbox otherwise."""
    if os.environ.get("GETTY_USE_REAL_API") == "1" and os.environ.get("GETTY_API_KEY"):
        return AsyncGettyAI()  # credentials from GETTY_API_KEY / GETTY_API_SECRET
    # Simulated generations take 2 s; at time_scale=0.1 that is 0.2 s of real time.
    return AsyncGettyAI.sandbox(pending_seconds=2.0, time_scale=0.1, poll_interval=0.05)


async def main(prompt: str = "a red fox curled up in fresh snow") -> Generation:
    """Generate, wait through the service's 202s, print the result."""
    async with make_client() as client:
        generation = await client.generate(prompt, aspect_ratio="16:9")
    print(f"generation {generation.generation_request_id} (seed {generation.seed})")
    for image in generation.images:
        print(f"  [{image.index}] {image.url}")
    for image in generation.blocked:
        print(f"  [{image.index}] blocked by the AI generation policy")
    return generation


if __name__ == "__main__":
    anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else "a red fox curled up in fresh snow")
