"""Keyword options of the headline calls as TypedDicts, so that type checkers catch typos.

``client.generate("...", aspect_ration="16:9")`` or ``AsyncGettyAI.sandbox(pending_secondz=1)``
type-check as errors under ``mypy --strict`` with these (`Unpack`). They repeat the
signatures they describe; tests/unit/test_typing.py checks that they stay in step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

import httpx

from ._backends import HttpBackend
from ._generations import SubmitOptions
from ._lease import Limiter
from ._limiter import MaxPending
from ._models import AspectRatio, DepthOfField, LensType, MediaType, Mood
from ._poller import PollStrategy
from ._transport import RetryPolicy

if TYPE_CHECKING:
    from .sandbox._config import Duration

__all__ = ["ClientOptions", "GenerateOptions", "SandboxOptions"]


class GenerateOptions(SubmitOptions, total=False):
    """Keyword options of `AsyncGettyAI.generate` (those of `generations.create`)."""

    negative_prompt: str | None
    seed: int | None
    aspect_ratio: AspectRatio | str | None
    media_type: MediaType | str | None
    mood: Mood | str | None
    lens_type: LensType | str | None
    depth_of_field: DepthOfField | str | None


class _ClientSettings(TypedDict, total=False):
    """The client options `AsyncGettyAI.sandbox` passes on (it sets the URLs and transport)."""

    api_key: str | None
    api_secret: str | None
    username: str | None
    password: str | None
    refresh_token: str | None
    access_token: str | None
    max_pending: MaxPending | None
    limiter: Limiter | None
    max_requests_per_second: float | None
    poll_interval: float
    wait_timeout: float
    lease_timeout: float | None
    not_found_grace: float
    history_grace: float
    poll_strategy: PollStrategy
    timeout: float | httpx.Timeout | None
    max_retries: int | None
    max_retry_time: float | None
    retry_policy: RetryPolicy | None
    limits: httpx.Limits | None
    allow_insecure_http: bool


class ClientOptions(_ClientSettings, total=False):
    """Keyword arguments of `AsyncGettyAI` (for code that builds clients for others)."""

    base_url: str | None
    token_url: str | None
    http_client: httpx.AsyncClient | None
    transport: httpx.AsyncBaseTransport | None
    http_backend: HttpBackend | None


class SandboxOptions(_ClientSettings, total=False):
    """Keyword arguments of `AsyncGettyAI.sandbox`: client options plus the fields of
    `getty_ai_async.sandbox.SandboxConfig` and `FaultConfig`."""

    # SandboxConfig
    seed: int
    pending_seconds: Duration
    download_pending_seconds: Duration
    time_scale: float
    pending_limit: int | None
    qps: float | None
    qps_burst: int | None
    retry_after: float | None
    require_token: bool
    token_ttl: float
    api_keys: dict[str, str] | None
    blocked_rate: float
    images_per_generation: int
    retention_seconds: float
    upload_ttl: float
    keep_history: bool
    api_base_url: str
    token_url: str
    cdn_base_url: str
    # FaultConfig
    error_rate: float
    route_error_rates: dict[str, float]
    error_status: int
    latency: Duration
    drop_rate: float
    route_drop_rates: dict[str, float]
    drop_after_processing: bool
    slow: bool
    slow_seconds: float
