"""The bus's exceptions. Each maps to the protocol's JSON error body.

::

    BusError                     base; never leaves the process as a traceback
    ├── ApiError                 a request the bus refuses: status + code + message
    │   (raised by validation, auth, the engine; rendered by the HTTP layer)
    ├── StartupError             the bus cannot start (no admin secret, bad database)
    └── DurabilityError          a commit to disk failed; the bus stops rather than lie
"""

from __future__ import annotations

__all__ = ["ApiError", "BusError", "DurabilityError", "StartupError"]


class BusError(Exception):
    """Base of the bus's own exceptions."""


class ApiError(BusError):
    """A refused request: rendered as ``{"error": {"code": ..., "message": ...}}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class StartupError(BusError):
    """The configuration or the environment does not allow the bus to start."""


class DurabilityError(BusError):
    """Writing to the database failed; acknowledging anything further would be a lie."""
