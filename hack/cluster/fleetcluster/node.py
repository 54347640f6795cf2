"""The node: containerd (CRI) with runc and the CNI plugins from Debian, and a kubelet.

The kubelet runs with the cgroupfs driver on this machine's cgroup v1 hierarchy, image garbage
collection off (images are imported, never pulled) and a resolv.conf of its own, so pods never
use the host's resolver.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path
from typing import Any

from fleetcluster.controlplane import Credentials
from fleetcluster.kubeconfig import write_kubeconfig
from fleetcluster.pki import Identity
from fleetcluster.procs import Component, Probe, http_probe
from fleetcluster.settings import ClusterSettings

CNI_BIN_DIR = Path("/usr/lib/cni")


def pause_image(settings: ClusterSettings) -> str:
    return f"localhost/intent-fleet/pause:{settings.versions['PAUSE_TAG']}"


def containerd_config(settings: ClusterSettings) -> Path:
    """A containerd 1.6 config whose every path lives in our state directory."""
    base = settings.state_dir / "containerd"
    cri = '[plugins."io.containerd.grpc.v1.cri"]'
    text = f"""version = 2
root = "{base / "root"}"
state = "{base / "state"}"

[grpc]
  address = "{settings.containerd_socket}"

[ttrpc]
  address = "{settings.run_dir / "containerd-ttrpc.sock"}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "opt"}"

{cri}
  sandbox_image = "{pause_image(settings)}"
  stream_server_address = "127.0.0.1"
  enable_selinux = false
  # This machine withholds CAP_SYS_RESOURCE, so the kubelet's negative OOM scores (-998 for every
  # pod sandbox) fail in runc with "can't get final child's PID from pipe"; clamp them instead
  # to containerd's own score, as rootless setups do.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni_conf_dir(settings)}"
"""
    path = base / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def cni_conf_dir(settings: ClusterSettings) -> Path:
    return settings.state_dir / "cni" / "net.d"


def write_cni_config(settings: ClusterSettings) -> Path:
    """A bridge network with host-local addresses and no masquerade: pods stay on this machine."""
    conf = {
        "cniVersion": "0.4.0",
        "name": "intent-fleet",
        "plugins": [
            {
                "type": "bridge",
                "bridge": settings.bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": settings.pod_subnet, "gateway": settings.node_address}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(settings.state_dir / "cni" / "ipam"),
                },
            }
        ],
    }
    path = cni_conf_dir(settings) / "10-intent-fleet.conflist"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(conf, indent=2))
    return path


def containerd(settings: ClusterSettings) -> Component:
    return Component(
        name="containerd",
        argv=["/usr/bin/containerd", f"--config={containerd_config(settings)}", "--log-level=warn"],
        ready=_containerd_ready(settings),
    )


def _containerd_ready(settings: ClusterSettings) -> Probe:
    def probe() -> bool:
        if not settings.containerd_socket.exists():
            return False
        done = subprocess.run(
            ["ctr", f"--address={settings.containerd_socket}", "version"],
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    return probe


def kubelet(settings: ClusterSettings, creds: Credentials) -> Component:
    node = settings.node_name
    ca = creds.ca
    client = ca.issue(
        Identity(
            name="kubelet-client",
            common_name=f"system:node:{node}",
            organization="system:nodes",
            client=True,
        )
    )
    kubeconfig = write_kubeconfig(
        settings.pki_dir / "kubelet.kubeconfig",
        settings.apiserver_url,
        ca.cert_path,
        client,
        f"system:node:{node}",
    )
    config_path = settings.state_dir / "kubelet" / "config.json"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(kubelet_config(settings, creds), indent=2))
    return Component(
        name="kubelet",
        argv=[
            str(settings.k8s_bin / "kubelet"),
            f"--config={config_path}",
            f"--kubeconfig={kubeconfig}",
            f"--root-dir={settings.state_dir / 'kubelet' / 'root'}",
            f"--hostname-override={node}",
            f"--node-ip={settings.node_address}",
            "--v=1",
        ],
        ready=http_probe(f"http://127.0.0.1:{settings.ports.kubelet_healthz}/healthz"),
    )


def kubelet_config(settings: ClusterSettings, creds: Credentials) -> dict[str, Any]:
    """The KubeletConfiguration, with its serving certificate and resolv.conf written."""
    node = settings.node_name
    serving = creds.ca.issue(
        Identity(
            name="kubelet-serving",
            common_name=f"system:node:{node}",
            server=True,
            dns_names=(node, "localhost"),
            ip_addresses=(settings.node_address, "127.0.0.1"),
        )
    )
    resolv = settings.state_dir / "resolv.conf"
    # Pods with dnsPolicy Default (CoreDNS itself) resolve nothing off this machine: a
    # nameserver on the node's own bridge address that nobody serves fails fast instead of
    # leaking queries to the host's resolver. ClusterFirst pods get CoreDNS (addons).
    resolv.write_text(f"nameserver {settings.node_address}\noptions timeout:1 attempts:1\n")
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": settings.node_address,
        "port": settings.ports.kubelet,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": settings.ports.kubelet_healthz,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(creds.ca.cert_path)},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(serving.cert),
        "tlsPrivateKeyFile": str(serving.key),
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{settings.containerd_socket}",
        "resolvConf": str(resolv),
        # ClusterFirst pods ask CoreDNS (the kube-dns Service), which knows cluster.local only.
        "clusterDNS": [settings.dns_address],
        "clusterDomain": settings.cluster_domain,
        "podCIDR": settings.pod_subnet,
        "podLogsDir": str(settings.state_dir / "pod-logs"),
        # Images arrive by import, never by pull: collecting them would lose them for good.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "serializeImagePulls": False,
        "shutdownGracePeriod": "0s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "nodeStatusReportFrequency": "1m",
    }


def subnet_prefix(settings: ClusterSettings) -> int:
    return ipaddress.ip_network(settings.pod_subnet).prefixlen
