"""Backlog figures per (namespace, goal): what ``/stats`` and ``/metrics`` report
and what an autoscaler scales on.

Two views of the same counts: the whole bus (for the admin and the metrics token),
and one tenant's (for an API key), which holds only what that key could claim
(public intents and its own private ones) and what its own workers hold: another
tenant's goals, counts and dead letters never show.
"""

from __future__ import annotations

from collections.abc import Sequence

from intent_fleet.protocol import GoalStats

from .claim_index import ReadyIndex
from .lifecycle import sees

__all__ = ["TerminalCounts", "goal_stats", "stats_of", "status_counts"]

#: (namespace, goal, terminal status, owner) -> count; owner as :func:`.lifecycle.owner_of`.
TerminalCounts = dict[tuple[str, str, str, str], int]


def goal_stats(
    index: ReadyIndex,
    terminal: TerminalCounts,
    *,
    now: float,
    namespace: str | None = None,
    goal: str | None = None,
    viewer: str | None = None,
) -> list[GoalStats]:
    """Every goal with something in it that ``viewer`` sees, optionally filtered."""
    keys = {
        (ns, g)
        for ns, g, q in index.items()
        if not q.empty and (viewer is None or q.visible_to(viewer))
    }
    dead = _dead(terminal, viewer)
    keys.update(dead)
    return [
        _one(index, ns, g, dead=dead, now=now, viewer=viewer)
        for ns, g in sorted(keys)
        if (namespace is None or ns == namespace) and (goal is None or g == goal)
    ]


def stats_of(
    index: ReadyIndex,
    terminal: TerminalCounts,
    pairs: Sequence[tuple[str, str]],
    *,
    now: float,
    viewer: str | None = None,
) -> list[GoalStats]:
    """The backlog of each (namespace, goal) asked for, in the order asked, zeros for a
    goal with nothing in it: one answer for an autoscaler's many goals on this bus."""
    dead = _dead(terminal, viewer)
    return [_one(index, ns, g, dead=dead, now=now, viewer=viewer) for ns, g in pairs]


def _dead(terminal: TerminalCounts, viewer: str | None) -> dict[tuple[str, str], int]:
    dead: dict[tuple[str, str], int] = {}
    for (ns, g, status, owner), n in terminal.items():
        if status == "dead" and sees(viewer, owner):
            dead[(ns, g)] = dead.get((ns, g), 0) + n
    return dead


def _one(
    index: ReadyIndex,
    ns: str,
    g: str,
    *,
    dead: dict[tuple[str, str], int],
    now: float,
    viewer: str | None,
) -> GoalStats:
    q = index.existing(ns, g)
    seen = q.backlog(viewer) if q is not None else None
    oldest = seen.oldest_ready_run_at if seen is not None else None
    return GoalStats(
        namespace=ns,
        goal=g,
        ready=seen.ready if seen else 0,
        delayed=seen.delayed if seen else 0,
        claimed=seen.claimed if seen else 0,
        dead=dead.get((ns, g), 0),
        oldest_ready_age_seconds=max(0.0, now - oldest) if oldest is not None else 0.0,
    )


def status_counts(
    index: ReadyIndex, terminal: TerminalCounts, *, viewer: str | None = None
) -> dict[tuple[str, str], int]:
    """(namespace, status) -> count over every state, for ``intent_bus_intents_total``."""
    counts: dict[tuple[str, str], int] = {}
    for ns, _g, q in index.items():
        ready, delayed, claimed = q.counts(viewer)
        counts[(ns, "open")] = counts.get((ns, "open"), 0) + ready + delayed
        counts[(ns, "claimed")] = counts.get((ns, "claimed"), 0) + claimed
    for (ns, _g, status, owner), n in terminal.items():
        if sees(viewer, owner):
            counts[(ns, status)] = counts.get((ns, status), 0) + n
    if viewer is not None:
        # Namespaces where this viewer sees nothing at all stay out of its view.
        counts = {k: v for k, v in counts.items() if v}
    return counts
