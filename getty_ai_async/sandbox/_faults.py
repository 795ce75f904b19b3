"""Deciding which faults hit a request, and the exception that drops a connection."""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

from ._config import FaultConfig, sample_duration

__all__ = ["DroppedConnection", "FaultPlan", "plan_faults"]

DROP_MESSAGE = "Server disconnected without sending a response."


class DroppedConnection(httpx.RemoteProtocolError):
    """Raised by the app after ``http.response.start`` to cut the connection.

    In process, httpx.ASGITransport re-raises it, so the client sees the same
    RemoteProtocolError a real disconnect gives. Under uvicorn, an exception after the
    response started makes the server close the socket, and the client sees a
    RemoteProtocolError from its own HTTP stack.
    """

    def __init__(self) -> None:
        super().__init__(DROP_MESSAGE)


@dataclass(slots=True)
class FaultPlan:
    """The faults chosen for one request."""

    latency: float = 0.0
    error_status: int | None = None
    drop: bool = False
    drop_after_processing: bool = False
    slow: float = 0.0


def plan_faults(faults: FaultConfig, rng: random.Random, route: str) -> FaultPlan:
    """Draw this request's faults from the current FaultConfig."""
    plan = FaultPlan(latency=sample_duration(rng, faults.latency))
    error_rate = faults.route_error_rates.get(route, faults.error_rate)
    drop_rate = faults.route_drop_rates.get(route, faults.drop_rate)
    if error_rate > 0 and rng.random() < error_rate:
        plan.error_status = faults.error_status
    elif drop_rate > 0 and rng.random() < drop_rate:
        plan.drop = True
        share = float(faults.drop_after_processing)
        plan.drop_after_processing = share >= 1 or (share > 0 and rng.random() < share)
    if faults.slow:
        plan.slow = faults.slow_seconds
    return plan
