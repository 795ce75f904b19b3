"""Asyncio SDK for the Getty Images AI Generator API."""

from __future__ import annotations

import logging

from . import _logging, errors
from ._client import AsyncGettyAI
from ._fanout import GenerationOutcome, GenerationRun, RunOptions, RunStats
from ._generations import InfluenceOptions, SubmitOptions
from ._lease import Lease, Limiter, LimiterStatistics
from ._limiter import PendingLimiter
from ._models import (
    AspectRatio,
    Category,
    DepthOfField,
    Download,
    DownloadSize,
    FileRegistration,
    GeneratedImage,
    Generation,
    GenerationHistory,
    GenerationHistoryItem,
    GenerationRequest,
    GenerationType,
    LensType,
    MediaType,
    Mood,
    PreviewUrl,
    SizeName,
)
from ._options import ClientOptions, GenerateOptions, SandboxOptions
from ._redis import RedisLimiter
from ._transport import RetryPolicy
from ._version import __version__

__all__ = [
    "AspectRatio",
    "AsyncGettyAI",
    "Category",
    "ClientOptions",
    "DepthOfField",
    "Download",
    "DownloadSize",
    "FileRegistration",
    "GenerateOptions",
    "GeneratedImage",
    "Generation",
    "GenerationHistory",
    "GenerationHistoryItem",
    "GenerationOutcome",
    "GenerationRequest",
    "GenerationRun",
    "GenerationType",
    "InfluenceOptions",
    "Lease",
    "LensType",
    "Limiter",
    "LimiterStatistics",
    "MediaType",
    "Mood",
    "PendingLimiter",
    "PreviewUrl",
    "RedisLimiter",
    "RetryPolicy",
    "RunOptions",
    "RunStats",
    "SandboxOptions",
    "SizeName",
    "SubmitOptions",
    "__version__",
    "errors",
]

# A library is silent unless the application configures logging (see _logging.py).
logging.getLogger("getty_ai_async").addHandler(logging.NullHandler())
_logging.configure_from_env()

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("getty_ai_async._"):
        _obj.__module__ = "getty_ai_async"
del _name, _obj
