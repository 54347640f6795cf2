"""A small Prometheus registry: counters, gauges and histograms, rendered as text.

Hand-rolled on purpose: a few dozen series do not justify a dependency in every pod, and
rendering stays allocation-light on the scrape path. Each family keeps its series in a dict
keyed by the sorted label pairs, so the order of keyword arguments never splits a series.

Label values are the caller's responsibility: only values from a small, known set (or the
namespace/name of an object the process manages) belong in a label, never free user input.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

__all__ = [
    "CONTENT_TYPE",
    "LATENCY_BUCKETS",
    "Counter",
    "Gauge",
    "Histogram",
    "Labels",
    "MetricFamily",
    "format_labels",
    "render",
]

#: The Content-Type of the text exposition format that :func:`render` produces.
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

#: One series' identity: its label pairs, sorted by name.
Labels = tuple[tuple[str, str], ...]


def _key(labels: dict[str, str]) -> Labels:
    return tuple(sorted(labels.items()))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_labels(labels: Labels, extra: tuple[str, str] | None = None) -> str:
    """``{a="1",b="2"}`` (values escaped), or "" for a series without labels."""
    items = list(labels) + ([extra] if extra else [])
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}"


def _header(name: str, help_text: str, kind: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


class MetricFamily(Protocol):
    """Anything that renders itself as the lines of one metric family."""

    def render(self) -> list[str]: ...


@dataclass
class _Scalars:
    """A family with one number per label set: what counters and gauges share."""

    kind: ClassVar[str]
    name: str
    help: str
    values: dict[Labels, float] = field(default_factory=dict)

    def render(self) -> list[str]:
        out = _header(self.name, self.help, self.kind)
        out += [f"{self.name}{format_labels(k)} {v:g}" for k, v in sorted(self.values.items())]
        return out


class Counter(_Scalars):
    """A value that only goes up, per label set."""

    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: a counter cannot go down (got {amount})")
        key = _key(labels)
        self.values[key] = self.values.get(key, 0.0) + amount

    def get(self, **labels: str) -> float:
        return self.values.get(_key(labels), 0.0)


class Gauge(_Scalars):
    """A value that is set, per label set; a series exists from its first set to its removal."""

    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        self.values[_key(labels)] = float(value)

    def get(self, **labels: str) -> float | None:
        """The series' value, or None when it does not exist."""
        return self.values.get(_key(labels))

    def remove(self, **labels: str) -> None:
        """Drop one series (no error when it is absent), e.g. when its object is deleted."""
        self.values.pop(_key(labels), None)


@dataclass
class Histogram:
    """Observations counted into cumulative ``le`` buckets, with their sum and count."""

    name: str
    help: str
    buckets: Sequence[float]
    #: Per label set: one count per bucket (not cumulative), then the sum, then the count.
    series: dict[Labels, list[float]] = field(default_factory=dict)

    def observe(self, value: float, **labels: str) -> None:
        key = _key(labels)
        row = self.series.get(key)
        if row is None:
            row = self.series[key] = [0.0] * (len(self.buckets) + 2)
        slot = bisect.bisect_left(self.buckets, value)
        if slot < len(self.buckets):
            row[slot] += 1
        row[-2] += value
        row[-1] += 1

    def count(self, **labels: str) -> float:
        row = self.series.get(_key(labels))
        return 0.0 if row is None else row[-1]

    def render(self) -> list[str]:
        out = _header(self.name, self.help, "histogram")
        for key, row in sorted(self.series.items()):
            cumulative = 0.0
            for bound, count in zip(self.buckets, row, strict=False):
                cumulative += count
                out.append(
                    f"{self.name}_bucket{format_labels(key, ('le', f'{bound:g}'))} {cumulative:g}"
                )
            out.append(f"{self.name}_bucket{format_labels(key, ('le', '+Inf'))} {row[-1]:g}")
            out.append(f"{self.name}_sum{format_labels(key)} {row[-2]:.6f}")
            out.append(f"{self.name}_count{format_labels(key)} {row[-1]:g}")
        return out


def render(families: Iterable[MetricFamily]) -> str:
    """The text exposition of ``families``, in the order given, newline-terminated."""
    lines: list[str] = []
    for family in families:
        lines += family.render()
    return "\n".join(lines) + "\n"
