"""The bus's exceptions. Each maps to the protocol's JSON error body.

::

    BusError                     base; never leaves the process as a traceback
    ├── ApiError                 a request the bus refuses: status + code + message
    │   (raised by validation, auth, the engine; rendered by the HTTP layer)
    ├── StartupError             the bus cannot start (no admin secret, bad database)
    └── DurabilityError          a write was not made durable: its request fails (503),
        │                        memory is put back as it was, the bus goes on
        └── StorageFullError     ... because the disk is full (507)
"""

from __future__ import annotations

__all__ = ["ApiError", "BusError", "DurabilityError", "StartupError", "StorageFullError"]


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
    """A request's write did not reach the disk; that request fails (with the requests that
    shared its statement or commit, which failed alike), nothing else does.

    ``cause`` is "io" (the database or the disk failed), "rejected" (the database refused
    this request's write) or "full" (:class:`StorageFullError`).
    """

    def __init__(self, message: str, *, cause: str = "io") -> None:
        super().__init__(message)
        self.cause = cause


class StorageFullError(DurabilityError):
    """The disk is full: writes are refused with 507 until space returns."""
