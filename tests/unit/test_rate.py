"""The process's own requests-per-second budget: pacing, slowing down, its queue."""

from __future__ import annotations

import anyio
import pytest

from getty_ai_async._rate import RateBudget


async def test_the_wait_a_request_would_have_is_known_before_it_joins() -> None:
    budget = RateBudget(20)
    assert budget.queue_wait() == 0.0
    await budget.acquire()  # the first turn is now
    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(budget.acquire)
        await anyio.lowlevel.checkpoint()
        # Three turns 50 ms apart handed out after the first: the next is 0.2 s away.
        assert budget.queue_wait() == pytest.approx(0.2, abs=0.02)
        turn = anyio.current_time() + budget.queue_wait()
        await budget.acquire()
        assert anyio.current_time() >= turn - 0.001  # it waited exactly that long


async def test_a_429_slows_the_pace_and_lengthens_the_queue() -> None:
    budget = RateBudget(10)
    await budget.acquire()
    paced = budget.queue_wait()
    budget.throttled()
    assert budget.current_rate == pytest.approx(7.0)
    assert budget.queue_wait() == pytest.approx(paced, abs=0.01)  # granted turns stand
    async with anyio.create_task_group() as group:
        group.start_soon(budget.acquire)
        await anyio.lowlevel.checkpoint()
        assert budget.queue_wait() >= paced + 1 / 7.2
