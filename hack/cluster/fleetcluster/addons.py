"""What makes the node like kind's: kube-proxy, cluster DNS (CoreDNS) and a default StorageClass
(local-path-provisioner), each built here from its Go module.

- kube-proxy runs on the host beside the kubelet, in iptables mode, so ClusterIP Services work
  from pods and from the host. NodePorts open on the node's bridge address only, never on the
  host's own interfaces; `down` runs `kube-proxy --cleanup`, which removes every KUBE chain.
- CoreDNS runs as a Deployment behind the `kube-dns` Service. It answers `cluster.local` and
  nothing else: there is no upstream, so a pod still resolves nothing outside the machine.
- local-path-provisioner is the default StorageClass: a PersistentVolume is a directory under
  the cluster's state directory, removed with it by `down`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from fleetcluster.controlplane import Credentials
from fleetcluster.kubeconfig import write_kubeconfig
from fleetcluster.kubectl import Kubectl
from fleetcluster.pki import Identity
from fleetcluster.procs import Component, http_probe, tcp_probe
from fleetcluster.settings import ClusterSettings

#: The image the local-path helper pods run (the debootstrapped base: sh, mkdir, rm).
HELPER_IMAGE = "localhost/intent-fleet/helper:dev"
DNS_PORT = 1053
NONROOT = 65532


def coredns_image(settings: ClusterSettings) -> str:
    return f"localhost/intent-fleet/coredns:{settings.versions['COREDNS_VERSION']}"


def local_path_image(settings: ClusterSettings) -> str:
    return (
        f"localhost/intent-fleet/local-path-provisioner:{settings.versions['LOCAL_PATH_VERSION']}"
    )


# -- the API server, seen from pods ----------------------------------------------------------------


def apiserver_forward(settings: ClusterSettings) -> Component:
    """The API server on the node's bridge address too, where the `kubernetes` Service points.

    The API server listens on 127.0.0.1 only (nothing off this machine may reach it); pods
    reach it through this forwarder on the bridge, which only pods and this host can reach.
    """
    port = settings.ports.apiserver
    return Component(
        name="apiserver-forward",
        argv=[
            shutil.which("socat") or "socat",
            f"TCP-LISTEN:{port},bind={settings.node_address},fork,reuseaddr",
            f"TCP:127.0.0.1:{port}",
        ],
        ready=tcp_probe(settings.node_address, port),
    )


# -- kube-proxy ---------------------------------------------------------------------------------


def kube_proxy_config(settings: ClusterSettings, creds: Credentials) -> Path:
    client = creds.ca.issue(
        Identity(name="kube-proxy", common_name="system:kube-proxy", client=True)
    )
    kubeconfig = write_kubeconfig(
        settings.pki_dir / "kube-proxy.kubeconfig",
        settings.apiserver_url,
        creds.ca.cert_path,
        client,
        "system:kube-proxy",
    )
    ports = settings.ports
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "clusterCIDR": settings.pod_subnet,
        "hostnameOverride": settings.node_name,
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": f"127.0.0.1:{ports.kube_proxy_healthz}",
        "metricsBindAddress": f"127.0.0.1:{ports.kube_proxy_metrics}",
        # NodePorts on the node's bridge address only: never on the host's own interfaces.
        "nodePortAddresses": [f"{settings.node_address}/32"],
        # Leave the host's conntrack sysctls as they are.
        "conntrack": {"maxPerCore": 0, "min": 0},
    }
    path = settings.state_dir / "kube-proxy" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(config, indent=2)
    # kube-proxy watches its config file and exits on any write to it: a second `up`, which
    # finds it running, must leave an unchanged file alone.
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def kube_proxy(settings: ClusterSettings, creds: Credentials) -> Component:
    return Component(
        name="kube-proxy",
        argv=[
            str(settings.k8s_bin / "kube-proxy"),
            f"--config={kube_proxy_config(settings, creds)}",
            "--v=1",
        ],
        ready=http_probe(f"http://127.0.0.1:{settings.ports.kube_proxy_healthz}/healthz"),
    )


def kube_proxy_cleanup(settings: ClusterSettings) -> str:
    """Remove every rule kube-proxy installed (what `down` runs once it is stopped)."""
    binary = settings.k8s_bin / "kube-proxy"
    if not binary.exists():
        return "kube-proxy not built: nothing to clean"
    done = subprocess.run(
        [str(binary), "--cleanup", "--v=0"], capture_output=True, text=True, check=False, timeout=60
    )
    return "kube-proxy rules removed" if done.returncode == 0 else done.stderr.strip()[-500:]


# -- manifests ------------------------------------------------------------------------------------


def _restricted(read_only: bool = True) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": NONROOT,
        "runAsGroup": NONROOT,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _rbac(name: str, namespace: str, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": f"intent-fleet:{name}"},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"intent-fleet:{name}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": f"intent-fleet:{name}",
            },
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    ]


def corefile(settings: ClusterSettings) -> str:
    domain = settings.cluster_domain
    # No `forward`: a name outside the cluster gets REFUSED, never a query off this machine.
    return f""".:{DNS_PORT} {{
    errors
    health :8080
    ready :8181
    kubernetes {domain} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    prometheus :9153
    cache 30
    loadbalance
}}
"""


def coredns(settings: ClusterSettings) -> list[dict[str, Any]]:
    ns, labels = "kube-system", {"k8s-app": "kube-dns"}
    rules = [
        {
            "apiGroups": [""],
            "resources": ["endpoints", "services", "pods", "namespaces"],
            "verbs": ["list", "watch"],
        },
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["list", "watch"],
        },
    ]
    container = {
        "name": "coredns",
        "image": coredns_image(settings),
        "imagePullPolicy": "Never",
        "args": ["-conf", "/etc/coredns/Corefile"],
        "ports": [
            {"name": "dns", "containerPort": DNS_PORT, "protocol": "UDP"},
            {"name": "dns-tcp", "containerPort": DNS_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9153, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
        "securityContext": _restricted(),
        "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
    }
    return [
        *_rbac("coredns", ns, rules),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "coredns", "namespace": ns},
            "data": {"Corefile": corefile(settings)},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "coredns", "namespace": ns, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "priorityClassName": "system-cluster-critical",
                        # CoreDNS itself resolves nothing through DNS.
                        "dnsPolicy": "Default",
                        "containers": [container],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": ns, "labels": labels},
            "spec": {
                "clusterIP": settings.dns_address,
                "selector": labels,
                "ports": [
                    {"name": "dns", "port": 53, "targetPort": DNS_PORT, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "targetPort": DNS_PORT, "protocol": "TCP"},
                    {"name": "metrics", "port": 9153, "protocol": "TCP"},
                ],
            },
        },
    ]


HELPER_POD = """apiVersion: v1
kind: Pod
metadata:
  name: helper-pod
spec:
  priorityClassName: system-node-critical
  containers:
    - name: helper-pod
      image: {image}
      imagePullPolicy: Never
"""


def local_path(settings: ClusterSettings) -> list[dict[str, Any]]:
    ns, name = "local-path-storage", "local-path-provisioner"
    labels = {"app": name}
    rules = [
        {
            "apiGroups": [""],
            "resources": ["nodes", "persistentvolumeclaims", "configmaps", "pods", "pods/log"],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": [""],
            "resources": ["persistentvolumes"],
            "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        {
            "apiGroups": ["storage.k8s.io"],
            "resources": ["storageclasses"],
            "verbs": ["get", "list", "watch"],
        },
        # The helper pods that create and remove each volume's directory (its own namespace).
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "delete"]},
    ]
    config = {
        "nodePathMap": [
            {"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [str(settings.local_path_dir)]}
        ]
    }
    container = {
        "name": name,
        "image": local_path_image(settings),
        "imagePullPolicy": "Never",
        "command": ["/local-path-provisioner", "start", "--config", "/etc/config/config.json"],
        "env": [
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            {"name": "CONFIG_MOUNT_PATH", "value": "/etc/config/"},
            {"name": "HELPER_IMAGE", "value": HELPER_IMAGE},
            {"name": "SERVICE_ACCOUNT_NAME", "value": name},
        ],
        "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
        "securityContext": _restricted(),
        "volumeMounts": [{"name": "config", "mountPath": "/etc/config/", "readOnly": True}],
    }
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        *_rbac(name, ns, rules),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "local-path-config", "namespace": ns},
            "data": {
                "config.json": json.dumps(config),
                "setup": '#!/bin/sh\nset -eu\nmkdir -m 0777 -p "$VOL_DIR"\n',
                "teardown": '#!/bin/sh\nset -eu\nrm -rf "$VOL_DIR"\n',
                "helperPod.yaml": HELPER_POD.format(image=HELPER_IMAGE),
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": name,
                        "containers": [container],
                        "volumes": [{"name": "config", "configMap": {"name": "local-path-config"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": "standard",
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": "rancher.io/local-path",
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Delete",
        },
    ]


def install(settings: ClusterSettings, kubectl: Kubectl) -> None:
    """Apply the add-ons (server-side, idempotent) and wait until they serve."""
    settings.local_path_dir.mkdir(parents=True, exist_ok=True)
    documents = [*coredns(settings), *local_path(settings)]
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": documents})
    kubectl.run(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=intent-fleet-harness",
        "-f",
        "-",
        stdin=body,
    )
    for namespace, deployment in (
        ("kube-system", "coredns"),
        ("local-path-storage", "local-path-provisioner"),
    ):
        kubectl.run(
            "rollout",
            "status",
            f"deployment/{deployment}",
            "-n",
            namespace,
            "--timeout=120s",
            timeout=150,
        )
