"""The operator's Prometheus metrics: per-worker gauges, reconcile outcomes, backlog reads.

Label values come from small, known sets (results, error kinds, source types, directions) or
are the namespace and name of an IntentWorker the operator manages; a worker's series are
removed when it is deleted, so the series count follows the number of IntentWorkers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import aiohttp
from prometheus_client import Counter, Gauge, Histogram

from intent_fleet.telemetry import exposition, process_registry, sample

from .backlog import SourceName
from .errors import InvalidSpecError, KubeApiError
from .fleetview import FleetView
from .scaling import Observation
from .spec import WorkerSpec

__all__ = ["BACKLOG_READ_BUCKETS", "OperatorMetrics", "error_reason"]

PREFIX = "intent_fleet_operator"

#: Histogram bounds (seconds) of one backlog read: a local HTTP answer takes milliseconds, a
#: sidecars fan-out or a slow Prometheus up to the sources' timeouts (a few seconds).
BACKLOG_READ_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

_SOURCES = frozenset(SourceName)


def error_reason(error: BaseException) -> str:
    """A bounded label for a failed reconcile: the kind of failure, never its message."""
    if isinstance(error, InvalidSpecError):
        return error.reason
    if isinstance(error, KubeApiError):
        return "KubeApi"
    if isinstance(error, TimeoutError):
        return "Timeout"
    if isinstance(error, OSError | aiohttp.ClientError):
        return "Network"
    return "Other"


def _source_label(source: str) -> str:
    # spec.backlogSource.type is an enum in the CRD; anything else must not mint a series.
    return source if source in _SOURCES else "other"


class OperatorMetrics:
    """Every series the operator exports; one instance per process, shared by the controller
    (which records) and the probes server (which renders)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        #: The fleet page's data, recorded with the series.
        self.fleet = FleetView(clock)
        self.registry = registry = process_registry()
        worker = ["namespace", "name"]

        def gauge(name: str, help_text: str) -> Gauge:
            return Gauge(f"{PREFIX}_{name}", help_text, worker, registry=registry)

        self.backlog = gauge("worker_backlog", "Intents ready to claim, as last read.")
        self.in_flight = gauge(
            "worker_in_flight", "Intents claimed and not finished, as last read."
        )
        self.desired = gauge("worker_desired_replicas", "Replicas the operator last decided on.")
        self.replicas = gauge("worker_replicas", "Replicas of the worker Deployment (its status).")
        self.ready = gauge("worker_ready_replicas", "Ready replicas of the worker Deployment.")
        self.reconciles = Counter(
            f"{PREFIX}_reconcile",
            "Reconcile passes (spec applies and autoscaling ticks) by result (ok, error).",
            ["result"],
            registry=registry,
        )
        self.reconcile_errors = Counter(
            f"{PREFIX}_reconcile_errors",
            "Failed reconcile passes by reason (InvalidSpec, PodNotAllowed, "
            "CredentialsNotPermitted, DeploymentNotOwned, KubeApi, Timeout, Network, Other).",
            ["reason"],
            registry=registry,
        )
        self.backlog_read_seconds = Histogram(
            f"{PREFIX}_backlog_read_seconds",
            "Time one backlog read took, failed reads included, by source type.",
            ["source"],
            buckets=BACKLOG_READ_BUCKETS,
            registry=registry,
        )
        self.backlog_read_failures = Counter(
            f"{PREFIX}_backlog_read_failures",
            "Backlog reads that failed, by source type.",
            ["source"],
            registry=registry,
        )
        self.scale_events = Counter(
            f"{PREFIX}_scale_events",
            "Replica changes the autoscaler made, by direction (up, down).",
            ["direction"],
            registry=registry,
        )
        self.leader = Gauge(
            f"{PREFIX}_leader", "1 while this replica leads and acts, else 0.", registry=registry
        )
        self.leader.set(0)
        #: uid -> (namespace, name) of every worker with series, so deletion can drop them.
        self._workers: dict[str, tuple[str, str]] = {}

    def _worker_gauges(self) -> tuple[Gauge, ...]:
        return (self.backlog, self.in_flight, self.desired, self.replicas, self.ready)

    def _labels(self, worker: WorkerSpec) -> dict[str, str]:
        self._workers[worker.uid] = (worker.namespace, worker.name)
        return {"namespace": worker.namespace, "name": worker.name}

    def value(self, metric: str, /, **labels: str) -> float:
        """One sample as a scrape shows it (full name: ``..._total`` for counters)."""
        return sample(self.registry, metric, **labels)

    @contextmanager
    def reconciling(self) -> Iterator[None]:
        """Count the pass run inside: ``ok``, or ``error`` with its reason (then re-raised)."""
        try:
            yield
        except Exception as error:
            self.reconciles.labels(result="error").inc()
            self.reconcile_errors.labels(reason=error_reason(error)).inc()
            raise
        self.reconciles.labels(result="ok").inc()

    def backlog_read(self, worker: WorkerSpec, *, seconds: float, observation: Observation) -> None:
        """One read of the worker's source; a failed one (backlog None) keeps the last values."""
        source = _source_label(worker.source.type)
        self.backlog_read_seconds.labels(source=source).observe(seconds)
        if observation.backlog is None:
            self.backlog_read_failures.labels(source=source).inc()
            return
        labels = self._labels(worker)
        self.backlog.labels(**labels).set(observation.backlog)
        self.in_flight.labels(**labels).set(observation.in_flight)
        self.fleet.observed(worker, backlog=observation.backlog, in_flight=observation.in_flight)

    def worker_status(
        self,
        worker: WorkerSpec,
        *,
        replicas: int,
        ready: int,
        desired: int | None,
        conditions: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """What the status patch just said about the worker's replicas."""
        labels = self._labels(worker)
        self.replicas.labels(**labels).set(replicas)
        self.ready.labels(**labels).set(ready)
        if desired is not None:
            self.desired.labels(**labels).set(desired)
        self.fleet.status(
            worker, replicas=replicas, ready=ready, desired=desired, conditions=conditions
        )

    def scaled(self, worker: WorkerSpec, current: int, target: int, *, reason: str = "") -> None:
        if target != current:
            self.scale_events.labels(direction="up" if target > current else "down").inc()
            self.fleet.scaled(worker, current=current, target=target, reason=reason)

    def forget(self, uid: str) -> None:
        """Drop the series of a deleted worker."""
        self.fleet.forget(uid)
        known = self._workers.pop(uid, None)
        if known is None:
            return
        namespace, name = known
        for gauge in self._worker_gauges():
            # A worker with no reading yet has no series on some gauges.
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, name)

    def set_leader(self, leading: bool) -> None:
        self.leader.set(1 if leading else 0)

    def render(self) -> bytes:
        return exposition(self.registry)
