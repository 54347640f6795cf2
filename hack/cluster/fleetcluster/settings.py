"""Where the cluster lives and how it is wired, as one documented dataclass.

Every default keeps the cluster on this machine: components bind 127.0.0.1, the node's
address is the pod bridge's own gateway, and the pod subnet is never forwarded outside.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

HARNESS_DIR = Path(__file__).resolve().parent.parent


def read_versions(path: Path = HARNESS_DIR / "versions.env") -> dict[str, str]:
    """Parse versions.env (KEY=VALUE lines, # comments): the single source of every pin."""
    versions: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions


def default_cache_dir() -> Path:
    """The build cache shared with build.sh and images.sh (INTENT_FLEET_CACHE overrides)."""
    explicit = os.environ.get("INTENT_FLEET_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "intent-fleet"


def default_state_dir() -> Path:
    """Runtime state: certificates, etcd data, logs, pid files.

    INTENT_FLEET_CLUSTER_DIR overrides; the default sits under XDG_STATE_HOME.
    """
    explicit = os.environ.get("INTENT_FLEET_CLUSTER_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "intent-fleet" / "cluster"


def _port_offset() -> int:
    """INTENT_FLEET_CLUSTER_PORT_OFFSET shifts every port, so two clusters can run side by side."""
    return int(os.environ.get("INTENT_FLEET_CLUSTER_PORT_OFFSET", "0"))


@dataclass(frozen=True)
class Ports:
    """Loopback ports, chosen away from the usual defaults so a real cluster can coexist."""

    offset: int = field(default_factory=_port_offset)

    def _at(self, port: int) -> int:
        return port + self.offset

    @property
    def etcd_client(self) -> int:
        return self._at(23790)

    @property
    def etcd_peer(self) -> int:
        return self._at(23800)

    @property
    def apiserver(self) -> int:
        return self._at(16443)

    @property
    def controller_manager(self) -> int:
        return self._at(20257)

    @property
    def scheduler(self) -> int:
        return self._at(20259)

    @property
    def kubelet(self) -> int:
        return self._at(20250)

    @property
    def kubelet_healthz(self) -> int:
        return self._at(20248)

    @property
    def kube_proxy_healthz(self) -> int:
        return self._at(20256)

    @property
    def kube_proxy_metrics(self) -> int:
        return self._at(20249)


@dataclass(frozen=True)
class ClusterSettings:
    """Everything `up` and `down` need to agree on."""

    state_dir: Path = field(default_factory=default_state_dir)
    cache_dir: Path = field(default_factory=default_cache_dir)
    versions: dict[str, str] = field(default_factory=read_versions)
    ports: Ports = field(default_factory=Ports)
    node_name: str = "intent-fleet-node"
    # The pod bridge; its first address is both the pods' gateway and the node's address.
    bridge: str = "iflt-br0"
    pod_subnet: str = "10.244.0.0/24"
    node_address: str = "10.244.0.1"
    service_subnet: str = "10.96.0.0/16"
    service_address: str = "10.96.0.1"
    # The kube-dns Service's ClusterIP (CoreDNS), as kubeadm and kind place it.
    dns_address: str = "10.96.0.10"
    cluster_domain: str = "cluster.local"
    # How long any one component may take to become ready.
    ready_timeout: float = 90.0

    @property
    def k8s_bin(self) -> Path:
        return self.cache_dir / f"k8s-{self.versions['KUBERNETES_VERSION']}" / "bin"

    @property
    def etcd_bin(self) -> Path:
        return self.cache_dir / f"etcd-{self.versions['ETCD_VERSION']}" / "bin"

    @property
    def helm_bin(self) -> Path:
        return self.cache_dir / f"helm-{self.versions['HELM_VERSION']}" / "bin"

    @property
    def coredns_bin(self) -> Path:
        return self.cache_dir / f"coredns-{self.versions['COREDNS_VERSION']}" / "bin"

    @property
    def servicemonitor_crd(self) -> Path:
        version = self.versions["PROMETHEUS_OPERATOR_VERSION"]
        return self.cache_dir / f"prometheus-operator-{version}" / "crds" / "servicemonitors.yaml"

    @property
    def local_path_bin(self) -> Path:
        return self.cache_dir / f"local-path-{self.versions['LOCAL_PATH_VERSION']}" / "bin"

    @property
    def local_path_dir(self) -> Path:
        """Where PersistentVolumes of the default StorageClass live (gone with `down`)."""
        return self.state_dir / "local-path"

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def audit_log(self) -> Path:
        """The API server's audit log: Secret and ServiceAccount requests, IntentWorker and
        Deployment writes and reads (see controlplane.AUDIT_POLICY)."""
        return self.log_dir / "kube-apiserver-audit.log"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.state_dir / "admin.kubeconfig"

    @property
    def profile_file(self) -> Path:
        return self.state_dir / "profile"

    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd.sock"
