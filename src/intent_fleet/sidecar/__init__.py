"""The sidecar: makes a plain HTTP server in any language an Intent Bus worker.

What belongs here: the claim loop and intent life (``worker``), lease
heartbeats (``leasing``), the one module that talks to the handler
(``app_channel``), the handler-facing local API and the ops listener
(``local_api``, the only module here that runs an HTTP server), metrics,
settings, and the process runner. Every wait and reading of the time goes through the
protocol's injected :class:`~intent_fleet.protocol.Clock`. The bus is reached only through
:mod:`intent_fleet.protocol`; errors are drawn in ``errors``.
"""

from .app_channel import AppChannel, Busy, Delivery, Failed, Fulfilled
from .errors import LocalApiError, SidecarError
from .metrics import SidecarMetrics
from .runner import detect_features, run_sidecar
from .settings import (
    DRAIN_HEADER,
    MIN_DRAIN_TOKEN,
    AppSettings,
    ClaimSettings,
    LocalApiSettings,
    OpsSettings,
    SidecarSettings,
)
from .worker import Features, Worker

__all__ = [
    "DRAIN_HEADER",
    "MIN_DRAIN_TOKEN",
    "AppChannel",
    "AppSettings",
    "Busy",
    "ClaimSettings",
    "Delivery",
    "Failed",
    "Features",
    "Fulfilled",
    "LocalApiError",
    "LocalApiSettings",
    "OpsSettings",
    "SidecarError",
    "SidecarMetrics",
    "SidecarSettings",
    "Worker",
    "detect_features",
    "run_sidecar",
]
