"""The whole product on a real node: IntentWorker -> operator -> pods (sidecar + handler) -> bus.

The bus runs on the host, on the pod bridge's address; worker pods run the locally built
sidecar and Python handler images. Intents published to the bus wake the worker from zero,
every one is fulfilled by a real pod, and the worker goes back to zero, draining as it goes.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetcluster.settings import ClusterSettings
from intent_fleet.protocol import BusClient, ClientSettings
from tests.support.busproc import BusProcess, start_bus
from tests.support.cluster import Cluster, project_image, readme_worker, wait_until
from tests.support.operatorproc import OperatorProcess, start_operator

GOAL = "e2e.node"
COUNT = 30


@pytest.fixture
def pod_bus(node_cluster: Cluster, tmp_path: Path) -> Iterator[BusProcess]:
    """A bus the pods can reach: bound to the node's bridge address, not to the outside."""
    if node_cluster.external:
        pytest.skip("needs the harness's node address for a bus on the host")
    address = ClusterSettings().node_address
    proc = start_bus(tmp_path / "bus", extra_args=["--host", address])
    yield proc
    assert proc.stop() == 0, proc.logs()


@pytest.fixture
def node_operator(
    node_cluster: Cluster, crd: Cluster, pod_namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    proc = start_operator(
        node_cluster.kubeconfig,
        tmp_path / "operator.log",
        "--no-leader-election",
        "--namespaces",
        pod_namespace,
    )
    yield proc
    assert proc.stop() == 0, proc.logs()


async def new_key(bus: BusProcess) -> str:
    from intent_fleet.protocol import AdminClient  # noqa: PLC0415

    async with AdminClient(
        settings=ClientSettings(base_url=bus.url), admin_secret=bus.admin_secret
    ) as admin:
        created = await admin.generate_key("e2e-node")
    assert created.api_key is not None
    return created.api_key


def bus_key_secret(cluster: Cluster, namespace: str, bus: BusProcess) -> str:
    """A tenant key on ``bus``, stored as the Secret the workers name."""
    key = asyncio.run(new_key(bus))
    cluster.credentials_secret(namespace, "bus-key", **{"api-key": key})
    return key


async def publish(bus: BusProcess, key: str) -> list[str]:
    async with BusClient(settings=ClientSettings(base_url=bus.url), api_key=key) as client:
        receipts = await asyncio.gather(*(client.publish(GOAL, {"n": n}) for n in range(COUNT)))
    return [r.id for r in receipts]


async def statuses(bus: BusProcess, key: str, ids: list[str]) -> dict[str, int]:
    async with BusClient(settings=ClientSettings(base_url=bus.url), api_key=key) as client:
        found = await asyncio.gather(*(client.status(i) for i in ids))
    counts: dict[str, int] = {}
    for status in found:
        counts[status.status] = counts.get(status.status, 0) + 1
    return counts


def worker(namespace: str, bus_url: str) -> dict[str, Any]:
    return {
        "apiVersion": "intentbus.io/v1alpha1",
        "kind": "IntentWorker",
        "metadata": {"name": "node-worker", "namespace": namespace},
        "spec": {
            "goal": GOAL,
            "bus": {"url": bus_url, "credentialsSecretRef": {"name": "bus-key"}},
            "handler": {"port": 8080, "healthPath": "/healthz", "timeoutSeconds": 20},
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "handler",
                            "image": project_image("handler-python"),
                            "imagePullPolicy": "Never",
                        }
                    ]
                }
            },
            "sidecar": {"image": project_image("sidecar")},
            "scaling": {
                "maxReplicas": 3,
                "targetPerReplica": 10,
                "pollingIntervalSeconds": 1,
                "cooldownSeconds": 5,
                "scaleDown": {"stabilizationWindowSeconds": 0},
            },
        },
    }


def test_intents_wake_real_workers_and_all_are_fulfilled(
    node_cluster: Cluster,
    pod_namespace: str,
    pod_bus: BusProcess,
    node_operator: OperatorProcess,
) -> None:
    key = bus_key_secret(node_cluster, pod_namespace, pod_bus)
    node_cluster.apply(worker(pod_namespace, pod_bus.url))
    wait_until(
        lambda: node_cluster.get("deployment", "node-worker", "-n", pod_namespace),
        30,
        "the worker Deployment",
    )
    ids = asyncio.run(publish(pod_bus, key))

    def running_pods() -> int:
        pods = node_cluster.get(
            "pods", "-l", "intentbus.io/worker=node-worker", "-n", pod_namespace
        )
        return sum(1 for p in pods["items"] if p["status"].get("phase") == "Running")

    wait_until(lambda: running_pods() >= 1, 120, "a worker pod to run")

    def all_done() -> bool:
        counts = asyncio.run(statuses(pod_bus, key, ids))
        return counts.get("fulfilled", 0) == COUNT

    wait_until(all_done, 180, f"all {COUNT} intents fulfilled by the pods", every=1)
    wait_until(
        lambda: (
            not node_cluster.get(
                "pods", "-l", "intentbus.io/worker=node-worker", "-n", pod_namespace
            )["items"]
        ),
        180,
        "the worker to go back to zero pods after the cooldown",
        every=1,
    )
    events = node_cluster.kubectl("get", "events", "-n", pod_namespace).stdout
    assert "Scaled" in events


def pod_state(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The sidecar's /v1/state through its ops listener, straight from the host."""
    address = pod["status"].get("podIP")
    if not address:
        return None
    try:
        with urllib.request.urlopen(f"http://{address}:9090/v1/state", timeout=2) as answer:
            return dict(json.load(answer))
    except OSError:
        return None


def test_scale_in_removes_the_idle_pod_and_cuts_no_job_off(
    node_cluster: Cluster,
    pod_namespace: str,
    pod_bus: BusProcess,
    node_operator: OperatorProcess,
) -> None:
    key = bus_key_secret(node_cluster, pod_namespace, pod_bus)
    spec = worker(pod_namespace, pod_bus.url)
    spec["metadata"]["name"] = "careful"
    spec["spec"]["goal"] = "e2e.careful"
    spec["spec"]["scaling"].update(targetPerReplica=1, maxReplicas=2, cooldownSeconds=3)
    node_cluster.apply(spec)
    selector = "intentbus.io/worker=careful"

    async def publish_pair() -> list[str]:
        async with BusClient(settings=ClientSettings(base_url=pod_bus.url), api_key=key) as c:
            long = await c.publish("e2e.careful", {"sleep": 12})
            short = await c.publish("e2e.careful", {"sleep": 0.1})
        return [long.id, short.id]

    long_id, short_id = asyncio.run(publish_pair())
    wait_until(
        lambda: asyncio.run(statuses(pod_bus, key, [short_id])).get("fulfilled") == 1,
        120,
        "the short intent to be done",
    )

    def one_left() -> list[dict[str, Any]]:
        pods = node_cluster.get("pods", "-l", selector, "-n", pod_namespace)["items"]
        alive = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        return alive if len(alive) == 1 else []

    (survivor,) = wait_until(one_left, 60, "the scale-in to one pod")
    # The pod kept is the one still working, and the operator said so before the scale-in.
    state = pod_state(survivor)
    assert state is not None and state["in_flight"] == 1, state
    cost = (
        survivor["metadata"]
        .get("annotations", {})
        .get("controller.kubernetes.io/pod-deletion-cost")
    )
    assert cost == "1"

    wait_until(
        lambda: asyncio.run(statuses(pod_bus, key, [long_id])).get("fulfilled") == 1,
        90,
        "the long intent to finish on the pod that kept it",
    )

    async def attempts() -> int:
        async with BusClient(settings=ClientSettings(base_url=pod_bus.url), api_key=key) as c:
            return (await c.status(long_id)).claim_attempts or 0

    assert asyncio.run(attempts()) == 1  # never handed to a second worker
    wait_until(
        lambda: not node_cluster.get("pods", "-l", selector, "-n", pod_namespace)["items"],
        120,
        "zero pods after the cooldown",
        every=1,
    )


def test_the_readme_worker_is_admitted_and_runs_under_restricted_pod_security(
    node_cluster: Cluster, pod_namespace: str, pod_bus: BusProcess, node_operator: OperatorProcess
) -> None:
    """Pod Security "restricted", enforced on the namespace, admits every pod the operator makes.

    The only changes to the README's example are the ones a local cluster needs: the bus on the
    host, the locally built images, and a short cooldown.
    """
    for mode in ("enforce", "warn", "audit"):
        node_cluster.kubectl(
            "label", "namespace", pod_namespace, f"pod-security.kubernetes.io/{mode}=restricted"
        )
    # The enforcement is real: a pod without the restricted settings is refused here.
    plain = node_cluster.kubectl(
        "run",
        "plain",
        f"--image={project_image('handler-python')}",
        "--dry-run=server",
        "-n",
        pod_namespace,
        check=False,
    )
    assert plain.returncode != 0 and "violates PodSecurity" in plain.stderr, plain.stderr
    key = bus_key_secret(node_cluster, pod_namespace, pod_bus)
    body = readme_worker()
    body["metadata"]["namespace"] = pod_namespace
    spec = body["spec"]
    spec["bus"]["url"] = pod_bus.url
    (handler,) = spec["template"]["spec"]["containers"]
    handler.update(image=project_image("handler-python"), imagePullPolicy="Never")
    spec["sidecar"] = {"image": project_image("sidecar")}
    spec["scaling"].update(pollingIntervalSeconds=1, cooldownSeconds=5)
    name, goal = body["metadata"]["name"], spec["goal"]
    node_cluster.apply(body)

    async def publish_some() -> list[str]:
        async with BusClient(settings=ClientSettings(base_url=pod_bus.url), api_key=key) as c:
            return [(await c.publish(goal, {"n": n})).id for n in range(5)]

    ids = asyncio.run(publish_some())
    wait_until(
        lambda: asyncio.run(statuses(pod_bus, key, ids)).get("fulfilled") == len(ids),
        180,
        "the README worker to fulfil every intent in a restricted namespace",
        every=1,
    )
    # The ReplicaSet's pods were admitted by the namespace's enforcement, not merely warned.
    rs = node_cluster.get("replicasets", "-l", f"intentbus.io/worker={name}", "-n", pod_namespace)
    assert rs["items"], "no ReplicaSet"
    for item in rs["items"]:
        failure = [
            c
            for c in (item.get("status") or {}).get("conditions", [])
            if c.get("type") == "ReplicaFailure"
        ]
        assert failure == [], failure
    events = node_cluster.kubectl("get", "events", "-n", pod_namespace).stdout
    assert "violates PodSecurity" not in events
