"""Real pods on the single node: native sidecars, scaling, host reachability, preStop hooks,
and the add-ons that make it like kind's node: Services, cluster DNS, the default StorageClass.

Every pod runs the locally built Python handler image with its command replaced, so nothing is
pulled: the images were imported into containerd by `cluster.py up --profile node`.
"""

from __future__ import annotations

import ipaddress
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from fleetcluster.settings import ClusterSettings
from tests.support.cluster import Cluster, ClusterManager, project_image, wait_until
from tests.support.hostserver import host_server

IMAGE = project_image("handler-python")


def python(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": IMAGE,
        "imagePullPolicy": "Never",
        "command": ["python3", "-u", "-c", script],
        **extra,
    }


def pod(name: str, namespace: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 5,
            "containers": containers,
            **spec,
        },
    }


def phase(cluster: Cluster, name: str, namespace: str) -> str:
    found = cluster.get("pod", name, "-n", namespace)
    return "" if found is None else str(found.get("status", {}).get("phase", ""))


def wait_phase(
    cluster: Cluster, name: str, namespace: str, *phases: str, timeout: float = 90
) -> str:
    def reached() -> str:
        current = phase(cluster, name, namespace)
        if current == "Failed" and "Failed" not in phases:
            logs = cluster.kubectl("logs", name, "-n", namespace, "--all-containers", check=False)
            raise AssertionError(f"pod {name} failed: {logs.stdout}{logs.stderr}")
        return current if current in phases else ""

    try:
        return str(wait_until(reached, timeout, f"pod {name} to reach {phases}"))
    except AssertionError as timed_out:
        described = cluster.kubectl("describe", "pod", name, "-n", namespace, check=False)
        raise AssertionError(f"{timed_out}\n{described.stdout[-3000:]}") from None


def node_address(cluster: Cluster) -> str:
    if cluster.external:
        pytest.skip("needs the harness's node address (a cluster from KUBECONFIG has its own)")
    return ClusterSettings().node_address


SIDECAR_SERVER = """
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"from-sidecar"
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", 9000), H).serve_forever()
"""

PROBE_LOOPBACK = "import socket; socket.create_connection(('127.0.0.1', 9000), timeout=1)"

MAIN_CLIENT = """
import urllib.request
print("main got:", urllib.request.urlopen("http://127.0.0.1:9000/", timeout=5).read().decode())
"""


def test_native_sidecar_starts_first_and_shares_localhost(
    node_cluster: Cluster, pod_namespace: str
) -> None:
    sidecar = python(
        "sidecar",
        SIDECAR_SERVER,
        restartPolicy="Always",
        # The server is on loopback only, like the real sidecar: probe it from inside the pod.
        startupProbe={
            "exec": {"command": ["python3", "-c", PROBE_LOOPBACK]},
            "periodSeconds": 1,
            "failureThreshold": 30,
        },
    )
    node_cluster.apply(
        pod(
            "native-sidecar", pod_namespace, [python("main", MAIN_CLIENT)], initContainers=[sidecar]
        )
    )
    # The main container finishing ends the pod: the sidecar is stopped for it.
    wait_phase(node_cluster, "native-sidecar", pod_namespace, "Succeeded")
    logs = node_cluster.kubectl("logs", "native-sidecar", "-c", "main", "-n", pod_namespace)
    assert "main got: from-sidecar" in logs.stdout
    status = node_cluster.get("pod", "native-sidecar", "-n", pod_namespace)["status"]
    sidecar_started = status["initContainerStatuses"][0]["state"]["terminated"]["startedAt"]
    main_started = status["containerStatuses"][0]["state"]["terminated"]["startedAt"]
    assert sidecar_started <= main_started


def deployment(name: str, namespace: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [python("idle", "import time\nwhile True: time.sleep(1)")],
                },
            },
        },
    }


def test_deployment_scales_zero_to_three_and_back(
    node_cluster: Cluster, pod_namespace: str
) -> None:
    node_cluster.apply(deployment("fleet", pod_namespace, 0))
    node_cluster.kubectl("scale", "deployment/fleet", "--replicas=3", "-n", pod_namespace)

    def ready() -> int:
        found = node_cluster.get("deployment", "fleet", "-n", pod_namespace)
        return int(found.get("status", {}).get("readyReplicas", 0) or 0) == 3

    wait_until(ready, 120, "3 ready replicas")
    pods = node_cluster.get("pods", "-l", "app=fleet", "-n", pod_namespace)["items"]
    addresses = {p["status"]["podIP"] for p in pods}
    assert len(addresses) == 3
    if not node_cluster.external:
        subnet = ipaddress.ip_network(ClusterSettings().pod_subnet)
        assert all(ipaddress.ip_address(a) in subnet for a in addresses)

    node_cluster.kubectl("scale", "deployment/fleet", "--replicas=0", "-n", pod_namespace)
    wait_until(
        lambda: not node_cluster.get("pods", "-l", "app=fleet", "-n", pod_namespace)["items"],
        120,
        "every replica to be gone",
    )


REACH_HOST = """
import socket, sys, urllib.request
print(urllib.request.urlopen(sys.argv[1] + "/from-pod", timeout=5).read().decode().strip())
print("resolv:", open("/etc/resolv.conf").read().split())
try:
    socket.create_connection(("192.0.2.1", 80), timeout=5)
    print("outside: connected")
except ConnectionRefusedError:
    print("outside: refused")
except OSError as error:
    print("outside:", type(error).__name__)
"""


def test_pod_reaches_the_host_and_nothing_beyond(node_cluster: Cluster, pod_namespace: str) -> None:
    address = node_address(node_cluster)
    with host_server(address) as (url, seen):
        container = python("reach", REACH_HOST)
        container["command"] = [*container["command"], url]
        node_cluster.apply(pod("reach", pod_namespace, [container]))
        wait_phase(node_cluster, "reach", pod_namespace, "Succeeded")
        assert seen.paths() == ["/from-pod"]
    logs = node_cluster.kubectl("logs", "reach", "-n", pod_namespace).stdout
    assert "host says hello" in logs
    # The pod's resolver is the cluster's DNS (CoreDNS behind kube-dns), not the host's.
    assert f"'nameserver', '{ClusterSettings().dns_address}'" in logs
    # TEST-NET-1 is never routed; the FORWARD rule answers at once instead of letting it out.
    assert "outside: refused" in logs


def test_deleting_a_pod_runs_its_prestop_hook(node_cluster: Cluster, pod_namespace: str) -> None:
    address = node_address(node_cluster)
    with host_server(address) as (url, seen):
        hook = f"import urllib.request; urllib.request.urlopen('{url}/prestop', timeout=5)"
        container = python(
            "worker",
            "import time\nwhile True: time.sleep(1)",
            lifecycle={"preStop": {"exec": {"command": ["python3", "-c", hook]}}},
        )
        node_cluster.apply(
            pod("hooked", pod_namespace, [container], terminationGracePeriodSeconds=20)
        )
        wait_phase(node_cluster, "hooked", pod_namespace, "Running")
        assert seen.paths() == []
        node_cluster.kubectl("delete", "pod", "hooked", "-n", pod_namespace, "--wait=false")
        wait_until(lambda: "/prestop" in seen.paths(), 30, "the preStop hook to call the host")
        wait_until(
            lambda: node_cluster.get("pod", "hooked", "-n", pod_namespace) is None,
            60,
            "pod deletion",
        )


WEB = """
import http.server, socket
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from " + socket.gethostname()).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("0.0.0.0", 8080), H).serve_forever()
"""

RESOLVE = """
import socket, sys, time, urllib.error, urllib.request
name = sys.argv[1]
print("resolved:", socket.gethostbyname(name))
# kube-proxy programs a new Service's rules a moment after its endpoint is ready; until then
# the ClusterIP refuses, as it would for any client that starts early.
for attempt in range(30):
    try:
        print("fetched:", urllib.request.urlopen(f"http://{name}:80/", timeout=5).read().decode())
        break
    except urllib.error.URLError as error:
        if not isinstance(error.reason, ConnectionRefusedError):
            raise
        time.sleep(1)
for outside in ("example.com", "example.com."):
    try:
        print("outside resolved:", socket.gethostbyname(outside))
    except OSError as error:
        print("outside:", type(error).__name__)
"""


READY_ON_8080 = {"tcpSocket": {"port": 8080}, "periodSeconds": 1}


def pod_ready(cluster: Cluster, name: str, namespace: str) -> bool:
    """Ready, so the Service's EndpointSlice lists the pod's address as ready."""
    status = (cluster.get("pod", name, "-n", namespace) or {}).get("status", {})
    conditions = status.get("conditions", [])
    return bool(status.get("podIP")) and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
    )


def web_service(cluster: Cluster, namespace: str) -> dict[str, Any]:
    """A web pod behind a ClusterIP Service named web; returns the Service."""
    labels = {"app": "web"}
    cluster.apply(
        {
            **pod(
                "web",
                namespace,
                [python("web", WEB, ports=[{"containerPort": 8080}], readinessProbe=READY_ON_8080)],
            ),
            "metadata": {"name": "web", "namespace": namespace, "labels": labels},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    wait_phase(cluster, "web", namespace, "Running")
    wait_until(lambda: pod_ready(cluster, "web", namespace), 60, "the web pod to be Ready")
    service: dict[str, Any] = cluster.get("service", "web", "-n", namespace)
    return service


def test_pods_resolve_services_and_reach_them_through_their_cluster_ip(
    node_cluster: Cluster, pod_namespace: str
) -> None:
    service = web_service(node_cluster, pod_namespace)
    cluster_ip = service["spec"]["clusterIP"]
    name = f"web.{pod_namespace}.svc.cluster.local"
    container = python("resolve", RESOLVE)
    container["command"] = [*container["command"], name]
    node_cluster.apply(pod("resolve", pod_namespace, [container]))
    wait_phase(node_cluster, "resolve", pod_namespace, "Succeeded")
    logs = node_cluster.kubectl("logs", "resolve", "-n", pod_namespace).stdout
    assert f"resolved: {cluster_ip}" in logs, logs
    assert "fetched: hello from web" in logs, logs
    # The cluster's DNS knows cluster.local and nothing else: no query leaves the machine.
    assert "outside resolved" not in logs, logs
    assert logs.count("outside: gaierror") == 2, logs


def host_fetches(service: dict[str, Any]) -> str:
    """What the host gets from the Service's ClusterIP, once kube-proxy routes it."""
    url = f"http://{service['spec']['clusterIP']}:80/"

    def fetched() -> str:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return str(answer.read().decode())
        except OSError:
            return ""

    return str(wait_until(fetched, 30, "the host to reach the ClusterIP"))


def test_the_host_reaches_a_cluster_ip(node_cluster: Cluster, pod_namespace: str) -> None:
    if node_cluster.external:
        pytest.skip("the host of someone else's cluster is not this machine")
    assert host_fetches(web_service(node_cluster, pod_namespace)) == "hello from web"


PVC_WRITER = """
import os, pathlib
path = pathlib.Path("/data/proof.txt")
path.write_text("kept on the node")
print("wrote", path.read_text(), "uid", os.getuid())
"""


def test_a_claim_binds_to_a_directory_of_the_default_storage_class(
    node_cluster: Cluster, pod_namespace: str
) -> None:
    classes = node_cluster.get("storageclass")["items"]
    default = [
        c["metadata"]["name"]
        for c in classes
        if c["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class")
        == "true"
    ]
    assert len(default) == 1, classes
    node_cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": pod_namespace},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "16Mi"}},
            },
        },
        pod(
            "writer",
            pod_namespace,
            [python("writer", PVC_WRITER, volumeMounts=[{"name": "data", "mountPath": "/data"}])],
            volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        ),
    )
    wait_phase(node_cluster, "writer", pod_namespace, "Succeeded", timeout=120)
    assert (
        "wrote kept on the node"
        in node_cluster.kubectl("logs", "writer", "-n", pod_namespace).stdout
    )
    claim = node_cluster.get("pvc", "data", "-n", pod_namespace)
    assert claim["status"]["phase"] == "Bound"
    volume = node_cluster.get("pv", claim["spec"]["volumeName"])
    assert volume["spec"]["storageClassName"] == default[0]
    if not node_cluster.external:
        path = Path(volume["spec"]["hostPath"]["path"])
        # Under the cluster's state directory: `cluster-down` removes it with the rest.
        assert path.is_relative_to(ClusterSettings().local_path_dir), path
        assert (path / "proof.txt").read_text() == "kept on the node"
        node_cluster.kubectl("delete", "pod", "writer", "-n", pod_namespace)
        node_cluster.kubectl("delete", "pvc", "data", "-n", pod_namespace)
        wait_until(lambda: not path.exists(), 60, "the volume's directory to be removed")


def test_a_second_up_restarts_nothing(
    node_cluster: Cluster, cluster_manager: ClusterManager, pod_namespace: str
) -> None:
    """`up` on a running node probes its components and leaves them be (kube-proxy exits on
    any write to its config file, so `up` must not rewrite an unchanged one)."""
    if node_cluster.external:
        pytest.skip("the harness's own `up`")
    before = cluster_manager.harness("status").stdout
    cluster_manager.harness("up", "--profile", "node")
    time.sleep(2)  # long enough for kube-proxy to notice a rewritten config and exit
    assert cluster_manager.harness("status").stdout == before
    # And Services still work from the host through the same kube-proxy.
    assert host_fetches(web_service(node_cluster, pod_namespace)) == "hello from web"
