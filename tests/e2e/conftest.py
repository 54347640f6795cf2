"""End-to-end fixtures: a real Kubernetes (hack/cluster, or the one in KUBECONFIG).

The cluster lives for this package only, so the integration tests that follow run on a quiet
machine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from intent_fleet.protocol import AdminClient, ClientSettings
from tests.support.busproc import BusProcess, start_bus
from tests.support.cluster import REPO, Cluster, ClusterManager


@pytest.fixture(scope="package")
def cluster_manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterManager]:
    manager = ClusterManager()
    yield manager
    manager.finish(keep_logs=logs_dir(tmp_path_factory))


def logs_dir(factory: pytest.TempPathFactory) -> Path:
    """Where the cluster's logs are copied at the end (printed if the session failed)."""
    return factory.getbasetemp() / "cluster-logs"


@pytest.fixture(scope="package")
def control_plane(cluster_manager: ClusterManager) -> Cluster:
    """etcd + apiserver + controller-manager: enough for API behaviour, no pods run."""
    return cluster_manager.get("control-plane")


@pytest.fixture(scope="package")
def node_cluster(cluster_manager: ClusterManager) -> Cluster:
    """The full single node: scheduler, containerd, kubelet; pods really run."""
    return cluster_manager.get("node")


@pytest.fixture
def namespace(control_plane: Cluster) -> Iterator[str]:
    name = control_plane.namespace()
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def pod_namespace(node_cluster: Cluster) -> Iterator[str]:
    name = node_cluster.namespace("pods")
    yield name
    node_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


# --- the operator's world: its CRD, a real bus and a tenant key on it -------------------------


@pytest.fixture(scope="module")
def crd(control_plane: Cluster) -> Cluster:
    control_plane.kubectl("apply", "-f", str(REPO / "crds"))
    control_plane.wait_established("intentworkers.intentbus.io")
    return control_plane


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BusProcess]:
    proc = start_bus(tmp_path_factory.mktemp("operator-bus"))
    yield proc
    assert proc.stop() == 0, proc.logs()


@pytest.fixture(scope="module")
def api_key(bus: BusProcess) -> str:
    async def create() -> str:
        async with AdminClient(
            settings=ClientSettings(base_url=bus.url), admin_secret=bus.admin_secret
        ) as admin:
            created = await admin.generate_key("e2e-operator")
        assert created.api_key is not None
        return created.api_key

    return asyncio.run(create())
