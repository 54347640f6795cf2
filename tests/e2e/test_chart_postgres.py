"""`helm install` with bus replicas on PostgreSQL, on a real node.

A PostgreSQL started by the test (Debian's, as its own user) listens on the node's address,
where the cluster's pods reach it with a password; the chart gets its URL through an
existing Secret. The bus then runs as a Deployment of two stateless replicas with a
PodDisruptionBudget, the README's IntentWorker fulfils intents published through the bus
Service while one bus pod is deleted, and every intent is in PostgreSQL, fulfilled.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from fleetcluster.release import BUS_NAME, BUS_PORT, Release
from fleetcluster.settings import ClusterSettings
from tests.support.cluster import (
    Cluster,
    count_fulfilled,
    project_image,
    publish_many,
    readme_worker,
    wait_until,
)
from tests.support.postgres import PostgresServer, postgres_bin

COUNT = 40
GOAL = "e2e.postgres"


@dataclass
class Shared:
    release: Release
    team: str
    server: PostgresServer
    database: str


@pytest.fixture(scope="module")
def shared(node_cluster: Cluster) -> Iterator[Shared]:
    if node_cluster.external:
        pytest.skip("needs the harness's node address (a cluster from KUBECONFIG has its own)")
    bindir = postgres_bin()
    assert bindir is not None, "PostgreSQL is not installed: run `make setup`"
    node = ClusterSettings().node_address
    server = PostgresServer.create(
        bindir, listen=("127.0.0.1", node), password="pg-" + secrets.token_hex(12)
    )
    fleet = node_cluster.namespace("fleet-pg")
    team = node_cluster.namespace("team-pg")
    release = node_cluster.release("intent-fleet", fleet)
    try:
        database = server.new_database().rsplit("/", 1)[1]
        url = f"postgresql://bus:{server.password}@{node}:{server.port}/{database}"
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "bus-db", "namespace": fleet},
            "stringData": {"url": url},
        }
        # Through stdin: the password never appears on a command line.
        node_cluster.kubectl("apply", "-f", "-", stdin=json.dumps(secret))
        release.install(
            {
                "bus": {"replicas": 2, "database": {"existingSecret": "bus-db"}},
                "operator": {"watchNamespaces": [team]},
            }
        )
        yield Shared(release, team, server, database)
    finally:
        release.remove([team])
        release.restore_crd()
        server.close()


def bus_pods(cluster: Cluster, namespace: str) -> list[dict[str, object]]:
    pods = cluster.get("pods", "-l", "app.kubernetes.io/component=bus", "-n", namespace)
    return [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")]


def test_the_bus_runs_as_stateless_replicas_with_a_disruption_budget(
    node_cluster: Cluster, shared: Shared
) -> None:
    fleet = shared.release.namespace
    assert node_cluster.get("statefulset", BUS_NAME, "-n", fleet) is None
    deployment = node_cluster.get("deployment", BUS_NAME, "-n", fleet)
    assert deployment["status"]["readyReplicas"] == 2
    budget = node_cluster.get("pdb", BUS_NAME, "-n", fleet)
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["status"]["disruptionsAllowed"] == 1
    pods = bus_pods(node_cluster, fleet)
    assert len(pods) == 2
    for pod in pods:
        spec = pod["spec"]
        assert isinstance(spec, dict)
        (container,) = spec["containers"]
        assert container["image"] == project_image("sidecar")
        assert not [v for v in spec["volumes"] if v["name"] == "data"]
    # Both replicas migrated the same database, once.
    assert shared.server.psql("SELECT max(version) FROM schema_migrations", shared.database)


def test_a_worker_fulfils_everything_while_a_bus_replica_is_deleted(
    node_cluster: Cluster, shared: Shared
) -> None:
    release, team, fleet = shared.release, shared.team, shared.release.namespace
    key = release.tenant_key(team, workload="deployment")
    release.key_secret(team, key)
    body = readme_worker()
    body["metadata"]["namespace"] = team
    spec = body["spec"]
    spec["goal"] = GOAL
    del spec["bus"]["url"]  # the operator's default: the chart's bus Service
    (handler,) = spec["template"]["spec"]["containers"]
    handler["image"] = project_image("handler-python")
    spec["scaling"].update(pollingIntervalSeconds=1, cooldownSeconds=5, maxReplicas=3)
    node_cluster.apply(body)
    with node_cluster.service_url(fleet, BUS_NAME, BUS_PORT) as url:
        published = asyncio.run(publish_many(url, key, GOAL, COUNT))
        # One replica goes while the worker is at it; the other serves, the Deployment
        # replaces the first, and nothing is lost.
        victim = bus_pods(node_cluster, fleet)[0]["metadata"]
        assert isinstance(victim, dict)
        node_cluster.kubectl("delete", "pod", victim["name"], "-n", fleet, "--wait=false")
        wait_until(
            lambda: asyncio.run(count_fulfilled(url, key, published)) == COUNT,
            240,
            f"all {COUNT} intents fulfilled by the worker pods",
            every=1,
        )
    wait_until(
        lambda: (
            (node_cluster.get("deployment", BUS_NAME, "-n", fleet) or {})
            .get("status", {})
            .get("readyReplicas")
            == 2
        ),
        120,
        "the Deployment back at two ready bus replicas",
    )
    # The work is in PostgreSQL, not in a pod: every intent there, fulfilled.
    rows = shared.server.psql(
        f"SELECT status, count(*) FROM intents WHERE goal = '{GOAL}' GROUP BY status",
        shared.database,
    )
    assert rows.strip() == f"fulfilled|{COUNT}", rows
