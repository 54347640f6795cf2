"""Backlog figures per (namespace, goal): what ``/stats`` and ``/metrics`` report
and what an autoscaler scales on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .readiness import ReadyIndex

__all__ = ["GoalStats", "goal_stats", "status_counts"]

#: (namespace, goal, terminal status) -> count.
TerminalCounts = Mapping[tuple[str, str, str], int]


@dataclass(frozen=True, slots=True)
class GoalStats:
    """Backlog of one (namespace, goal)."""

    namespace: str
    goal: str
    ready: int
    delayed: int
    claimed: int
    dead: int
    #: Seconds the oldest ready intent has been claimable; 0 when none is ready.
    oldest_ready_age_seconds: float


def goal_stats(
    index: ReadyIndex,
    terminal: TerminalCounts,
    *,
    now: float,
    namespace: str | None = None,
    goal: str | None = None,
) -> list[GoalStats]:
    keys = {(ns, g) for ns, g, _q in index.items()}
    keys |= {(ns, g) for ns, g, status in terminal if status == "dead"}
    out = []
    for ns, g in sorted(keys):
        if (namespace is not None and ns != namespace) or (goal is not None and g != goal):
            continue
        q = index.existing(ns, g)
        oldest = q.oldest_ready_run_at() if q is not None else None
        out.append(
            GoalStats(
                namespace=ns,
                goal=g,
                ready=q.ready if q else 0,
                delayed=q.delayed if q else 0,
                claimed=q.claimed if q else 0,
                dead=terminal.get((ns, g, "dead"), 0),
                oldest_ready_age_seconds=max(0.0, now - oldest) if oldest is not None else 0.0,
            )
        )
    return out


def status_counts(index: ReadyIndex, terminal: TerminalCounts) -> dict[tuple[str, str], int]:
    """(namespace, status) -> count over every state, for ``intent_bus_intents_total``."""
    counts: dict[tuple[str, str], int] = {}
    for ns, _g, q in index.items():
        counts[(ns, "open")] = counts.get((ns, "open"), 0) + q.ready + q.delayed
        counts[(ns, "claimed")] = counts.get((ns, "claimed"), 0) + q.claimed
    for (ns, _g, status), n in terminal.items():
        counts[(ns, status)] = counts.get((ns, status), 0) + n
    return counts
