"""A stateful in-memory simulator of the Getty Images AI Generator API.

``Sandbox`` is a plain ASGI app implementing all 18 paths of the spec plus
``POST /oauth2/token`` and a CDN (``GET /cdn/...``) serving real PNGs. Use it in process::

    sb = Sandbox(pending_seconds=0.5, time_scale=0.01)
    client = httpx.AsyncClient(transport=sb.transport(), base_url=sb.api_base_url)

or on loopback with ``serve`` (async, asyncio) / ``run_in_thread`` (sync context manager).

Rules it enforces: per-account (= Api-Key) pending cap and QPS limit (429
``{"message":"Too Many Requests"}``; QPS 429s carry Retry-After, pending-cap 429s do not,
like the real service), token expiry (401), 202-then-200 generations and downloads,
``is_blocked`` results, 404 for unknown ids, 410 past ``retention_seconds``, request
bodies checked against the spec's schemas (400 naming the field). Simulated time runs at
``time_scale`` and can be moved with ``Sandbox.advance``.

Fault route names (``FaultConfig.route_error_rates`` / ``route_drop_rates``, and
``SandboxStats.requests``): ``token``, ``generate``, ``get_generation``, ``variations``,
``refine``, ``extend``, ``background_removal``, ``object_removal``, ``influence_color``,
``influence_composition``, ``background_generation``, ``download_sizes``,
``download_put``, ``download_get``, ``redownload``, ``history``, ``history_item``,
``upload``, ``file_registration_create``, ``file_registration_get``, ``cdn`` and
``unknown`` (``ROUTE_NAMES``).

Memory: generation ids are self-describing (creation and ready time, result count,
blocked mask, seed, shape, signed), so answering for a generation needs no stored
record. Per generation the sandbox keeps only: its ready time in the account's pending
heap while it is pending; its ``reference_asset_id`` if it was made from one (to echo
``original_asset``); and, with ``keep_history=True``, one history record (prompt and
options). With ``keep_history=False`` a finished text-to-image generation costs nothing,
and the history routes answer an empty list / 404. Downloads, uploads, file
registrations and tokens are kept per object created.

Images: previews are 64 and 128 px (longest side), result ``url`` images 256 px; download
URLs serve PNGs of the size download-sizes reports: 1024 px ("1k") and 4096 px ("4k")
on the longest side, encoded in milliseconds (gradients, each distinct row compressed
once). Extend percentages are fractions of the side (0.2 = 20 %).

Seeds: a generation without a ``seed`` gets one derived from the sandbox's seed, the
request (type, prompt, reference) and its sequence number, so different prompts get
different seeds and a run is reproducible.
"""

from ._app import Sandbox
from ._config import ROUTE_NAMES, FaultConfig, SandboxConfig
from ._server import ServedSandbox, run_in_thread, serve
from ._stats import SandboxStats

__all__ = [
    "ROUTE_NAMES",
    "FaultConfig",
    "Sandbox",
    "SandboxConfig",
    "SandboxStats",
    "ServedSandbox",
    "run_in_thread",
    "serve",
]
