"""The sidecar's Prometheus metrics: its series, on the shared :mod:`intent_fleet.telemetry`
registry (``Counter`` and ``Histogram`` are re-exported here for the sidecar's callers)."""

from __future__ import annotations

from collections.abc import Callable

from intent_fleet.telemetry import LATENCY_BUCKETS, Counter, Gauge, Histogram, render

__all__ = ["Counter", "Histogram", "SidecarMetrics"]

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


class SidecarMetrics:
    """Every series the sidecar exports; gauges are read from live state at scrape time."""

    def __init__(self) -> None:
        self.claimed = Counter("intent_sidecar_intents_claimed_total", "Intents claimed.")
        self.fulfilled = Counter("intent_sidecar_intents_fulfilled_total", "Intents fulfilled.")
        self.failed = Counter("intent_sidecar_intents_failed_total", "Intents failed, by reason.")
        self.released = Counter(
            "intent_sidecar_intents_released_total", "Intents handed back unworked (drain)."
        )
        self.lease_lost = Counter(
            "intent_sidecar_leases_lost_total", "Outcomes dropped because the lease was lost."
        )
        self.busy = Counter(
            "intent_sidecar_handler_busy_total", "Handler answers of 429/503 (retried later)."
        )
        self.polls = Counter("intent_sidecar_claim_polls_total", "Claim requests by outcome.")
        self.bus_errors = Counter(
            "intent_sidecar_bus_errors_total", "Failed bus requests by operation and kind."
        )
        self.handler_seconds = Histogram(
            "intent_sidecar_handler_duration_seconds",
            "Time the handler took per delivery.",
            LATENCY_BUCKETS,
        )
        self.bus_seconds = Histogram(
            "intent_sidecar_bus_request_duration_seconds",
            "Bus request latency by operation.",
            LATENCY_BUCKETS,
        )
        self.overhead_seconds = Histogram(
            "intent_sidecar_overhead_seconds",
            "Time the sidecar itself adds per intent: from the claim answer to the handler "
            "request (phase=dispatch) and from the handler answer to the report (phase=report).",
            _FINE_SECONDS,
        )
        self.gauges: list[tuple[str, str, Callable[[], float]]] = []

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.gauges.append((name, help_text, read))

    def render(self) -> str:
        live = []
        for name, help_text, read in self.gauges:
            gauge = Gauge(name, help_text)
            gauge.set(read())
            live.append(gauge)
        return render(
            [
                self.claimed,
                self.fulfilled,
                self.failed,
                self.released,
                self.lease_lost,
                self.busy,
                self.polls,
                self.bus_errors,
                self.handler_seconds,
                self.bus_seconds,
                self.overhead_seconds,
                *live,
            ]
        )
