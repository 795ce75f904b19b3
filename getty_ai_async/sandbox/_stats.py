"""Live counters of what the sandbox saw."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

__all__ = ["DROPPED", "SandboxStats"]

DROPPED = 0
"""Status recorded for a request whose connection was dropped without a reply."""


class SandboxStats:
    """Counters updated by the sandbox as it answers; read attributes or take ``snapshot()``.

    The sandbox runs on one event loop, so plain counters need no locking; the dict
    counters and ``snapshot()`` share a lock so another thread (a test driving a
    sandbox served by ``run_in_thread``) can read them safely.
    """

    def __init__(self, pending_counter: Callable[[str | None], int]) -> None:
        self._lock = threading.Lock()
        self._pending_counter = pending_counter
        self.requests: Counter[tuple[str, int]] = Counter()
        """Replies by ``(route name, status)``; status 0 means the connection was dropped."""
        self.faults_injected: Counter[str] = Counter()
        """Injected faults by kind: ``error``, ``drop``, ``latency``, ``slow``."""
        self.peak_pending_by_account: dict[str, int] = {}
        """Highest number of concurrently pending generations seen per account."""
        self.submissions = 0
        """Generation-creating POSTs that created a generation."""
        self.submissions_attempted = 0
        """Generation-creating POSTs received, whatever their outcome."""
        self.rate_limited_pending = 0
        """429s because the account's pending cap was full."""
        self.rate_limited_qps = 0
        """429s because the account's request rate was exceeded."""
        self.unauthorized = 0
        """401s on API routes (missing/unknown Api-Key, missing/unknown/expired token)."""
        self.token_requests = 0
        self.tokens_issued = 0
        self.polls = 0
        """GETs of a generation."""
        self.polls_pending = 0
        """GETs of a generation answered 202."""
        self.downloads = 0
        """Download PUTs that started a download."""
        self.redownloads = 0
        self.uploads = 0
        self.file_registrations = 0
        self.cdn_requests = 0
        self.cdn_requests_with_credentials = 0
        """CDN requests that carried an ``Authorization`` or ``Api-Key`` header."""

    def record_request(self, route: str, status: int) -> None:
        """Count one reply (status 0 for a dropped connection)."""
        with self._lock:
            self.requests[route, status] += 1

    def record_fault(self, kind: str) -> None:
        """Count one injected fault."""
        with self._lock:
            self.faults_injected[kind] += 1

    def record_pending(self, account: str, pending: int) -> None:
        """Note that ``account`` now has ``pending`` generations pending."""
        if pending > self.peak_pending_by_account.get(account, 0):
            with self._lock:
                self.peak_pending_by_account[account] = pending

    def count(self, route: str | None = None, status: int | None = None) -> int:
        """Replies matching ``route`` and/or ``status`` (None matches any)."""
        with self._lock:
            return sum(
                n
                for (r, s), n in self.requests.items()
                if (route is None or r == route) and (status is None or s == status)
            )

    @property
    def peak_pending(self) -> int:
        """Highest per-account number of concurrently pending generations."""
        with self._lock:
            return max(self.peak_pending_by_account.values(), default=0)

    def current_pending(self, account: str | None = None) -> int:
        """Generations pending now for ``account`` (all accounts when None)."""
        return self._pending_counter(account)

    def snapshot(self) -> dict[str, Any]:
        """A plain, JSON-serialisable copy of every counter."""
        with self._lock:
            requests: dict[str, dict[int, int]] = {}
            for (route, status), n in sorted(self.requests.items()):
                requests.setdefault(route, {})[status] = n
            peaks = dict(self.peak_pending_by_account)
            faults = dict(self.faults_injected)
        return {
            "requests": requests,
            "faults_injected": faults,
            "peak_pending": max(peaks.values(), default=0),
            "peak_pending_by_account": peaks,
            "current_pending": self.current_pending(),
            "submissions": self.submissions,
            "submissions_attempted": self.submissions_attempted,
            "rate_limited_pending": self.rate_limited_pending,
            "rate_limited_qps": self.rate_limited_qps,
            "unauthorized": self.unauthorized,
            "token_requests": self.token_requests,
            "tokens_issued": self.tokens_issued,
            "polls": self.polls,
            "polls_pending": self.polls_pending,
            "downloads": self.downloads,
            "redownloads": self.redownloads,
            "uploads": self.uploads,
            "file_registrations": self.file_registrations,
            "cdn_requests": self.cdn_requests,
            "cdn_requests_with_credentials": self.cdn_requests_with_credentials,
        }
