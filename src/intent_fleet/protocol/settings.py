"""The bus client's settings.

Settings are frozen dataclasses, one per concern, built once and passed in. Each says what is
wrong with it in ``problems()``; the root of each tree (``ClientSettings``, ``BusSettings``,
``SidecarSettings``, ``OperatorSettings``) calls :func:`~.checked.validate` when it is built, so
every problem of the whole tree is reported at once, and the CLI names each under the flag that
set it.
"""

from __future__ import annotations

import math
import ssl
from dataclasses import dataclass, field

from intent_fleet import __version__

from .checked import Problems, validate
from .retry import RetryPolicy
from .tls import ca_file_problems, trust_context

__all__ = ["DEFAULT_BUS_URL", "ClientSettings"]

#: Where clients look for a bus when told nothing: the bus's own default listen address.
DEFAULT_BUS_URL = "http://127.0.0.1:8080"


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """How a :class:`~intent_fleet.protocol.client.BusClient` reaches its bus."""

    #: Scheme, host and port of the bus (a trailing slash is ignored). Loopback
    #: by default, matching the bus's own default listen address.
    base_url: str = DEFAULT_BUS_URL
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
        return trust_context(self.ca_file, setting="ClientSettings.ca_file")

    def problems(self) -> Problems:
        if not self.base_url.startswith(("http://", "https://")):
            yield "base_url", f"must start with http:// or https://, got {self.base_url!r}"
        for name in ("connect_timeout", "request_timeout"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                yield name, f"must be a positive number of seconds, got {value}"
        if self.pool_size < 1:
            yield "pool_size", f"must be >= 1, got {self.pool_size}"
        if not (math.isfinite(self.max_wait_seconds) and self.max_wait_seconds >= 0):
            yield "max_wait_seconds", f"must be a number >= 0, got {self.max_wait_seconds}"
        yield from ca_file_problems("ca_file", self.ca_file)

    def __post_init__(self) -> None:
        validate(self)
