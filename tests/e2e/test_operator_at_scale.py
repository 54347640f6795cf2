"""The operator at fleet scale, against a real API server and a real bus: an idle worker
costs the API server nothing, workers on one bus read their backlogs in one request, a bus
without that extension still works, and a worker at zero wakes on work without waiting for
its next poll.

API requests are counted in the API server's own audit log, which the harness keeps for
IntentWorker and Deployment writes and single reads (hack/cluster: controlplane.AUDIT_POLICY).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import test_operator as operator_e2e
from tests.e2e.test_operator import condition, deployment_replicas, intent_worker, publish, secret
from tests.e2e.test_operator_metrics import PREFIX, scrape
from tests.support.busproc import BusProcess
from tests.support.cluster import Cluster, wait_until
from tests.support.operatorproc import OperatorProcess
from tests.support.procs import Child, free_port, spawn
from tests.support.scrape import value as scrape_value

#: The same operator as the other operator tests: one per test, watching its namespace only.
operator = operator_e2e.operator

#: Seconds an idle worker (polling every second) is watched for writes.
IDLE_SECONDS = 6.0
STATS_ONLY_BUS = Path(__file__).resolve().parents[1] / "support" / "stats_only_bus.py"


def requests(cluster: Cluster, namespace: str) -> list[tuple[str, str, str]]:
    """(verb, resource, subresource) of every audited request the operator made on
    ``namespace``'s IntentWorkers and Deployments so far (the test's own kubectl is left out:
    it uses the same credentials)."""
    if cluster.audit_log is None:
        pytest.skip("only the harness's own API server keeps an audit log")  # external cluster
    out = []
    for event in cluster.audit_events():
        ref: dict[str, Any] = event.get("objectRef") or {}
        if str(event.get("userAgent", "")).startswith("kubectl"):
            continue
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
    wait_until(
        lambda: (
            (crd.get("intentworker", "idle", "-n", namespace) or {})["status"].get("backlog") == 15
        ),
        30,
        "the backlog in the status",
    )
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


def bus_metric(bus: BusProcess, series: str) -> float:
    ask = urllib.request.Request(
        f"{bus.url}/metrics", headers={"Authorization": f"Bearer {bus.admin_secret}"}
    )
    with urllib.request.urlopen(ask, timeout=5) as answer:
        return scrape_value(answer.read().decode(), series)


STATS_ANSWERS = 'intent_bus_responses_total{route="/stats",code="200"}'


def test_workers_on_one_bus_read_their_backlogs_in_one_request(
    crd: Cluster, namespace: str, operator: OperatorProcess, bus: BusProcess, api_key: str
) -> None:
    secret(crd, namespace, api_key)
    published = {"g1": 5, "g2": 15, "g3": 25, "g4": 35}
    for goal in ("g0", *published):
        crd.apply(intent_worker(goal, namespace, bus.url, goal=f"e2e.{goal}"))
    for goal, count in published.items():
        asyncio.run(publish(bus.url, api_key, count, goal=f"e2e.{goal}"))
    # Each its own goal's backlog: 10 per replica.
    expected = {"g0": 0, "g1": 1, "g2": 2, "g3": 3, "g4": 4}
    wait_until(
        lambda: {g: deployment_replicas(crd, g, namespace) for g in expected} == expected,
        30,
        f"replicas {expected}",
    )
    for goal, count in published.items():
        worker = crd.get("intentworker", goal, "-n", namespace)
        assert worker["status"]["backlog"] == count, (goal, worker["status"])

    # Five workers polling every second, for five seconds: about one request a second.
    answers, polls = bus_metric(bus, STATS_ANSWERS), passes(operator)
    time.sleep(5)
    answered = bus_metric(bus, STATS_ANSWERS) - answers
    polled = passes(operator) - polls
    assert polled >= 5 * 4, polled  # five workers did poll about five times each
    assert answered <= 8, f"{answered} /stats requests for {polled} polls: reads not grouped"


def test_a_bus_without_the_batch_extension_still_works(
    crd: Cluster, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    """A bus with per-goal GET /stats only (an older one): one request per goal, as before."""
    secret(crd, namespace, "any-key")
    port = free_port()
    counts, record = tmp_path / "counts.json", tmp_path / "requests.jsonl"
    counts.write_text(json.dumps({"e2e.old": 25, "e2e.older": 0}))
    argv = [sys.executable, str(STATS_ONLY_BUS), "--port", str(port)]
    argv += ["--counts", str(counts), "--record", str(record)]
    old_bus = Child(spawn(argv, tmp_path / "old-bus.log"), tmp_path / "old-bus.log")
    try:
        old_bus.wait_listening(port, what="the stats-only bus")
        url = f"http://127.0.0.1:{port}"
        crd.apply(intent_worker("old", namespace, url, goal="e2e.old"))
        crd.apply(intent_worker("older", namespace, url, goal="e2e.older"))
        wait_until(lambda: deployment_replicas(crd, "old", namespace) == 3, 30, "3 replicas")
        wait_until(lambda: deployment_replicas(crd, "older", namespace) == 0, 30, "0 replicas")
        counts.write_text(json.dumps({"e2e.old": 0, "e2e.older": 12}))
        wait_until(lambda: deployment_replicas(crd, "older", namespace) == 2, 30, "2 replicas")
        asked = [json.loads(line) for line in record.read_text().splitlines()]
        assert {(a["method"], a["path"]) for a in asked} == {("GET", "/health"), ("GET", "/stats")}
        assert {a["goal"] for a in asked if a["path"] == "/stats"} == {"e2e.old", "e2e.older"}
    finally:
        crd.kubectl("delete", "intentworker", "old", "older", "-n", namespace, "--wait=false")
        assert old_bus.stop() in (0, -15), old_bus.logs()


def test_a_worker_at_zero_wakes_on_work_without_waiting_for_its_poll(
    crd: Cluster, namespace: str, operator: OperatorProcess, bus: BusProcess, api_key: str
) -> None:
    secret(crd, namespace, api_key)
    interval = 20
    body = intent_worker("sleepy", namespace, bus.url, goal="e2e.sleepy")
    body["spec"]["scaling"]["pollingIntervalSeconds"] = interval
    crd.apply(body)
    # Its first poll (at a phase of up to 20 s) finds nothing and starts the watch.
    wait_until(
        lambda: (
            (c := condition(crd, "sleepy", namespace, "ScalingActive")) and c["reason"] == "Idle"
        ),
        interval + 15,
        "the first poll",
    )
    wait_until(lambda: bus_metric(bus, "intent_bus_backlog_watches") >= 1, 10, "a backlog watch")
    # The next regular poll is about 20 s away now; work must not wait for it.
    published = time.monotonic()
    asyncio.run(publish(bus.url, api_key, 5, goal="e2e.sleepy"))
    wait_until(lambda: deployment_replicas(crd, "sleepy", namespace) == 1, 10, "the wake-up")
    woke_after = time.monotonic() - published
    assert woke_after < interval / 2, f"scaled after {woke_after:.1f} s: that was the regular poll"
