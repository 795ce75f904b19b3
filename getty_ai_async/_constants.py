"""Defaults, in one place."""

from __future__ import annotations

import httpx

DEFAULT_BASE_URL = "https://api.gettyimages.com"
DEFAULT_TOKEN_URL = "https://authentication.gettyimages.com/oauth2/token"  # noqa: S105
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=50)
DEFAULT_MAX_PENDING = 8
DEFAULT_POLL_INTERVAL = 1.0
# Getty: "there may be a period of time (up to 60 seconds) before the generated images
# are available"; leave headroom for queueing.
DEFAULT_WAIT_TIMEOUT = 120.0
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# A lease outlives the wait for its generation by this much before it is given up.
DEFAULT_LEASE_SLACK = 60.0
# A 404 this soon after the service accepted a generation is the service catching up.
DEFAULT_NOT_FOUND_GRACE = 10.0
# How long to keep looking in the history for a POST whose reply was lost.
DEFAULT_HISTORY_GRACE = 5.0
