"""What the operator costs the API server: an idle worker costs it nothing.

Counted in the API server's own audit log, which the harness keeps for IntentWorker and
Deployment writes and single reads (hack/cluster: controlplane.AUDIT_POLICY).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import pytest

from tests.e2e import test_operator as operator_e2e
from tests.e2e.test_operator import condition, deployment_replicas, intent_worker, publish, secret
from tests.e2e.test_operator_metrics import PREFIX, scrape
from tests.support.busproc import BusProcess
from tests.support.cluster import Cluster, wait_until
from tests.support.operatorproc import OperatorProcess

#: The same operator as the other operator tests: one per test, watching its namespace only.
operator = operator_e2e.operator

#: Seconds an idle worker (polling every second) is watched for writes.
IDLE_SECONDS = 6.0


def requests(cluster: Cluster, namespace: str) -> list[tuple[str, str, str]]:
    """(verb, resource, subresource) of every audited request on ``namespace``'s
    IntentWorkers and Deployments so far."""
    if cluster.audit_log is None:
        pytest.skip("only the harness's own API server keeps an audit log")  # external cluster
    out = []
    for event in cluster.audit_events():
        ref: dict[str, Any] = event.get("objectRef") or {}
        if ref.get("namespace") == namespace and ref.get("resource") in (
            "intentworkers",
            "deployments",
        ):
            out.append((event["verb"], ref["resource"], ref.get("subresource", "")))
    return out


def passes(operator: OperatorProcess) -> float:
    return scrape(operator).sum(f"{PREFIX}_reconcile_total", {"result": "ok"}).total


def test_an_idle_worker_costs_the_api_server_nothing(
    crd: Cluster, namespace: str, operator: OperatorProcess, bus: BusProcess, api_key: str
) -> None:
    secret(crd, namespace, api_key)
    crd.apply(intent_worker("idle", namespace, bus.url))  # polls every second
    wait_until(lambda: deployment_replicas(crd, "idle", namespace) == 0, 30, "the Deployment")
    wait_until(
        lambda: (c := condition(crd, "idle", namespace, "ScalingActive")) and c["reason"] == "Idle",
        30,
        "the worker to be idle",
    )
    time.sleep(2)  # the first polls settle what they found (conditions, the first memory)

    before, polls = requests(crd, namespace), passes(operator)
    time.sleep(IDLE_SECONDS)
    during = requests(crd, namespace)[len(before) :]
    # It was polling all along: the test would pass on a dead operator otherwise.
    assert passes(operator) - polls >= IDLE_SECONDS - 2
    assert during == [], f"an idle worker made the operator call the API server: {during}"

    # Work is news: the backlog and the scale-out are written at once.
    asyncio.run(publish(bus.url, api_key, 15))
    wait_until(lambda: deployment_replicas(crd, "idle", namespace) == 2, 30, "2 replicas")
    after = requests(crd, namespace)[len(before) + len(during) :]
    assert ("patch", "intentworkers", "status") in after, after
    assert ("patch", "deployments", "") in after, after
    worker = crd.get("intentworker", "idle", "-n", namespace)
    assert worker["status"]["backlog"] == 15
    assert worker["status"]["desiredReplicas"] == 2

    # The log at info: a line per scaling decision, none of kopf's per-handler chatter.
    lines = [json.loads(line) for line in operator.logs().splitlines() if line.startswith("{")]
    info = [line for line in lines if line["level"] == "info"]
    assert [line for line in info if line["logger"].startswith("kopf.objects")] == []
    scaled = [line["msg"] for line in info if line["msg"].startswith(f"{namespace}/idle: ")]
    # One decision (or two, if a poll fell between the publishes), each saying why.
    assert 1 <= len(scaled) <= 2, scaled
    assert all(re.search(r": backlog \d+ at 10 per replica wants \d: \d -> \d$", m) for m in scaled)
    assert scaled[-1].endswith("wants 2: 0 -> 2") or scaled[-1].endswith("wants 2: 1 -> 2")
