"""The operator's /metrics against a real API server and a real bus: a worker's series follow
its backlog and decisions, and vanish with it."""

from __future__ import annotations

import asyncio
import math
import urllib.request

from intent_fleet.operator.backlog import Exposition, parse_exposition
from tests.e2e import test_operator as operator_e2e
from tests.e2e.test_operator import intent_worker, publish, secret
from tests.support.busproc import BusProcess
from tests.support.cluster import Cluster, wait_until
from tests.support.operatorproc import OperatorProcess

PREFIX = "intent_fleet_operator"

#: The same operator as the other operator tests: one per test, watching its namespace only.
operator = operator_e2e.operator


def scrape(operator: OperatorProcess) -> Exposition:
    with urllib.request.urlopen(f"http://{operator.listen}/metrics", timeout=5) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse_exposition(answer.read().decode())


def test_metrics_follow_a_worker_from_backlog_to_deletion(
    crd: Cluster, namespace: str, operator: OperatorProcess, bus: BusProcess, api_key: str
) -> None:
    secret(crd, namespace, api_key)
    crd.apply(intent_worker("resize", namespace, bus.url))
    asyncio.run(publish(bus.url, api_key, 25))
    expected = math.ceil(25 / 10)
    worker = {"namespace": namespace, "name": "resize"}

    def backlog_and_desired() -> Exposition | None:
        page = scrape(operator)
        backlog = page.sum(f"{PREFIX}_worker_backlog", worker)
        desired = page.sum(f"{PREFIX}_worker_desired_replicas", worker)
        return page if (backlog.total, desired.total) == (25, expected) else None

    page = wait_until(backlog_and_desired, 30, f"backlog 25 and {expected} desired in /metrics")
    reads = page.sum(f"{PREFIX}_backlog_read_seconds_count", {"source": "busStats"})
    assert reads.total > 0
    assert page.sum(f"{PREFIX}_worker_in_flight", worker).series == 1
    assert page.sum(f"{PREFIX}_scale_events_total", {"direction": "up"}).total >= 1
    assert page.sum(f"{PREFIX}_reconcile_total", {"result": "ok"}).total > 0
    assert page.sum(f"{PREFIX}_leader", {}).total == 1
    assert page.types[f"{PREFIX}_backlog_read_seconds"] == "histogram"

    crd.kubectl("delete", "intentworker", "resize", "-n", namespace)

    def no_series_left() -> bool:
        page = scrape(operator)
        return not any(
            s.labels.get("namespace") == namespace and s.labels.get("name") == "resize"
            for s in page.samples
        )

    wait_until(no_series_left, 30, "the deleted worker's series to leave /metrics")
