"""The operator's settings, one documented dataclass per concern (flags and env in the CLI).

Each class says what is wrong with it in ``problems()``; :class:`OperatorSettings` checks the
whole tree when it is built.
"""

from __future__ import annotations

import math
import socket
import ssl
from dataclasses import dataclass, field

from intent_fleet.protocol import Problems, ca_file_problems, trust_context, validate

from .egress import EgressPolicy
from .render import RenderSettings
from .status import StatusSettings

__all__ = ["CredentialSettings", "LeaderSettings", "OperatorSettings"]


@dataclass(frozen=True, slots=True)
class CredentialSettings:
    """How the operator decides which credentials an IntentWorker may use."""

    #: Use only Secrets and ServiceAccounts labelled ``intentbus.io/credentials=true``.
    #: Off means every Secret the operator can read is usable by any IntentWorker author.
    require_opt_in: bool = True
    #: Seconds a Secret's value, or a granted opt-in, is reused before it is read again: a key
    #: rotation or a removed label takes effect within this time. Refusals are never cached,
    #: so adding the label takes effect at the next pass.
    cache_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class LeaderSettings:
    """Lease-based leader election, so several replicas run but only one acts."""

    #: Off for a single replica (tests, local runs); on in the chart.
    enabled: bool = True
    #: The coordination.k8s.io Lease the replicas compete for.
    lease_name: str = "intent-fleet-operator"
    #: Namespace of the Lease (the operator's own).
    lease_namespace: str = "intent-fleet-system"
    #: This replica's name in the Lease (the pod name in a cluster).
    identity: str = field(default_factory=socket.gethostname)
    #: A leader that has not renewed for this long is presumed dead (seconds).
    lease_seconds: float = 15.0
    #: How often the leader renews, and followers retry (seconds).
    renew_seconds: float = 5.0

    def problems(self) -> Problems:
        if self.enabled and not self.identity:
            yield "identity", "is required with leader election"
        if not (math.isfinite(self.renew_seconds) and self.renew_seconds > 0):
            yield "renew_seconds", f"must be > 0, got {self.renew_seconds}"
        elif not self.lease_seconds > self.renew_seconds:
            yield "lease_seconds", "must be longer than renew_seconds"


@dataclass(frozen=True, slots=True)
class OperatorSettings:
    """What to watch, how to render, where to serve probes and metrics."""

    #: Namespaces to watch; empty = the whole cluster.
    namespaces: tuple[str, ...] = ()
    #: host:port of the probe and metrics server (/healthz, /readyz, /metrics).
    listen: str = "127.0.0.1:8081"
    #: Server-side watch timeout (seconds): watches are re-opened at least this often, so a
    #: silently dropped connection costs at most this long.
    watch_server_timeout: float = 300.0
    #: Client-side cap on one watch request (seconds), a little over the server's.
    watch_client_timeout: float = 330.0
    render: RenderSettings = field(default_factory=RenderSettings)
    leader: LeaderSettings = field(default_factory=LeaderSettings)
    credentials: CredentialSettings = field(default_factory=CredentialSettings)
    status: StatusSettings = field(default_factory=StatusSettings)
    #: Where backlog reads and sidecar polls may connect (see operator.egress).
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    #: PEM CA certificates the https:// bus and Prometheus URLs of specs are verified
    #: against, instead of the system's; None = the system's trust store.
    bus_ca_file: str | None = None

    def bus_ssl_context(self) -> ssl.SSLContext | bool:
        """What the https:// URLs of specs are verified with: the CA file's, or the system's."""
        return trust_context(self.bus_ca_file, setting="OperatorSettings.bus_ca_file")

    def problems(self) -> Problems:
        host, sep, port = self.listen.rpartition(":")
        if not (sep and host and port.isdigit() and 0 <= int(port) <= 65535):
            yield "listen", f"must be HOST:PORT with a port of 0-65535, got {self.listen!r}"
        if not (math.isfinite(self.watch_server_timeout) and self.watch_server_timeout > 0):
            yield "watch_server_timeout", f"must be > 0 seconds, got {self.watch_server_timeout}"
        elif not self.watch_client_timeout > self.watch_server_timeout:
            yield "watch_client_timeout", "must be longer than watch_server_timeout"
        yield from ca_file_problems("bus_ca_file", self.bus_ca_file)

    def __post_init__(self) -> None:
        validate(self)
