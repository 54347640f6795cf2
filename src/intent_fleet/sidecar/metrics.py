"""The sidecar's Prometheus metrics, on its own :func:`intent_fleet.telemetry.process_registry`.

The series the worker touches per intent are bound to their label values once, here, so the
hot path is a plain ``inc``/``observe``.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

from intent_fleet.telemetry import LATENCY_BUCKETS, exposition, process_registry, sample, total

__all__ = ["SidecarMetrics"]

_FINE_SECONDS = (
    0.0001,
    0.0002,
    0.0003,
    0.0005,
    0.00075,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    1,
)

#: The bus operations the sidecar times and counts errors of.
BUS_OPS = ("claim", "fulfill", "fail", "extend", "release", "interrupt")


class SidecarMetrics:
    """Every series the sidecar exports; gauges are read from live state at scrape time."""

    def __init__(self) -> None:
        self.registry = registry = process_registry()
        self.claimed = Counter(
            "intent_sidecar_intents_claimed", "Intents claimed.", registry=registry
        )
        self.fulfilled = Counter(
            "intent_sidecar_intents_fulfilled", "Intents fulfilled.", registry=registry
        )
        self.failed = Counter(
            "intent_sidecar_intents_failed",
            "Intents failed, by reason.",
            ["reason"],
            registry=registry,
        )
        self.released = Counter(
            "intent_sidecar_intents_released",
            "Intents handed back unworked (drain).",
            registry=registry,
        )
        self.lease_lost = Counter(
            "intent_sidecar_leases_lost",
            "Outcomes dropped because the lease was lost.",
            registry=registry,
        )
        self.busy = Counter(
            "intent_sidecar_handler_busy",
            "Handler answers of 429/503 (retried later).",
            registry=registry,
        )
        self.polls = Counter(
            "intent_sidecar_claim_polls",
            "Claim requests by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.bus_errors = Counter(
            "intent_sidecar_bus_errors",
            "Failed bus requests by operation and kind.",
            ["op", "kind"],
            registry=registry,
        )
        self.handler_seconds = Histogram(
            "intent_sidecar_handler_duration_seconds",
            "Time the handler took per delivery.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        bus_seconds = Histogram(
            "intent_sidecar_bus_request_duration_seconds",
            "Bus request latency by operation.",
            ["op"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        #: Per operation, bound once.
        self.bus_seconds = {op: bus_seconds.labels(op=op) for op in BUS_OPS}
        overhead = Histogram(
            "intent_sidecar_overhead_seconds",
            "Time the sidecar itself adds per intent: from the claim answer to the handler "
            "request (phase=dispatch) and from the handler answer to the report (phase=report).",
            ["phase"],
            buckets=_FINE_SECONDS,
            registry=registry,
        )
        self.dispatch_overhead = overhead.labels(phase="dispatch")
        self.report_overhead = overhead.labels(phase="report")
        self.polls_claimed = self.polls.labels(outcome="claimed")
        self.polls_empty = self.polls.labels(outcome="empty")

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """A gauge read from live state at each scrape."""
        Gauge(name, help_text, registry=self.registry).set_function(read)

    def value(self, metric: str, /, **labels: str) -> float:
        """One sample as a scrape shows it (full name: ``..._total`` for counters)."""
        return sample(self.registry, metric, **labels)

    def total(self, name: str) -> float:
        """A metric summed over its labels."""
        return total(self.registry, name)

    def render(self) -> bytes:
        return exposition(self.registry)
