"""The sidecar's settings: one documented dataclass per concern.

Every field has a flag and an environment variable (see ``intent-fleet sidecar
--help`` and the table in README.md); the CLI builds these once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "DRAIN_HEADER",
    "AppSettings",
    "ClaimSettings",
    "LocalApiSettings",
    "OpsSettings",
    "SidecarSettings",
]

#: Header that carries the drain token on the ops listener (the operator's preStop hook sends it).
DRAIN_HEADER = "X-Intent-Drain-Token"


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
    #: Ceiling of the jittered back-off between empty polls on buses without long-poll.
    max_poll_backoff_seconds: float = 5.0
    #: Seconds in-flight work gets to finish after SIGTERM or /v1/drain.
    drain_timeout_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class LocalApiSettings:
    """The handler-facing API (publish, KV, status, drain, metrics)."""

    #: Port on 127.0.0.1; 0 picks a free one (``intent-fleet run`` prints it).
    port: int = 8787
    host: str = "127.0.0.1"


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


@dataclass(frozen=True, slots=True)
class SidecarSettings:
    app: AppSettings = field(default_factory=AppSettings)
    claim: ClaimSettings = field(default_factory=ClaimSettings)
    api: LocalApiSettings = field(default_factory=LocalApiSettings)
    ops: OpsSettings = field(default_factory=OpsSettings)
