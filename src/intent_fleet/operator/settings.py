"""The operator's settings, one documented dataclass per concern (flags and env in the CLI)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

from .credentials import CredentialSettings
from .egress import EgressPolicy
from .render import RenderSettings

__all__ = ["LeaderSettings", "OperatorSettings"]


@dataclass(frozen=True, slots=True)
class LeaderSettings:
    """Lease-based leader election, so several replicas run but only one acts."""

    #: Off for a single replica (tests, local runs); on in the chart.
    enabled: bool = True
    #: The coordination.k8s.io Lease the replicas compete for.
    lease_name: str = "intent-fleet-operator"
    #: Namespace of the Lease (the operator's own).
    lease_namespace: str = "default"
    #: This replica's name in the Lease (the pod name in a cluster).
    identity: str = ""
    #: A leader that has not renewed for this long is presumed dead (seconds).
    lease_seconds: float = 15.0
    #: How often the leader renews, and followers retry (seconds).
    renew_seconds: float = 5.0


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
    #: Where backlog reads and sidecar polls may connect (see operator.egress).
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    #: PEM CA certificates the https:// bus and Prometheus URLs of specs are verified
    #: against, instead of the system's; None = the system's trust store.
    bus_ca_file: str | None = None

    def bus_ssl_context(self) -> ssl.SSLContext | bool:
        if self.bus_ca_file is None:
            return True
        return ssl.create_default_context(cafile=self.bus_ca_file)
