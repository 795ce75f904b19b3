"""Tasks that outlive the call that starts them: the client's poller and a run's engine.

anyio has no detached tasks (a task group must be exited by the task that entered it,
which would tie the poller to whichever call happened to start it), but both event loops
do: ``asyncio.create_task`` and trio's system tasks. A background task here never lets
an exception out (it logs it); it can be cancelled from any task and awaited.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

__all__ = ["BackgroundTask", "ki_protected", "running_trio", "spawn"]

log = logging.getLogger("getty_ai_async")

# asyncio keeps only weak references to tasks: hold them until they end.
_running: set[Any] = set()


F = TypeVar("F", bound=Callable[..., Any])


# Functions to mark once trio is in use: importing trio costs a tenth of a second that
# asyncio users (most, and every CLI start) should not pay.
_unmarked: list[Callable[..., Any]] = []


def ki_protected(function: F) -> F:
    """Mark a coroutine function that runs in a background task as shielded from Ctrl-C.

    Under trio a `KeyboardInterrupt` is raised in whatever task runs unprotected code
    when it arrives; in a system task's child that crashes trio itself. Protected, it
    goes to the main task: the caller's ``except KeyboardInterrupt`` sees it. With trio
    not imported yet, the mark waits for the first background task under trio (trio
    >= 0.27 marks the function's code, so marking later reaches every reference).
    """
    trio = sys.modules.get("trio")
    if trio is None:
        _unmarked.append(function)
        return function
    marked: F = trio.lowlevel.enable_ki_protection(function)
    return marked


def _mark_unmarked() -> None:
    import trio.lowlevel

    while _unmarked:
        function = _unmarked.pop()
        if trio.lowlevel.enable_ki_protection(function) is not function:
            # trio < 0.27 wraps instead of marking: the references we hold stay bare.
            log.warning("trio >= 0.27 is needed for Ctrl-C to reach the main task")


class BackgroundTask:
    """A handle on a detached task: `cancel()` from anywhere, `await wait()` for its end."""

    __slots__ = ("_done", "_scope", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._scope = anyio.CancelScope()
        self._done = anyio.Event()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        self._scope.cancel()

    async def wait(self) -> None:
        await self._done.wait()

    @ki_protected
    async def _run(self, body: Callable[[], Awaitable[None]]) -> None:
        try:
            with self._scope:
                await body()
        except Exception:
            log.exception("background task %s failed", self.name)
        finally:
            self._done.set()


def running_trio() -> bool:
    """Whether the current task runs under trio (anyio no longer needs sniffio to tell)."""
    trio = sys.modules.get("trio")
    if trio is None:
        return False
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


def spawn(body: Callable[[], Awaitable[None]], *, name: str) -> BackgroundTask:
    """Run `body` in a task of its own on the current event loop (asyncio or trio)."""
    task = BackgroundTask(name)
    if running_trio():
        import trio.lowlevel

        _mark_unmarked()
        trio.lowlevel.spawn_system_task(task._run, body, name=name)
    else:
        import asyncio

        handle = asyncio.get_running_loop().create_task(task._run(body), name=name)
        _running.add(handle)
        handle.add_done_callback(_running.discard)
    return task
