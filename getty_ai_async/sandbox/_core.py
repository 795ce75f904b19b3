"""State shared by the route handlers, and the lookups they all need."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from ._auth import TokenStore
from ._clock import Clock
from ._config import FaultConfig, SandboxConfig
from ._downloads import DownloadStore
from ._files import FileStore
from ._history import HistoryStore
from ._http import ApiError
from ._ids import GenerationKey, IdCodec
from ._limits import PendingTracker, RateLimiter
from ._stats import SandboxStats

__all__ = ["Core"]


class Core:
    """Everything a handler may read or change; one per Sandbox."""

    def __init__(self, config: SandboxConfig, faults: FaultConfig) -> None:
        self.config = config
        self.faults = faults
        self.clock = Clock(config)
        self.pending = PendingTracker()
        self.rate = RateLimiter()
        self.stats = SandboxStats(lambda account: self.pending.peek(account, self.clock.now_ms()))
        self.codec = IdCodec(config.seed)
        # Separate streams, so that e.g. turning on faults does not change which results
        # are blocked.
        self.results_rng = random.Random(f"{config.seed}:results")
        self.ids_rng = random.Random(f"{config.seed}:ids")
        self.faults_rng = random.Random(f"{config.seed}:faults")
        self.epoch = datetime.now(UTC).replace(microsecond=0)
        self.issued = 0
        """Generation ids issued so far; ids carry their sequence number."""
        self.tokens = TokenStore()
        self.history = HistoryStore()
        self.downloads = DownloadStore()
        self.files = FileStore()
        self.original_assets: dict[str, str] = {}
        """Generation id -> reference_asset_id, for generations made from a creative asset."""

    def new_hex_id(self) -> str:
        """A fresh 32-hex-digit id (tokens, file registrations, generated assets)."""
        return f"{self.ids_rng.getrandbits(128):032x}"

    def timestamp(self, ms: int) -> datetime:
        """Wall-clock time of simulated instant ``ms``."""
        return self.epoch + timedelta(milliseconds=ms)

    def sim_ms(self, moment: datetime) -> int:
        """Simulated instant of wall-clock ``moment``."""
        return int((moment - self.epoch).total_seconds() * 1000)

    def cdn_url(self, path: str) -> str:
        """Absolute URL of a CDN path such as ``images/<id>/0.png``."""
        return f"{self.config.cdn_base_url.rstrip('/')}/cdn/{path}"

    def lookup(self, generation_id: str) -> GenerationKey:
        """The generation behind an id; 404 when unknown, 410 past retention."""
        key = self.codec.decode(generation_id)
        if key is None or key.seq >= self.issued:
            raise ApiError(404, f"Generation request '{generation_id}' was not found.")
        age_ms = self.clock.now_ms() - key.created_ms
        if age_ms > self.config.retention_seconds * 1000:
            raise ApiError(410, f"Generation request '{generation_id}' has expired.")
        return key

    def finished_image(self, generation_id: str, index: int) -> GenerationKey:
        """Like ``lookup``, but also 404 while pending, for a bad index or a blocked image."""
        key = self.lookup(generation_id)
        if not key.is_ready(self.clock.now_ms()):
            raise ApiError(404, f"Generation request '{generation_id}' is still pending.")
        if not 0 <= index < key.count:
            raise ApiError(404, f"Generation request '{generation_id}' has no image {index}.")
        if key.is_blocked(index):
            raise ApiError(404, f"Image {index} of '{generation_id}' was blocked.")
        return key
