"""What the simulated service enforces (SandboxConfig) and which faults it injects (FaultConfig)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

__all__ = [
    "IN_PROCESS_BASE_URL",
    "IN_PROCESS_CDN_BASE_URL",
    "IN_PROCESS_TOKEN_URL",
    "ROUTE_NAMES",
    "Duration",
    "FaultConfig",
    "SandboxConfig",
    "sample_duration",
]

IN_PROCESS_BASE_URL = "https://api.sandbox.gettyimages.test"
IN_PROCESS_TOKEN_URL = "https://auth.sandbox.gettyimages.test/oauth2/token"  # noqa: S105 (a URL)
IN_PROCESS_CDN_BASE_URL = "https://cdn.sandbox.gettyimages.test"

_DAY = 86_400.0

#: Stable names of the sandbox's routes, as used by stats and by FaultConfig's per-route rates.
ROUTE_NAMES = frozenset(
    {
        "token",  # POST /oauth2/token
        "generate",  # POST /v3/ai/image-generations
        "get_generation",  # GET /v3/ai/image-generations/{id}
        "variations",  # POST /v3/ai/image-generations/{id}/images/{index}/variations
        "refine",  # POST /v3/ai/image-generations/refine
        "extend",  # POST /v3/ai/image-generations/extend
        "background_removal",  # POST /v3/ai/image-generations/background-removal
        "object_removal",  # POST /v3/ai/image-generations/object-removal
        "influence_color",  # POST /v3/ai/image-generations/influence-color-by-image
        "influence_composition",  # POST /v3/ai/image-generations/influence-composition-by-image
        "background_generation",  # POST /beta/ai/image-generations/background-generations
        "download_sizes",  # GET .../images/{index}/download-sizes
        "download_put",  # PUT .../images/{index}/download
        "download_get",  # GET .../images/{index}/download
        "redownload",  # POST /v3/ai/redownloads
        "history",  # GET /v3/ai/generation-history
        "history_item",  # GET /v3/ai/generation-history/{id}
        "upload",  # PUT /v3/search/by-image/uploads/{file-name}
        "file_registration_create",  # POST /beta/ai/file-registrations
        "file_registration_get",  # GET /beta/ai/file-registrations/{id}
        "cdn",  # GET/HEAD /cdn/... (image bytes)
        "unknown",  # anything else (404/405)
    }
)

Duration = float | tuple[float, float]
"""Simulated seconds: a fixed value or a ``(low, high)`` range drawn uniformly."""


def sample_duration(rng: random.Random, value: Duration) -> float:
    """Draw one duration from ``value`` (fixed or uniform range)."""
    if isinstance(value, tuple):
        low, high = value
        return rng.uniform(low, high)
    return value


def _check_duration(name: str, value: Duration) -> None:
    low, high = value if isinstance(value, tuple) else (value, value)
    if not 0 <= low <= high:
        raise ValueError(f"{name} must be >= 0 (and low <= high for a range), got {value!r}")


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")


@dataclass
class SandboxConfig:
    """Rules of the simulated Getty AI service.

    Durations are simulated seconds; the sandbox waits ``duration * time_scale`` real
    seconds. Header values that tell a client how long to wait (``Retry-After``) and the
    token reply's ``expires_in`` are converted to real seconds. The dataclass is mutable
    and a running sandbox reads it on every request, so changes apply at once.
    """

    seed: int = 0
    """Seeds every random choice (pending times, blocked results, ids, faults)."""
    pending_seconds: Duration = 2.0
    """How long a new generation answers 202; 0 makes the POST answer 200 at once."""
    download_pending_seconds: Duration = 1.0
    """How long a download PUT stays 202; 0 makes the PUT answer 200 at once."""
    time_scale: float = 1.0
    """Real seconds per simulated second (0.01 runs a 30 s generation in 0.3 s)."""
    pending_limit: int | None = 8
    """Per-account cap on concurrently pending generations (account = Api-Key value)."""
    qps: float | None = None
    """Per-account request rate limit in requests per simulated second (API routes only)."""
    qps_burst: int | None = None
    """Token-bucket size for ``qps``; None means ``max(1, ceil(qps))``."""
    retry_after: float | None = 1.0
    """Retry-After sent with QPS 429s (simulated seconds); None sends no header."""
    require_token: bool = True
    """Whether API routes need ``Authorization: Bearer <token>`` besides ``Api-Key``."""
    token_ttl: float = 1800.0
    """Lifetime of an access token."""
    api_keys: dict[str, str] | None = None
    """Accepted Api-Key -> secret; None accepts any non-empty key and secret."""
    blocked_rate: float = 0.0
    """Probability that each result image is ``is_blocked``."""
    images_per_generation: int = 4
    """Number of result images in every generation."""
    retention_seconds: float = 180 * _DAY
    """Age after which a generation's id answers 410."""
    upload_ttl: float = _DAY
    """Age after which an uploaded file can no longer be used as a mask or registration."""
    keep_history: bool = True
    """Record generations for the history routes (False keeps nothing per finished
    generation: ids are self-describing, see the package docstring)."""
    api_base_url: str = IN_PROCESS_BASE_URL
    """Base URL the sandbox is reached at; upload URLs (mask_url) must start with it."""
    token_url: str = IN_PROCESS_TOKEN_URL
    """Token URL clients should use (any host reaches the same app)."""
    cdn_base_url: str = IN_PROCESS_CDN_BASE_URL
    """Base of the image URLs the sandbox hands out (path prefix ``/cdn/``)."""

    def __post_init__(self) -> None:
        _check_duration("pending_seconds", self.pending_seconds)
        _check_duration("download_pending_seconds", self.download_pending_seconds)
        if self.time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {self.time_scale!r}")
        if self.pending_limit is not None and self.pending_limit < 0:
            raise ValueError(f"pending_limit must be >= 0 or None, got {self.pending_limit!r}")
        if self.qps is not None and self.qps <= 0:
            raise ValueError(f"qps must be > 0 or None, got {self.qps!r}")
        if self.qps_burst is not None and self.qps_burst < 1:
            raise ValueError(f"qps_burst must be >= 1 or None, got {self.qps_burst!r}")
        _check_rate("blocked_rate", self.blocked_rate)
        if self.images_per_generation < 1:
            raise ValueError("images_per_generation must be >= 1")

    @property
    def burst(self) -> int:
        """Effective token-bucket size for the QPS limit."""
        if self.qps_burst is not None:
            return self.qps_burst
        return max(1, math.ceil(self.qps or 1))


@dataclass
class FaultConfig:
    """Faults injected into replies, drawn from a generator seeded by ``SandboxConfig.seed``.

    Mutable while the sandbox runs. Per-route dictionaries are keyed by the names in
    ``ROUTE_NAMES`` and override the global rate for that route. Global rates apply to
    every route, including ``token`` and ``cdn``.
    """

    error_rate: float = 0.0
    """Probability of answering ``error_status`` before processing."""
    route_error_rates: dict[str, float] = field(default_factory=dict)
    error_status: int = 503
    latency: Duration = 0.0
    """Extra delay before processing (simulated seconds)."""
    drop_rate: float = 0.0
    """Probability of closing the connection without a complete reply."""
    route_drop_rates: dict[str, float] = field(default_factory=dict)
    drop_after_processing: bool | float = False
    """Drop after the request took effect (e.g. the generation exists) instead of before;
    a number between 0 and 1 is the share of drops that come after."""
    slow: bool = False
    """Hold every reply for ``slow_seconds`` after processing (the request takes effect)."""
    slow_seconds: float = 5.0

    def __post_init__(self) -> None:
        _check_rate("error_rate", self.error_rate)
        _check_rate("drop_rate", self.drop_rate)
        for name, rates in (
            ("route_error_rates", self.route_error_rates),
            ("route_drop_rates", self.route_drop_rates),
        ):
            for route, rate in rates.items():
                if route not in ROUTE_NAMES:
                    raise ValueError(f"{name}: unknown route {route!r}")
                _check_rate(f"{name}[{route!r}]", rate)
        if not 500 <= self.error_status <= 599:
            raise ValueError(f"error_status must be a 5xx code, got {self.error_status!r}")
        _check_duration("latency", self.latency)
        _check_rate("drop_after_processing", float(self.drop_after_processing))
        if self.slow_seconds < 0:
            raise ValueError("slow_seconds must be >= 0")
