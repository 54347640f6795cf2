"""A durable Intent Bus server speaking protocol v2.1 and accepting v1.1 clients.

What belongs here: the HTTP endpoints (``routes``, ``admin``, ``metrics``),
the intent life cycle (``engine``, ``claim_index``), durable storage with group
commit (``store``), keys and signatures (``auth``), the KV store, limits, and
the process entry point (``server``). Nothing here imports the sidecar or the
operator; the only project dependency is :mod:`intent_fleet.protocol`.
"""

from .errors import ApiError, BusError, DurabilityError, StartupError
from .server import run, serve
from .settings import (
    MIN_ADMIN_SECRET_CHARS,
    QUOTAS,
    WIRE_VERSIONS,
    AuthSettings,
    BusSettings,
    LimitSettings,
    ListenSettings,
    QueueSettings,
    StorageSettings,
)

__all__ = [
    "MIN_ADMIN_SECRET_CHARS",
    "QUOTAS",
    "WIRE_VERSIONS",
    "ApiError",
    "AuthSettings",
    "BusError",
    "BusSettings",
    "DurabilityError",
    "LimitSettings",
    "ListenSettings",
    "QueueSettings",
    "StartupError",
    "StorageSettings",
    "run",
    "serve",
]
