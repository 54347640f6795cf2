"""Benchmark what the metrics cost: the sidecar's per-intent updates, a scrape of a large
operator, and the operator's exposition parser against prometheus_client's.

    .venv/bin/python bench/metrics.py            # or: make bench
    .venv/bin/python bench/metrics.py --quick

The processes write their metrics with prometheus_client; the operator reads a Prometheus
backlog source with its own parser (operator/backlog/exposition.py) because this benchmark
shows prometheus_client's parser takes about twice as long per scrape, and that read runs once
per polling interval for every IntentWorker on a Prometheus source. Prints one JSON line of
medians (nanoseconds per operation, milliseconds per scrape or parse).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client.parser import text_string_to_metric_families
from tests.unit.operator.test_render import worker_body

from intent_fleet.operator.backlog.exposition import parse_exposition
from intent_fleet.operator.metrics import OperatorMetrics
from intent_fleet.operator.scaling import Observation
from intent_fleet.operator.spec import parse_worker
from intent_fleet.sidecar import SidecarMetrics


def per_call_ns(action: Callable[[], object], *, calls: int, rounds: int) -> float:
    """Median over ``rounds`` of the time one call takes, in nanoseconds."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter_ns()
        for _ in range(calls):
            action()
        times.append((time.perf_counter_ns() - started) / calls)
    return statistics.median(times)


def per_run_ms(action: Callable[[], object], *, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def one_intent(metrics: SidecarMetrics) -> Callable[[], None]:
    """The metric updates the worker makes for one fulfilled intent."""

    def updates() -> None:
        metrics.polls_claimed.inc()
        metrics.bus_seconds["claim"].observe(0.0012)
        metrics.claimed.inc()
        metrics.dispatch_overhead.observe(0.0003)
        metrics.handler_seconds.observe(0.02)
        metrics.report_overhead.observe(0.0002)
        metrics.fulfilled.inc()
        metrics.bus_seconds["fulfill"].observe(0.0015)

    return updates


def operator_with(workers: int) -> OperatorMetrics:
    metrics = OperatorMetrics()
    for n in range(workers):
        body = worker_body()
        body["metadata"].update(name=f"w{n}", uid=f"u{n}")
        worker = parse_worker(body)
        metrics.backlog_read(worker, seconds=0.01, observation=Observation(backlog=n, in_flight=1))
        metrics.worker_status(worker, replicas=1, ready=1, desired=1)
    return metrics


def prometheus_text(families: int, series: int) -> str:
    lines = []
    for f in range(families):
        lines += [f"# HELP m{f}_total Family {f}.", f"# TYPE m{f}_total counter"]
        lines += [
            f'm{f}_total{{namespace="ns{i % 7}",goal="goal-{i}",state="ready"}} {i * 3}'
            for i in range(series)
        ]
    return "\n".join(lines) + "\n"


def parse_with_prometheus_client(text: str) -> None:
    for family in text_string_to_metric_families(text):
        for _sample in family.samples:
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (for the tests)")
    args = parser.parse_args()
    rounds, calls = (3, 20_000) if args.quick else (9, 200_000)

    sidecar = SidecarMetrics()
    sidecar.gauge("intent_sidecar_in_flight", "In flight.", lambda: 3.0)
    operator = operator_with(100 if args.quick else 1000)
    text = prometheus_text(50, 100)
    report = {
        "sidecar_updates_per_intent_ns": per_call_ns(
            one_intent(sidecar), calls=calls // 8, rounds=rounds
        ),
        "labelled_counter_inc_ns": per_call_ns(
            lambda: sidecar.failed.labels(reason="timeout").inc(), calls=calls, rounds=rounds
        ),
        "bound_histogram_observe_ns": per_call_ns(
            lambda: sidecar.bus_seconds["claim"].observe(0.001), calls=calls, rounds=rounds
        ),
        "sidecar_scrape_ms": per_run_ms(sidecar.render, rounds=rounds * 10),
        "operator_workers": 100 if args.quick else 1000,
        "operator_scrape_ms": per_run_ms(operator.render, rounds=rounds),
        "parse_series": 5000,
        "parse_ms_own": per_run_ms(lambda: parse_exposition(text), rounds=rounds),
        "parse_ms_prometheus_client": per_run_ms(
            lambda: parse_with_prometheus_client(text), rounds=rounds
        ),
    }
    report["parse_ratio_prometheus_client_to_own"] = round(
        report["parse_ms_prometheus_client"] / report["parse_ms_own"], 2
    )
    for key, value in report.items():
        print(f"{key:40s} {value:10.3f}" if isinstance(value, float) else f"{key:40s} {value:10}")
    print(json.dumps({"medians": report}))


if __name__ == "__main__":
    main()
