"""The sidecar's one error tree.

::

    SidecarError            base of what the sidecar raises
    └── LocalApiError       a request to the local API refused: ``status``, ``code`` and a
                            message, answered as the protocol's JSON error body

Errors of the bus come from :mod:`intent_fleet.protocol` and are mapped to local API answers in
one place (``local_api``); a handler's failures are outcomes (``app_channel``), not exceptions.
"""

from __future__ import annotations

__all__ = ["LocalApiError", "SidecarError"]


class SidecarError(Exception):
    """Base of every sidecar failure."""


class LocalApiError(SidecarError):
    """A local API request the sidecar refuses; the middleware answers it as JSON."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
