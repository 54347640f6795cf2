"""The sidecar's settings: one documented dataclass per concern.

Every field has a flag and an environment variable (see ``intent-fleet sidecar
--help`` and the table in README.md); the CLI builds these once. Each class says what is
wrong with it in ``problems()``; :class:`SidecarSettings` checks the whole tree when built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from intent_fleet.protocol import Problems, RetryPolicy, validate

__all__ = [
    "DRAIN_HEADER",
    "MIN_DRAIN_TOKEN",
    "AppSettings",
    "ClaimSettings",
    "LocalApiSettings",
    "OpsSettings",
    "SidecarSettings",
]

#: Header that carries the drain token on the ops listener (the operator's preStop hook sends it).
DRAIN_HEADER = "X-Intent-Drain-Token"

#: Shortest drain token accepted: it guards a pod-IP port that can stop a worker claiming.
MIN_DRAIN_TOKEN = 16


def _port(value: int, *, zero_ok: bool) -> str | None:
    low = 0 if zero_ok else 1
    return None if low <= value <= 65535 else f"must be {low}-65535, got {value}"


def _seconds(value: float, *, zero_ok: bool = False) -> str | None:
    if math.isfinite(value) and (value > 0 or (zero_ok and value == 0)):
        return None
    return f"must be a number of seconds {'>=' if zero_ok else '>'} 0, got {value}"


@dataclass(frozen=True, slots=True)
class AppSettings:
    """How to reach the handler container (always on 127.0.0.1)."""

    #: Handler port; it listens on 127.0.0.1 (or all interfaces) inside the pod.
    port: int = 8080
    #: Path that receives the intents.
    path: str = "/"
    #: Path answering 200 when the handler is ready; empty = "port open" is ready.
    health_path: str = ""
    #: Seconds the handler gets per intent before the sidecar fails it. Five
    #: minutes suits batch-ish work; leases are extended meanwhile on v2.1 buses.
    timeout_seconds: float = 300.0
    #: Largest result the sidecar forwards to the bus (bytes); the bus default.
    max_result_bytes: int = 256 * 1024
    #: How often readiness is re-checked while healthy (seconds).
    health_interval_seconds: float = 2.0
    #: Longest wait the sidecar honours from a busy handler's Retry-After (seconds).
    max_busy_wait_seconds: float = 30.0

    def problems(self) -> Problems:
        if bad := _port(self.port, zero_ok=False):
            yield "port", bad
        if not self.path.startswith("/"):
            yield "path", f"must start with '/', got {self.path!r}"
        if self.health_path and not self.health_path.startswith("/"):
            yield "health_path", f"must start with '/' (or be empty), got {self.health_path!r}"
        for name in ("timeout_seconds", "health_interval_seconds", "max_busy_wait_seconds"):
            if bad := _seconds(getattr(self, name)):
                yield name, bad


@dataclass(frozen=True, slots=True)
class ClaimSettings:
    """What to claim and how hard to pull."""

    goal: str = ""
    namespace: str = "default"
    #: Intents in flight at once (handler requests running in parallel).
    concurrency: int = 4
    #: Sent as X-Worker-ID: pod name, else host name.
    worker_id: str = ""
    #: Sent as X-Worker-Capabilities; routes intents with required_capability.
    capabilities: tuple[str, ...] = ()
    #: Long-poll wait per claim (seconds). Short enough that a drain never waits
    #: long for a parked claim, long enough that an idle sidecar costs nothing.
    long_poll_seconds: float = 5.0
    #: Wait between empty polls on buses without long-poll, after a failed claim, and while
    #: the bus is unreachable at start:
    #: from 0.25 s, doubling, at most 5 s; equal jitter, so an idle sidecar never spins.
    poll_backoff: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(base_seconds=0.25, cap_seconds=5.0, jitter="equal")
    )
    #: Wait before a fulfil or fail is sent again after a network error, a 5xx or a 429;
    #: its attempts are not counted (the lease bounds them).
    report_retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(base_seconds=0.1, cap_seconds=5.0)
    )
    #: Wait before a failed lease extend is tried again (while the lease lasts).
    extend_retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(base_seconds=0.5, cap_seconds=5.0, jitter="equal")
    )
    #: Seconds in-flight work gets to finish after SIGTERM or /v1/drain.
    drain_timeout_seconds: float = 60.0

    def problems(self) -> Problems:
        if not self.goal:
            yield "goal", "is required"
        if self.concurrency < 1:
            yield "concurrency", f"must be >= 1, got {self.concurrency}"
        if bad := _seconds(self.drain_timeout_seconds, zero_ok=True):
            yield "drain_timeout_seconds", bad
        if bad := _seconds(self.long_poll_seconds):
            yield "long_poll_seconds", bad


@dataclass(frozen=True, slots=True)
class LocalApiSettings:
    """The handler-facing API (publish, KV, status, drain, metrics)."""

    #: Port on 127.0.0.1; 0 picks a free one (``intent-fleet run`` prints it).
    port: int = 8787
    host: str = "127.0.0.1"

    def problems(self) -> Problems:
        if bad := _port(self.port, zero_ok=True):
            yield "port", bad


@dataclass(frozen=True, slots=True)
class OpsSettings:
    """The ops listener: probes, state, metrics and drain for the kubelet, operator, Prometheus.

    The kubelet runs probes and httpGet hooks against the pod IP, never 127.0.0.1, so these
    routes need a second listener; publish, KV and intents (which act with the API key) stay
    on the local API only.
    """

    #: Address to bind, e.g. ``0.0.0.0`` in a pod; empty = no ops listener (the default,
    #: so nothing but 127.0.0.1 listens unless asked).
    host: str = ""
    #: Port of the ops listener (the operator renders 9090).
    port: int = 9090
    #: Token that ``/v1/drain`` on the ops listener requires in :data:`DRAIN_HEADER`;
    #: empty = drain refused there. Kept out of ``repr`` so it never reaches a log line.
    drain_token: str = field(default="", repr=False)

    @property
    def enabled(self) -> bool:
        return bool(self.host)

    def problems(self) -> Problems:
        if self.drain_token and len(self.drain_token) < MIN_DRAIN_TOKEN:
            # The value itself is never quoted: it may be nearly right.
            yield "drain_token", f"must be at least {MIN_DRAIN_TOKEN} characters"
        if bad := _port(self.port, zero_ok=False):
            yield "port", bad


@dataclass(frozen=True, slots=True)
class SidecarSettings:
    app: AppSettings = field(default_factory=AppSettings)
    claim: ClaimSettings = field(default_factory=ClaimSettings)
    api: LocalApiSettings = field(default_factory=LocalApiSettings)
    ops: OpsSettings = field(default_factory=OpsSettings)

    def problems(self) -> Problems:
        if self.ops.enabled and self.ops.port == self.api.port:
            yield "ops", f"must use another port than the local API ({self.api.port})"

    def __post_init__(self) -> None:
        validate(self)
