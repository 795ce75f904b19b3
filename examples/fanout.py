"""Fan-out: thousands of prompts through one client, results as they finish, with a journal.

    python examples/fanout.py                  # 1000 prompts against the sandbox
    python examples/fanout.py 5000 --journal run.sqlite
    FANOUT_COUNT=200 python examples/fanout.py

`generate_many` reads the prompts lazily (the generator below is never materialised),
keeps at most `max_pending` generations in flight, and yields each outcome in
completion order. The journal records every step: rerun the same command after a
crash and finished prompts are replayed, pending ones polled, and only the rest sent.
(The in-process sandbox forgets its generations when the process ends, so with it a
rerun replays what finished; resuming pending ones needs a real account or a sandbox
served with `getty-ai sandbox serve`.)

Uses the sandbox unless GETTY_USE_REAL_API=1 and GETTY_API_KEY are set.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio

from getty_ai_async import AsyncGettyAI

DEFAULT_COUNT = 1000
SUBJECTS = ("a red fox", "a lighthouse", "a bowl of ramen", "a vintage bicycle", "an owl")
PLACES = ("in fresh snow", "at dusk", "on a rooftop", "in a rainforest", "under neon lights")
STYLES = ("watercolor", "35mm film photo", "isometric illustration", "studio portrait")


def make_client(max_pending: int) -> AsyncGettyAI:
    if os.environ.get("GETTY_USE_REAL_API") == "1" and os.environ.get("GETTY_API_KEY"):
        return AsyncGettyAI(max_pending=max_pending)
    # A sandbox with a generous pending cap and fast simulated time: 5-30 simulated
    # seconds per generation become 50-300 ms.
    return AsyncGettyAI.sandbox(
        pending_limit=max_pending,
        pending_seconds=(5.0, 30.0),
        time_scale=0.01,
        max_pending=max_pending,
        poll_interval=0.05,
    )


def prompts(count: int) -> Iterator[str]:
    """`count` distinct prompts, produced one at a time."""
    combos = itertools.cycle(itertools.product(SUBJECTS, PLACES, STYLES))
    for number, (subject, place, style) in enumerate(itertools.islice(combos, count)):
        yield f"{subject} {place}, {style} (variant {number})"


@dataclass
class Summary:
    done: int = 0
    failed: int = 0
    blocked: int = 0
    replayed: int = 0
    images: int = 0
    seconds: float = 0.0
    submissions: int | None = None
    """POSTs that created a generation (sandbox only: the real API doesn't tell)."""
    peak_pending: int | None = None


async def main(
    count: int = DEFAULT_COUNT, journal: Path | None = None, max_pending: int = 64
) -> Summary:
    """Generate images for `count` prompts and print a progress line every 10 %."""
    summary = Summary()
    started = time.monotonic()
    async with make_client(max_pending) as client:
        run = client.generate_many(prompts(count), journal=journal)
        async with run:
            async for outcome in run:
                if outcome.error is not None:
                    summary.failed += 1
                    print(f"failed: {outcome.key}: {outcome.error}")
                elif outcome.generation is not None:
                    summary.done += 1
                    summary.images += len(outcome.generation.images)
                    summary.blocked += not outcome.generation.images
                summary.replayed += outcome.replayed
                finished = summary.done + summary.failed
                if finished % max(1, count // 10) == 0:
                    stats = run.stats
                    print(
                        f"{finished}/{count} finished, {stats.pending} pending, "
                        f"{stats.rate_limited} rate-limited submits so far"
                    )
        if client.simulator is not None:
            summary.submissions = client.simulator.stats.submissions
            summary.peak_pending = client.simulator.stats.peak_pending
    summary.seconds = time.monotonic() - started
    print(
        f"{summary.done} done ({summary.blocked} fully blocked, {summary.replayed} from the "
        f"journal), {summary.failed} failed, {summary.images} images in {summary.seconds:.1f}s"
    )
    return summary


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "count",
        type=int,
        nargs="?",
        default=int(os.environ.get("FANOUT_COUNT", DEFAULT_COUNT)),
        help=f"number of prompts (default: env FANOUT_COUNT or {DEFAULT_COUNT})",
    )
    parser.add_argument("--journal", type=Path, help="SQLite journal; rerun to resume")
    parser.add_argument("--max-pending", type=int, default=64)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = _arguments()
    anyio.run(main, arguments.count, arguments.journal, arguments.max_pending)
