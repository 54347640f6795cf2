"""The sidecar's Prometheus metrics: a small registry, rendered as text.

Hand-rolled on purpose: a dozen series do not justify a dependency in every
pod, and rendering stays allocation-light on the scrape path.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["Counter", "Histogram", "SidecarMetrics"]

Labels = tuple[tuple[str, str], ...]


def _fmt_labels(labels: Labels, extra: tuple[str, str] | None = None) -> str:
    items = list(labels) + ([extra] if extra else [])
    if not items:
        return ""
    esc = [(k, v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")) for k, v in items]
    return "{" + ",".join(f'{k}="{v}"' for k, v in esc) + "}"


@dataclass
class Counter:
    name: str
    help: str
    values: dict[Labels, float] = field(default_factory=dict)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        self.values[key] = self.values.get(key, 0.0) + amount

    def get(self, **labels: str) -> float:
        return self.values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        out += [f"{self.name}{_fmt_labels(k)} {v:g}" for k, v in sorted(self.values.items())]
        return out


@dataclass
class Histogram:
    name: str
    help: str
    buckets: Sequence[float]
    series: dict[Labels, list[float]] = field(default_factory=dict)  # counts..., sum, count

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        row = self.series.get(key)
        if row is None:
            row = self.series[key] = [0.0] * (len(self.buckets) + 2)
        slot = bisect.bisect_left(self.buckets, value)
        if slot < len(self.buckets):
            row[slot] += 1
        row[-2] += value
        row[-1] += 1

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for key, row in sorted(self.series.items()):
            cumulative = 0.0
            for bound, count in zip(self.buckets, row, strict=False):
                cumulative += count
                out.append(
                    f"{self.name}_bucket{_fmt_labels(key, ('le', f'{bound:g}'))} {cumulative:g}"
                )
            out.append(f"{self.name}_bucket{_fmt_labels(key, ('le', '+Inf'))} {row[-1]:g}")
            out.append(f"{self.name}_sum{_fmt_labels(key)} {row[-2]:.6f}")
            out.append(f"{self.name}_count{_fmt_labels(key)} {row[-1]:g}")
        return out


_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


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
            _SECONDS,
        )
        self.bus_seconds = Histogram(
            "intent_sidecar_bus_request_duration_seconds",
            "Bus request latency by operation.",
            _SECONDS,
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
        lines: list[str] = []
        for metric in (
            self.claimed,
            self.fulfilled,
            self.failed,
            self.released,
            self.lease_lost,
            self.busy,
            self.polls,
            self.bus_errors,
        ):
            lines += metric.render()
        lines += self.handler_seconds.render()
        lines += self.bus_seconds.render()
        lines += self.overhead_seconds.render()
        for name, help_text, read in self.gauges:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {read():g}"]
        return "\n".join(lines) + "\n"
