"""Telemetry shared by the deployables: their Prometheus registry and its text.

What belongs here: the per-process registry (with runtime metrics), rendering, reading a sample
back, and the shared latency buckets (``exposition``). What does not: any series of a particular
process (``intent_fleet.sidecar.metrics``, ``intent_fleet.operator.metrics``,
``intent_fleet.bus.metrics``), and any HTTP serving, which stays with each process's own server
(``pages`` only assembles a process's web page and the headers it is served with).
Sits at the bottom layer, beside :mod:`intent_fleet.protocol`, so every deployable may use it.
"""

from .exposition import (
    CONTENT_TYPE,
    LATENCY_BUCKETS,
    exposition,
    process_registry,
    runtime_collectors,
    sample,
    total,
)

__all__ = [
    "CONTENT_TYPE",
    "LATENCY_BUCKETS",
    "exposition",
    "process_registry",
    "runtime_collectors",
    "sample",
    "total",
]
