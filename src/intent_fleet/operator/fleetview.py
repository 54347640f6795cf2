"""What the operator's fleet page shows: each IntentWorker as the operator last saw it, its
recent scaling decisions, and its backlog against its replicas over the last minutes.

Kept in memory by the replica that does the work (the leader), recorded where the metrics
are (:class:`~.metrics.OperatorMetrics`), gone with the process: the page is for looking at
a fleet now, the metrics are for keeping.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .spec import WorkerSpec

__all__ = ["FleetView"]

#: Seconds of history each worker's chart keeps.
HISTORY_SECONDS = 900.0
#: Scaling decisions kept per worker.
EVENTS_KEPT = 10
#: Points kept per worker, whatever the poll interval (a 1 s poll fills 15 minutes).
POINTS_KEPT = 1000


@dataclass
class _Worker:
    namespace: str
    name: str
    goal: str
    backlog: int | None = None
    in_flight: int = 0
    desired: int | None = None
    replicas: int = 0
    ready: int = 0
    conditions: list[Mapping[str, Any]] = field(default_factory=list)
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))
    #: (time, backlog, replicas), oldest first.
    points: deque[tuple[float, int, int]] = field(default_factory=lambda: deque(maxlen=POINTS_KEPT))


class FleetView:
    """Records what the controller saw and did; :meth:`snapshot` is the page's data."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._workers: dict[str, _Worker] = {}

    def _of(self, worker: WorkerSpec) -> _Worker:
        found = self._workers.get(worker.uid)
        if found is None:
            found = self._workers[worker.uid] = _Worker(worker.namespace, worker.name, worker.goal)
        found.goal = worker.goal  # a spec may move a worker to another goal
        return found

    def observed(self, worker: WorkerSpec, *, backlog: int, in_flight: int) -> None:
        seen = self._of(worker)
        seen.backlog, seen.in_flight = backlog, in_flight

    def status(
        self,
        worker: WorkerSpec,
        *,
        replicas: int,
        ready: int,
        desired: int | None,
        conditions: Sequence[Mapping[str, Any]],
    ) -> None:
        """What a status patch just said; also the chart's next point."""
        seen = self._of(worker)
        seen.replicas, seen.ready, seen.conditions = replicas, ready, list(conditions)
        if desired is not None:
            seen.desired = desired
        now = self._clock()
        if seen.backlog is not None:
            seen.points.append((now, seen.backlog, replicas))
        while seen.points and seen.points[0][0] < now - HISTORY_SECONDS:
            seen.points.popleft()

    def scaled(self, worker: WorkerSpec, *, current: int, target: int, reason: str) -> None:
        self._of(worker).events.append(
            {"time": self._clock(), "from": current, "to": target, "reason": reason}
        )

    def forget(self, uid: str) -> None:
        self._workers.pop(uid, None)

    def snapshot(self) -> dict[str, Any]:
        workers = sorted(self._workers.values(), key=lambda w: (w.namespace, w.name))
        return {
            "now": self._clock(),
            "history_seconds": HISTORY_SECONDS,
            "workers": [
                {
                    "namespace": w.namespace,
                    "name": w.name,
                    "goal": w.goal,
                    "backlog": w.backlog,
                    "in_flight": w.in_flight,
                    "desired": w.desired,
                    "replicas": w.replicas,
                    "ready": w.ready,
                    "conditions": w.conditions,
                    "events": list(w.events)[::-1],
                    "points": [list(p) for p in w.points],
                }
                for w in workers
            ],
        }
