"""The ``getty-ai`` command line.

It needs the ``cli`` extra (typer and rich); without it, `main` explains what to install
instead of failing with a traceback. typer and rich are imported nowhere else.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["app", "main"]

_MISSING_EXTRA = (
    "getty-ai: the command line needs the 'cli' extra: pip install 'getty-ai-async[cli]'"
)
_EXTRA_PACKAGES = frozenset({"typer", "rich"})


def main() -> None:
    """Entry point of the ``getty-ai`` console script."""
    try:
        from ._app import run
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] not in _EXTRA_PACKAGES:
            raise
        print(_MISSING_EXTRA, file=sys.stderr)
        sys.exit(1)
    run()


def __getattr__(name: str) -> Any:
    # `app` is a typer object: built on first access so `main` can report a missing extra.
    if name == "app":
        from ._app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
