"""The package's loggers, and how URLs are shown in logs and errors.

A library stays silent unless the application configures logging: the package logger
has a `logging.NullHandler` (so Python's last-resort handler never prints our records),
and nothing here logs above INFO except real anomalies.
"""

from __future__ import annotations

import httpx

__all__ = ["shown_url"]


def shown_url(url: httpx.URL | str) -> str:
    """`url` as logs and errors show it: scheme, host, port and path; no query or user info.

    Download URLs are signed (the query string is a credential), and a URL may carry a
    password; the host is kept so that a connection error says where it went.
    """
    url = httpx.URL(url)
    return str(url.copy_with(query=None, fragment=None, username=None, password=None))
