"""The whole product on a real node, all of it in the cluster, the way users run it.

The chart's operator and bus run from their images; worker pods run the sidecar and the Python
example handler. Intents published from the host reach the bus through its Service (ClusterIP
on the harness's node, `kubectl port-forward` elsewhere) and the sidecars' state is read
through the API server's pod proxy, so this module runs unchanged against any cluster in
KUBECONFIG once the images are loaded there. The workers' namespace enforces Pod Security
"restricted": every pod the operator makes is admitted by it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from fleetcluster.release import BUS_NAME, BUS_PORT, Release
from intent_fleet.protocol import BusClient, ClientSettings
from tests.support.cluster import Cluster, project_image, readme_worker, wait_until


@dataclass(frozen=True)
class Fleet:
    """The chart installed for this module, a restricted team namespace, a tenant key on the
    chart's bus, and that bus's URL from this host."""

    cluster: Cluster
    release: Release
    team: str
    key: str
    url: str


@pytest.fixture(scope="module")
def fleet(node_cluster: Cluster) -> Iterator[Fleet]:
    team = node_cluster.namespace("team")
    for mode in ("enforce", "warn", "audit"):
        node_cluster.kubectl(
            "label", "namespace", team, f"pod-security.kubernetes.io/{mode}=restricted"
        )
    release = node_cluster.release("intent-fleet", node_cluster.namespace("fleet"))
    try:
        release.install({"operator": {"watchNamespaces": [team]}})
        key = release.tenant_key(team)
        release.key_secret(team, key)
        with node_cluster.service_url(release.namespace, BUS_NAME, BUS_PORT) as url:
            yield Fleet(node_cluster, release, team, key, url)
    finally:
        release.remove([team])
        release.restore_crd()


async def publish(fleet: Fleet, goal: str, payloads: list[Any]) -> list[str]:
    async with BusClient(settings=ClientSettings(base_url=fleet.url), api_key=fleet.key) as c:
        receipts = await asyncio.gather(*(c.publish(goal, payload) for payload in payloads))
    return [r.id for r in receipts]


async def statuses(fleet: Fleet, ids: list[str]) -> dict[str, int]:
    async with BusClient(settings=ClientSettings(base_url=fleet.url), api_key=fleet.key) as c:
        found = await asyncio.gather(*(c.status(i) for i in ids))
    counts: dict[str, int] = {}
    for status in found:
        counts[status.status] = counts.get(status.status, 0) + 1
    return counts


def worker(fleet: Fleet, name: str, goal: str, **scaling: Any) -> dict[str, Any]:
    return {
        "apiVersion": "intentbus.io/v1alpha1",
        "kind": "IntentWorker",
        "metadata": {"name": name, "namespace": fleet.team},
        "spec": {
            "goal": goal,
            "bus": {"url": fleet.release.bus_url, "credentialsSecretRef": {"name": "bus-key"}},
            "handler": {"port": 8080, "healthPath": "/healthz", "timeoutSeconds": 20},
            "template": {
                "spec": {
                    "containers": [{"name": "handler", "image": project_image("handler-python")}]
                }
            },
            "scaling": {
                "maxReplicas": 3,
                "targetPerReplica": 10,
                "pollingIntervalSeconds": 1,
                "cooldownSeconds": 5,
                "scaleDown": {"stabilizationWindowSeconds": 0},
                **scaling,
            },
        },
    }


def pods_of(fleet: Fleet, name: str) -> list[dict[str, Any]]:
    found = fleet.cluster.get("pods", "-l", f"intentbus.io/worker={name}", "-n", fleet.team)
    return list(found["items"])


def pod_state(fleet: Fleet, pod: dict[str, Any]) -> dict[str, Any] | None:
    """The sidecar's /v1/state on its ops port, through the API server's pod proxy."""
    name = pod["metadata"]["name"]
    done = fleet.cluster.kubectl(
        "get",
        "--raw",
        f"/api/v1/namespaces/{fleet.team}/pods/{name}:9090/proxy/v1/state",
        check=False,
    )
    return dict(json.loads(done.stdout)) if done.returncode == 0 else None


def test_intents_wake_real_workers_and_all_are_fulfilled(fleet: Fleet) -> None:
    fleet.cluster.apply(worker(fleet, "node-worker", "e2e.node"))
    wait_until(
        lambda: fleet.cluster.get("deployment", "node-worker", "-n", fleet.team),
        30,
        "the worker Deployment",
    )
    ids = asyncio.run(publish(fleet, "e2e.node", [{"n": n} for n in range(30)]))

    def running_pods() -> int:
        return sum(
            1 for p in pods_of(fleet, "node-worker") if p["status"].get("phase") == "Running"
        )

    wait_until(lambda: running_pods() >= 1, 120, "a worker pod to run")
    wait_until(
        lambda: asyncio.run(statuses(fleet, ids)).get("fulfilled", 0) == len(ids),
        180,
        f"all {len(ids)} intents fulfilled by the pods",
        every=1,
    )
    wait_until(
        lambda: not pods_of(fleet, "node-worker"),
        180,
        "the worker to go back to zero pods after the cooldown",
        every=1,
    )
    events = fleet.cluster.kubectl("get", "events", "-n", fleet.team).stdout
    assert "Scaled" in events


def test_scale_in_removes_the_idle_pod_and_cuts_no_job_off(fleet: Fleet) -> None:
    fleet.cluster.apply(
        worker(
            fleet, "careful", "e2e.careful", targetPerReplica=1, maxReplicas=2, cooldownSeconds=3
        )
    )
    long_id, short_id = asyncio.run(publish(fleet, "e2e.careful", [{"sleep": 12}, {"sleep": 0.1}]))
    wait_until(
        lambda: asyncio.run(statuses(fleet, [short_id])).get("fulfilled") == 1,
        120,
        "the short intent to be done",
    )

    def one_left() -> list[dict[str, Any]]:
        alive = [p for p in pods_of(fleet, "careful") if not p["metadata"].get("deletionTimestamp")]
        return alive if len(alive) == 1 else []

    (survivor,) = wait_until(one_left, 60, "the scale-in to one pod")
    # The pod kept is the one still working, and the operator said so before the scale-in.
    state = pod_state(fleet, survivor)
    assert state is not None and state["in_flight"] == 1, state
    cost = (
        survivor["metadata"]
        .get("annotations", {})
        .get("controller.kubernetes.io/pod-deletion-cost")
    )
    assert cost == "1"
    wait_until(
        lambda: asyncio.run(statuses(fleet, [long_id])).get("fulfilled") == 1,
        90,
        "the long intent to finish on the pod that kept it",
    )

    async def attempts() -> int:
        async with BusClient(
            settings=ClientSettings(base_url=fleet.url), api_key=fleet.key
        ) as client:
            return (await client.status(long_id)).claim_attempts or 0

    assert asyncio.run(attempts()) == 1  # never handed to a second worker
    wait_until(lambda: not pods_of(fleet, "careful"), 120, "zero pods after the cooldown", every=1)


def test_the_readme_worker_is_admitted_and_runs_under_restricted_pod_security(
    fleet: Fleet,
) -> None:
    """Pod Security "restricted", enforced on the namespace, admits every pod the operator makes.

    The only changes to the README's example are the ones a test cluster needs: the chart's bus,
    the locally built handler image, and a short cooldown.
    """
    # The enforcement is real: a pod without the restricted settings is refused here.
    plain = fleet.cluster.kubectl(
        "run",
        "plain",
        f"--image={project_image('handler-python')}",
        "--dry-run=server",
        "-n",
        fleet.team,
        check=False,
    )
    assert plain.returncode != 0 and "violates PodSecurity" in plain.stderr, plain.stderr
    body = readme_worker()
    body["metadata"]["namespace"] = fleet.team
    spec = body["spec"]
    spec["bus"]["url"] = fleet.release.bus_url
    (handler,) = spec["template"]["spec"]["containers"]
    handler.update(image=project_image("handler-python"))
    spec["scaling"].update(pollingIntervalSeconds=1, cooldownSeconds=5)
    name, goal = body["metadata"]["name"], spec["goal"]
    fleet.cluster.apply(body)
    ids = asyncio.run(publish(fleet, goal, [{"n": n} for n in range(5)]))
    wait_until(
        lambda: asyncio.run(statuses(fleet, ids)).get("fulfilled") == len(ids),
        180,
        "the README worker to fulfil every intent in a restricted namespace",
        every=1,
    )
    # The ReplicaSet's pods were admitted by the namespace's enforcement, not merely warned.
    rs = fleet.cluster.get("replicasets", "-l", f"intentbus.io/worker={name}", "-n", fleet.team)
    assert rs["items"], "no ReplicaSet"
    for item in rs["items"]:
        failure = [
            c
            for c in (item.get("status") or {}).get("conditions", [])
            if c.get("type") == "ReplicaFailure"
        ]
        assert failure == [], failure
    events = fleet.cluster.kubectl("get", "events", "-n", fleet.team).stdout
    assert "violates PodSecurity" not in events
