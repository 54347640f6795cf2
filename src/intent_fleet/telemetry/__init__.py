"""Telemetry primitives shared by the deployables: Prometheus metric families and their text.

What belongs here: generic, dependency-free building blocks (``registry``: counters, gauges,
histograms, label formatting, the text exposition format 0.0.4). What does not: any series of
a particular process (``intent_fleet.sidecar.metrics``, ``intent_fleet.operator.metrics``),
and any HTTP serving, which stays with each process's own server. Sits at the bottom layer,
beside :mod:`intent_fleet.protocol`, so every deployable may use it.
"""

from .registry import (
    CONTENT_TYPE,
    LATENCY_BUCKETS,
    Counter,
    Gauge,
    Histogram,
    Labels,
    MetricFamily,
    format_labels,
    render,
)

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
