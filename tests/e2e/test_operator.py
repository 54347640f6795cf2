"""The operator against a real API server and a real bus: render, own, autoscale, recover.

The control-plane profile runs no pods, so these tests act as the workers themselves where a
backlog has to drain (claim and fulfil through the protocol client); what they check is what
the operator does to the Deployment and to the IntentWorker's status.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from intent_fleet.protocol import BusClient, ClientSettings
from tests.support.busproc import BusProcess
from tests.support.cluster import Cluster, project_image, wait_until
from tests.support.lifecycle import holds_for
from tests.support.operatorproc import OperatorProcess, free_port, start_operator

GOAL = "e2e.resize"
RENDERED_SIDECAR = "intent-sidecar"


@pytest.fixture
def operator(crd: Cluster, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    proc = start_operator(
        crd.kubeconfig, tmp_path / "operator.log", "--no-leader-election", "--namespaces", namespace
    )
    yield proc
    code = proc.stop()
    assert code == 0, f"operator exited with {code}:\n{proc.logs()}"


def secret(cluster: Cluster, namespace: str, key: str) -> None:
    cluster.credentials_secret(namespace, "bus-key", **{"api-key": key})


def intent_worker(name: str, namespace: str, bus_url: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "intentbus.io/v1alpha1",
        "kind": "IntentWorker",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "goal": GOAL,
            "bus": {"url": bus_url, "credentialsSecretRef": {"name": "bus-key"}},
            "handler": {"port": 8080, "timeoutSeconds": 30},
            "template": {
                "spec": {
                    "containers": [{"name": "handler", "image": project_image("handler-python")}]
                }
            },
            "scaling": {
                "minReplicas": 0,
                "maxReplicas": 5,
                "targetPerReplica": 10,
                "pollingIntervalSeconds": 1,
                "cooldownSeconds": 3,
                "scaleDown": {"stabilizationWindowSeconds": 0},
            },
        },
    }
    body["spec"].update(spec)
    return body


def deployment_replicas(cluster: Cluster, name: str, namespace: str) -> int | None:
    found = cluster.get("deployment", name, "-n", namespace)
    return None if found is None else int(found["spec"].get("replicas", 0))


def condition(cluster: Cluster, name: str, namespace: str, kind: str) -> dict[str, Any] | None:
    found = cluster.get("intentworker", name, "-n", namespace) or {}
    for entry in (found.get("status") or {}).get("conditions", []):
        if entry["type"] == kind:
            return dict(entry)
    return None


async def publish(url: str, key: str, count: int, goal: str = GOAL) -> None:
    async with BusClient(settings=ClientSettings(base_url=url), api_key=key) as client:
        await asyncio.gather(*(client.publish(goal, {"n": n}) for n in range(count)))


async def work_off(url: str, key: str, count: int, goal: str = GOAL) -> None:
    """Be the worker fleet: claim and fulfil ``count`` intents."""
    async with BusClient(settings=ClientSettings(base_url=url), api_key=key) as client:
        done = 0
        while done < count:
            outcome = await client.claim(goal, batch=16, wait=1)
            for intent in outcome.intents:
                await client.fulfill(intent.id, claim_token=intent.claim_token)
                done += 1


def test_an_intent_worker_yields_its_deployment(
    crd: Cluster, namespace: str, operator: OperatorProcess, bus: BusProcess, api_key: str
) -> None:
    secret(crd, namespace, api_key)
    crd.apply(intent_worker("resize", namespace, bus.url))
    deployment = wait_until(
        lambda: crd.get("deployment", "resize", "-n", namespace), 30, "the worker Deployment"
    )
    owner = deployment["metadata"]["ownerReferences"][0]
    worker = crd.get("intentworker", "resize", "-n", namespace)
    assert owner["uid"] == worker["metadata"]["uid"]
    assert owner["controller"] is True
    pod = deployment["spec"]["template"]["spec"]
    sidecar = pod["initContainers"][0]
    assert sidecar["name"] == RENDERED_SIDECAR
    assert sidecar["restartPolicy"] == "Always"
    assert pod["containers"][0]["lifecycle"]["preStop"]["httpGet"]["path"] == "/v1/drain"
    assert deployment["spec"]["replicas"] == 0  # minReplicas, nothing queued

    status = wait_until(
        lambda: (crd.get("intentworker", "resize", "-n", namespace) or {}).get("status"),
        30,
        "the IntentWorker's status",
    )
    wait_until(
        lambda: condition(crd, "resize", namespace, "BacklogAvailable"), 30, "BacklogAvailable"
    )
    status = crd.get("intentworker", "resize", "-n", namespace)["status"]
    assert status["observedGeneration"] == worker["metadata"]["generation"]
    assert status["selector"] == "intentbus.io/worker=resize"
    assert condition(crd, "resize", namespace, "BacklogAvailable")["status"] == "True"
    # `kubectl scale` writes spec.replicas through /scale: manual mode, the autoscaler stands
    # aside, and /scale reads back the operator's selector.
    crd.kubectl("scale", "intentworker/resize", "--replicas=2", "-n", namespace)
    wait_until(lambda: deployment_replicas(crd, "resize", namespace) == 2, 30, "manual replicas")
    wait_until(
        lambda: (
            (c := condition(crd, "resize", namespace, "ScalingActive"))
            and c["reason"] == "ManualReplicas"
        ),
        30,
        "ScalingActive to say ManualReplicas",
    )
    scale = json.loads(
        crd.kubectl(
            "get",
            "--raw",
            f"/apis/intentbus.io/v1alpha1/namespaces/{namespace}/intentworkers/resize/scale",
        ).stdout
    )
    assert scale["spec"]["replicas"] == 2
    assert scale["status"]["selector"] == "intentbus.io/worker=resize"


def test_backlog_scales_up_and_back_to_zero_after_cooldown(
    crd: Cluster, namespace: str, operator: OperatorProcess, bus: BusProcess, api_key: str
) -> None:
    secret(crd, namespace, api_key)
    crd.apply(intent_worker("resize", namespace, bus.url))
    wait_until(lambda: deployment_replicas(crd, "resize", namespace) == 0, 30, "replicas 0")

    asyncio.run(publish(bus.url, api_key, 25))
    expected = math.ceil(25 / 10)
    wait_until(
        lambda: deployment_replicas(crd, "resize", namespace) == expected,
        30,
        f"{expected} replicas for 25 intents",
    )
    worker = crd.get("intentworker", "resize", "-n", namespace)
    assert worker["status"]["backlog"] == 25
    assert worker["status"]["desiredReplicas"] == expected
    events = crd.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    assert any(e.get("reason") == "Scaled" for e in json.loads(events)["items"])

    asyncio.run(work_off(bus.url, api_key, 25))
    wait_until(
        lambda: deployment_replicas(crd, "resize", namespace) == 0,
        30,
        "scale to zero once the cooldown has passed",
    )


def test_a_dead_backlog_source_holds_replicas(
    crd: Cluster, namespace: str, operator: OperatorProcess, api_key: str
) -> None:
    secret(crd, namespace, api_key)
    dead = f"http://127.0.0.1:{free_port()}"
    crd.apply(
        intent_worker(
            "stuck",
            namespace,
            dead,
            scaling={"minReplicas": 0, "maxReplicas": 5, "pollingIntervalSeconds": 1},
        )
    )
    wait_until(lambda: deployment_replicas(crd, "stuck", namespace) is not None, 30, "Deployment")
    # Someone scaled it by hand before the source died; the operator must not drop it.
    crd.kubectl(
        "patch",
        "deployment/stuck",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"replicas": 2}}),
    )
    failed = wait_until(
        lambda: (
            (c := condition(crd, "stuck", namespace, "BacklogAvailable"))
            and c["status"] == "False"
            and c
        ),
        30,
        "BacklogAvailable=False",
    )
    assert dead.removeprefix("http://") in failed["message"]
    active = condition(crd, "stuck", namespace, "ScalingActive")
    assert active is not None and active["status"] == "False"
    assert deployment_replicas(crd, "stuck", namespace) == 2


def test_deleting_the_intent_worker_removes_its_deployment(
    crd: Cluster, namespace: str, operator: OperatorProcess, bus: BusProcess, api_key: str
) -> None:
    secret(crd, namespace, api_key)
    crd.apply(intent_worker("gone", namespace, bus.url))
    wait_until(lambda: crd.get("deployment", "gone", "-n", namespace), 30, "the Deployment")
    crd.kubectl("delete", "intentworker", "gone", "-n", namespace, "--wait=true", timeout=60)
    wait_until(
        lambda: crd.get("deployment", "gone", "-n", namespace) is None, 60, "garbage collection"
    )


def test_drift_is_corrected(
    crd: Cluster, namespace: str, operator: OperatorProcess, bus: BusProcess, api_key: str
) -> None:
    secret(crd, namespace, api_key)
    crd.apply(intent_worker("drift", namespace, bus.url))
    wait_until(lambda: crd.get("deployment", "drift", "-n", namespace), 30, "the Deployment")
    crd.kubectl("set", "image", "deployment/drift", "handler=tampered:1", "-n", namespace)

    def restored() -> bool:
        found = crd.get("deployment", "drift", "-n", namespace)
        image = found["spec"]["template"]["spec"]["containers"][0]["image"]
        return bool(image == project_image("handler-python"))

    wait_until(restored, 30, "the operator to restore the handler image")


def test_a_restarted_operator_converges(
    crd: Cluster, namespace: str, bus: BusProcess, api_key: str, tmp_path: Path
) -> None:
    secret(crd, namespace, api_key)
    first = start_operator(
        crd.kubeconfig, tmp_path / "first.log", "--no-leader-election", "--namespaces", namespace
    )
    try:
        crd.apply(intent_worker("restart", namespace, bus.url))
        wait_until(lambda: deployment_replicas(crd, "restart", namespace) == 0, 30, "replicas 0")
    finally:
        first.kill()  # mid-flight: no clean shutdown
    asyncio.run(publish(bus.url, api_key, 61))
    second = start_operator(
        crd.kubeconfig, tmp_path / "second.log", "--no-leader-election", "--namespaces", namespace
    )
    try:
        wait_until(
            lambda: deployment_replicas(crd, "restart", namespace) == 5,
            30,
            "5 replicas (61 intents at 10 each want 7, capped at max 5)",
        )
        limited = condition(crd, "restart", namespace, "ScalingLimited")
        assert limited is not None and limited["status"] == "True"
    finally:
        assert second.stop() == 0, second.logs()
        asyncio.run(work_off(bus.url, api_key, 61))


def test_a_prometheus_source_drives_scaling(
    crd: Cluster, namespace: str, operator: OperatorProcess, bus: BusProcess, api_key: str
) -> None:
    """The bus's own /metrics as a Prometheus source: the route for buses without /stats."""
    secret(crd, namespace, api_key)
    # The bus serves /metrics to its admin token; the source sends it as a bearer token.
    crd.credentials_secret(namespace, "scrape", token=bus.admin_secret)
    goal = f"e2e.prom.{namespace}"
    crd.apply(
        intent_worker(
            "prom",
            namespace,
            bus.url,
            goal=goal,
            backlogSource={
                "type": "prometheus",
                "prometheus": {
                    "url": f"{bus.url}/metrics",
                    "metric": "intent_bus_backlog",
                    "labels": {"goal": goal, "state": "ready"},
                    "authSecretRef": {"name": "scrape"},
                },
            },
        )
    )
    wait_until(lambda: deployment_replicas(crd, "prom", namespace) == 0, 30, "replicas 0")

    asyncio.run(publish(bus.url, api_key, 35, goal))
    wait_until(lambda: deployment_replicas(crd, "prom", namespace) == 4, 30, "4 replicas")
    available = condition(crd, "prom", namespace, "BacklogAvailable")
    assert available is not None and "prometheus" in available["message"]

    asyncio.run(work_off(bus.url, api_key, 35, goal))
    wait_until(lambda: deployment_replicas(crd, "prom", namespace) == 0, 30, "back to zero")


def test_spec_changes_roll_out_and_paused_holds(
    crd: Cluster, namespace: str, operator: OperatorProcess, bus: BusProcess, api_key: str
) -> None:
    secret(crd, namespace, api_key)
    crd.apply(intent_worker("rollout", namespace, bus.url))
    wait_until(lambda: crd.get("deployment", "rollout", "-n", namespace), 30, "the Deployment")

    crd.kubectl(
        "patch",
        "intentworker/rollout",
        "-n",
        namespace,
        "--type=json",
        "-p",
        json.dumps(
            [
                {
                    "op": "replace",
                    "path": "/spec/template/spec/containers/0/image",
                    "value": "v2:1",
                },
                {"op": "replace", "path": "/spec/handler/timeoutSeconds", "value": 90},
            ]
        ),
    )

    def rolled_out() -> bool:
        pod = crd.get("deployment", "rollout", "-n", namespace)["spec"]["template"]["spec"]
        return bool(
            pod["containers"][0]["image"] == "v2:1" and pod["terminationGracePeriodSeconds"] >= 90
        )

    wait_until(rolled_out, 30, "the new image and grace period in the Deployment")

    crd.kubectl(
        "patch",
        "intentworker/rollout",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"paused": True}}),
    )
    wait_until(
        lambda: (
            (c := condition(crd, "rollout", namespace, "ScalingActive")) and c["reason"] == "Paused"
        ),
        30,
        "ScalingActive to say Paused",
    )
    asyncio.run(publish(bus.url, api_key, 30))
    # Paused: a backlog that would ask for 3 replicas changes nothing for a few polls (1 s).
    holds_for(
        lambda: deployment_replicas(crd, "rollout", namespace) == 0,
        seconds=4,
        what="0 replicas while paused",
    )
    crd.kubectl(
        "patch",
        "intentworker/rollout",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"paused": False}}),
    )
    wait_until(lambda: deployment_replicas(crd, "rollout", namespace) == 3, 30, "3 replicas")
    asyncio.run(work_off(bus.url, api_key, 30))
