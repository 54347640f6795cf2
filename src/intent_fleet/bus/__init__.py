"""A durable Intent Bus server speaking protocol v2.1 and accepting v1.1 clients.

What belongs here: the HTTP endpoints (``routes``, ``admin``, ``metrics``),
the storage interface (``backend``) and its two backends: the embedded one
(``local``: the intent life cycle in memory, ``engine``, ``claim_index``, and SQLite
with group commit, ``store``) and ``postgres`` for replicas sharing one database;
keys and signatures (``auth``), the KV store, limits, and the process entry point
(``server``). Nothing here imports the sidecar or the
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
    DatabaseSettings,
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
    "DatabaseSettings",
    "DurabilityError",
    "LimitSettings",
    "ListenSettings",
    "QueueSettings",
    "StartupError",
    "StorageSettings",
    "run",
    "serve",
]
