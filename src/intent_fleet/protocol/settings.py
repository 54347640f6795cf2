"""The bus client's settings: one documented dataclass, built once and passed in."""

from __future__ import annotations

import math
import ssl
from dataclasses import dataclass, field

from intent_fleet import __version__

from .retry import RetryPolicy

__all__ = ["ClientSettings"]


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """How a :class:`~intent_fleet.protocol.client.BusClient` reaches its bus."""

    #: Scheme, host and port of the bus (a trailing slash is ignored). Loopback
    #: by default, matching the bus's own default listen address.
    base_url: str = "http://127.0.0.1:8080"
    #: Seconds to open a TCP connection (or wait for a pooled one). Short, so a
    #: dead bus is reported quickly instead of stalling every worker.
    connect_timeout: float = 5.0
    #: Seconds for a whole request, answer included. Generous for a bus under
    #: load; a long-poll claim adds its ``wait`` on top.
    request_timeout: float = 10.0
    #: Most connections kept open to the bus at once. 64 covers a sidecar running
    #: many concurrent handlers without opening a socket per request.
    pool_size: int = 64
    #: Retries of the operations that are safe to repeat (see ``RetryPolicy``).
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Sent as ``User-Agent`` so a bus operator can tell clients apart.
    user_agent: str = f"intent-fleet/{__version__}"
    #: Longest long-poll ``wait`` a claim asks for, seconds; larger values are cut.
    #: 30 is intent-fleet's bus's own limit, which rejects longer waits.
    max_wait_seconds: float = 30.0
    #: PEM file of the CA certificates an ``https://`` bus is verified against, instead of
    #: the system's (a bus with a private CA); None = the system's trust store.
    ca_file: str | None = None

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What aiohttp verifies an ``https://`` bus with: the CA file's, or the system's."""
        if self.ca_file is None:
            return True
        try:
            return ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(
                f"ClientSettings.ca_file {self.ca_file!r} is not a readable PEM CA file: {exc}"
            ) from None

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError("ClientSettings.base_url must start with http:// or https://")
        for name in ("connect_timeout", "request_timeout"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"ClientSettings.{name} must be a positive number of seconds")
        if self.pool_size < 1:
            raise ValueError("ClientSettings.pool_size must be >= 1")
        if not (math.isfinite(self.max_wait_seconds) and self.max_wait_seconds >= 0):
            raise ValueError("ClientSettings.max_wait_seconds must be a number >= 0")
        self.ssl_context()  # a bad CA file is reported now, not at the first request
