"""Per goal and per worker, what the dashboard shows of the last minutes: fulfils and fails
each minute, and the workers that claimed, with their last claim.

Counted by this process as it answers (so, with several replicas, by each replica for what
it answered), in memory and bounded: a restart starts afresh.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from intent_fleet.protocol import Now

from ..backend import Ended
from ..records import Status

__all__ = ["GoalActivity", "WorkersSeen"]

#: Minutes of per-goal history (the sparkline).
MINUTES = 15
#: Most goals and workers remembered; the least recently active are forgotten first.
MOST_KEPT = 10_000


@dataclass
class _Minutes:
    #: (minute, fulfilled, failed), oldest first.
    buckets: deque[list[int]] = field(default_factory=lambda: deque(maxlen=MINUTES))

    def add(self, minute: int, fulfilled: int, failed: int) -> None:
        if not self.buckets or self.buckets[-1][0] != minute:
            self.buckets.append([minute, 0, 0])
        self.buckets[-1][1] += fulfilled
        self.buckets[-1][2] += failed

    def series(self, now_minute: int, column: int) -> list[int]:
        by_minute = {b[0]: b[column] for b in self.buckets}
        return [by_minute.get(m, 0) for m in range(now_minute - MINUTES + 1, now_minute + 1)]


class GoalActivity:
    """Fulfils and fails per goal, a minute at a time."""

    def __init__(self, clock: Now) -> None:
        self._clock = clock
        self._goals: OrderedDict[tuple[str, str], _Minutes] = OrderedDict()

    def ended(self, ended: Ended) -> None:
        """A fulfil (counted as fulfilled) or a fail (counted as failed, retried or dead)."""
        self.finished(ended.namespace, ended.goal, failed=ended.status is not Status.FULFILLED)

    def finished(self, namespace: str, goal: str, *, failed: bool) -> None:
        key = (namespace, goal)
        minutes = self._goals.get(key)
        if minutes is None:
            minutes = self._goals[key] = _Minutes()
            if len(self._goals) > MOST_KEPT:
                self._goals.popitem(last=False)
        else:
            self._goals.move_to_end(key)
        minutes.add(int(self._clock() // 60), 0 if failed else 1, 1 if failed else 0)

    def recent(self) -> list[tuple[str, str]]:
        """Goals with a fulfil or fail in the window (a goal can be busy with no backlog)."""
        since = int(self._clock() // 60) - MINUTES + 1
        return [pair for pair, m in self._goals.items() if m.buckets and m.buckets[-1][0] >= since]

    def of(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """For each goal: fulfilled and failed over the last 60 seconds (this minute's count
        and the part of the last minute's that falls in them, as if spread evenly), and the
        fulfilled count of each of the last minutes (oldest first)."""
        clock = self._clock()
        now = int(clock // 60)
        left = 1.0 - (clock % 60) / 60
        out = {}
        for pair in pairs:
            minutes = self._goals.get(pair)
            if minutes is None:
                out[pair] = {"fulfilled_per_minute": 0, "failed_per_minute": 0, "spark": []}
                continue
            fulfilled, failed = minutes.series(now, 1), minutes.series(now, 2)
            out[pair] = {
                "fulfilled_per_minute": round(fulfilled[-1] + fulfilled[-2] * left),
                "failed_per_minute": round(failed[-1] + failed[-2] * left),
                "spark": fulfilled,
            }
        return out


@dataclass
class _Worker:
    key_id: str
    capabilities: tuple[str, ...]
    last_claim: float
    claimed: int = 0


class WorkersSeen:
    """Workers by the id they claim with (or their key's, without one)."""

    def __init__(self, clock: Now) -> None:
        self._clock = clock
        self._workers: OrderedDict[str, _Worker] = OrderedDict()

    def claimed(
        self, worker_id: str | None, *, key_id: str, capabilities: Iterable[str], count: int
    ) -> None:
        name = worker_id or f"key {key_id}"
        seen = self._workers.get(name)
        if seen is None:
            seen = self._workers[name] = _Worker(key_id, (), 0.0)
            if len(self._workers) > MOST_KEPT:
                self._workers.popitem(last=False)
        else:
            self._workers.move_to_end(name)
        seen.key_id, seen.last_claim = key_id, self._clock()
        seen.capabilities = tuple(sorted(capabilities))
        seen.claimed += count

    def listing(self, held: dict[str, int]) -> list[dict[str, Any]]:
        """Most recent first; ``held`` is intents claimed now, by worker id."""
        return [
            {
                "worker": name,
                "key_id": w.key_id,
                "capabilities": list(w.capabilities),
                "last_seen": w.last_claim,
                "claims": w.claimed,
                "held": held.get(name, 0),
            }
            for name, w in reversed(self._workers.items())
        ]
