"""The processes' Prometheus metrics, on ``prometheus_client``: one registry per process, its
runtime metrics (CPU, memory, file descriptors, GC) included, rendered in the text format.

Each process declares its own series (``intent_fleet.sidecar.metrics``,
``intent_fleet.operator.metrics``, the bus's scrape-time collector) with prometheus_client's
``Counter``, ``Gauge`` and ``Histogram`` on the registry :func:`process_registry` gives it.
What the hot paths pay for that was measured (``bench/metrics.py``): about 1 µs more per
labelled increment than the hand-written registry this replaced, a few µs per intent, which
the sidecar benchmark does not show.

Label values are the caller's responsibility: only values from a small, known set (or the
namespace/name of an object the process manages) belong in a label, never free user input.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

__all__ = [
    "CONTENT_TYPE",
    "LATENCY_BUCKETS",
    "exposition",
    "process_registry",
    "runtime_collectors",
    "sample",
    "total",
]

#: The text exposition format the body is written in (0.0.4, which every scraper reads).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Histogram bounds (seconds) for network and handler latencies: 1 ms to 5 min.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
)

# A ``_created`` sample per counter would double the series for a timestamp nobody graphs.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Built once (they register themselves somewhere: a registry of their own), then added to
# every process registry.
_BUILT_IN = CollectorRegistry()
_RUNTIME: tuple[Collector, ...] = (
    ProcessCollector(registry=_BUILT_IN),
    PlatformCollector(registry=_BUILT_IN),
    GCCollector(registry=_BUILT_IN),
)


def runtime_collectors() -> tuple[Collector, ...]:
    """The process's own figures (``process_*``, ``python_*``), read at scrape time."""
    return _RUNTIME


def process_registry() -> CollectorRegistry:
    """A registry for one process's series, with its runtime figures in it. Not the global
    one: two components in one process (``intent-fleet run``, tests) keep their own."""
    registry = CollectorRegistry(auto_describe=True)
    for collector in _RUNTIME:
        registry.register(collector)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry's series in the text format (serve with :data:`CONTENT_TYPE`)."""
    return generate_latest(registry)


def sample(registry: CollectorRegistry, metric: str, /, **labels: str) -> float:
    """One sample's value as a scrape would show it (0 when the series does not exist yet)."""
    found = registry.get_sample_value(metric, labels)
    return 0.0 if found is None else float(found)


def total(registry: CollectorRegistry, name: str) -> float:
    """The sum of every sample named ``name``, whatever its labels."""
    return sum(s.value for family in registry.collect() for s in family.samples if s.name == name)
