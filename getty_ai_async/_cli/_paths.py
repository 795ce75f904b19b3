"""Checking, before anything is submitted or bought, that the outputs can be written."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ._errors import UsageError

__all__ = ["writable_file", "writable_folder"]


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def writable_folder(option: str, folder: Path) -> None:
    """Create `folder` if needed and check that files can be created in it.

    Raises `UsageError` naming the option and the path: a command that would fail to save
    what it paid for must fail before paying.
    """
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{option} {folder}: not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{option} {folder}: cannot create the folder: {_reason(exc)}") from None
    try:
        # Creating (and deleting) a file is the check.
        tempfile.NamedTemporaryFile(dir=folder, prefix=".getty-ai-write-check-").close()
    except OSError as exc:
        raise UsageError(
            f"{option} {folder}: cannot write in this folder: {_reason(exc)}"
        ) from None


def writable_file(option: str, path: Path) -> None:
    """Check that `path` can be written (created, or appended to), creating its folder.

    An existing file is opened for appending and left as it was; a new one is created
    and removed again.
    """
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder, not a file")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"{option} {path}: {parent} is not a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.open("ab").close()  # opening for append, without writing, is the check
        else:
            path.open("xb").close()
            path.unlink()
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write this file: {_reason(exc)}") from None
