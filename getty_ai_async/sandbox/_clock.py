"""The sandbox's virtual clock."""

from __future__ import annotations

import time

import anyio

from ._config import SandboxConfig

__all__ = ["Clock"]


class Clock:
    """Simulated seconds since the sandbox started: scaled real time plus ``advance()`` jumps.

    Reads ``config.time_scale`` on every call; when it changes, the clock is re-anchored
    so simulated time never jumps backwards.
    """

    def __init__(self, config: SandboxConfig) -> None:
        self._config = config
        self._scale = config.time_scale
        self._real_anchor = time.monotonic()
        self._sim_anchor = 0.0

    def now(self) -> float:
        """Current simulated time in seconds."""
        real = time.monotonic()
        scale = self._config.time_scale
        if scale != self._scale:
            self._sim_anchor += (real - self._real_anchor) / self._scale
            self._real_anchor = real
            self._scale = scale
        return self._sim_anchor + (real - self._real_anchor) / scale

    def now_ms(self) -> int:
        """Current simulated time in whole milliseconds."""
        return int(self.now() * 1000)

    def advance(self, seconds: float) -> None:
        """Jump simulated time forward."""
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        self._sim_anchor += seconds

    def to_real(self, seconds: float) -> float:
        """Convert a simulated duration to real seconds."""
        return seconds * self._config.time_scale

    async def sleep(self, seconds: float) -> None:
        """Wait a simulated duration in real time."""
        await anyio.sleep(self.to_real(seconds))
