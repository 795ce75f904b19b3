"""Defaults, in one place."""

from __future__ import annotations

import httpx

DEFAULT_BASE_URL = "https://api.gettyimages.com"
DEFAULT_TOKEN_URL = "https://authentication.gettyimages.com/oauth2/token"  # noqa: S105
GETTY_DOMAIN = "gettyimages.com"
TOKEN_PATH = "/oauth2/token"  # noqa: S105 (a path)


def default_token_url(base_url: httpx.URL) -> str:
    """The token URL to use with `base_url` when none is given.

    Getty's own hosts use Getty's authentication server. Any other base URL (the
    sandbox served on loopback, a proxy, a test double) gets ``{base_url}/oauth2/token``:
    that is where the sandbox serves it, and the client secret then goes only to the
    host the caller chose for everything else, never to Getty's host on the side.
    """
    host = base_url.host
    if host == GETTY_DOMAIN or host.endswith("." + GETTY_DOMAIN):
        return DEFAULT_TOKEN_URL
    return str(base_url).rstrip("/") + TOKEN_PATH


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
