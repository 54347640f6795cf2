"""Backlog figures per (namespace, goal) counted by the database, for ``/stats``,
``/metrics`` and an autoscaler's backlog watch.

The same two views as :mod:`..backlog`: the whole bus (``viewer`` None), or one tenant's,
which holds what that key could claim (public intents and its own private ones,
:func:`~..lifecycle.sees` carried out in SQL) and what its own workers hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from intent_fleet.protocol import GoalStats, Now

from ..quotas import check_parked
from ..settings import LimitSettings
from .wakeups import Waiter, Wakeups

if TYPE_CHECKING:
    from .database import Database

__all__ = ["SharedBacklogs"]

#: Visible to viewer $V: public intents and its own private ones ($V null: all).
_SEES: Final = "($V::text IS NULL OR visibility = 'public' OR publisher = $V)"


def _empty(namespace: str, goal: str) -> GoalStats:
    return GoalStats(
        namespace=namespace,
        goal=goal,
        ready=0,
        delayed=0,
        claimed=0,
        dead=0,
        oldest_ready_age_seconds=0.0,
    )


class SharedBacklogs:
    """Counts of intents by goal and status, as one viewer sees them."""

    def __init__(
        self,
        *,
        db: Database,
        limits: LimitSettings,
        clock: Now,
        wakeups: Wakeups,
    ) -> None:
        self._db = db
        self._limits = limits
        self._clock = clock
        self._wakeups = wakeups

    async def stats(
        self, namespace: str | None = None, goal: str | None = None, *, viewer: str | None = None
    ) -> list[GoalStats]:
        """Every goal with something in it that ``viewer`` sees, optionally filtered."""
        return await self._goal_rows(
            viewer=viewer,
            where="AND ($3::text IS NULL OR namespace = $3) AND ($4::text IS NULL OR goal = $4)",
            params=(namespace, goal),
        )

    async def stats_of(
        self, pairs: Sequence[tuple[str, str]], *, viewer: str | None = None
    ) -> list[GoalStats]:
        """The backlog of each (namespace, goal), in the order asked (zeros when empty)."""
        found = await self._goal_rows(
            viewer=viewer,
            where="AND (namespace, goal) IN (SELECT * FROM unnest($3::text[], $4::text[]))",
            params=([ns for ns, _ in pairs], [g for _, g in pairs]),
        )
        by_pair = {(s.namespace, s.goal): s for s in found}
        return [by_pair.get((ns, g)) or _empty(ns, g) for ns, g in pairs]

    async def watch(
        self, pairs: Sequence[tuple[str, str]], *, viewer: str | None, wait: float
    ) -> None:
        """Return once one of ``pairs`` has work ``viewer`` could claim, or after ``wait`` s."""

        async def any_ready() -> bool:
            return any(s.ready for s in await self.stats_of(pairs, viewer=viewer))

        if await any_ready():
            return
        if viewer is not None:
            parked = self._wakeups.count_of(viewer, claims=False)
            check_parked(self._limits, parked, watches=True)
        await self._wakeups.park(Waiter(pairs=frozenset(pairs), key_id=viewer), wait, any_ready)

    async def status_counts(self, *, viewer: str | None) -> dict[tuple[str, str], int]:
        """(namespace, status) -> intents ``viewer`` sees (its own claims among the claimed)."""
        sees = _SEES.replace("$V", "$1")
        async with self._db.conn() as conn:
            rows = await conn.fetch(
                "SELECT namespace, status, count(*) AS n FROM intents"
                " WHERE (status = 'claimed' AND ($1::text IS NULL OR claimer = $1))"
                f" OR (status <> 'claimed' AND {sees})"
                " GROUP BY namespace, status",
                viewer,
            )
        return {(r["namespace"], r["status"]): r["n"] for r in rows}

    async def held_by_worker(self) -> dict[str, int]:
        """Intents claimed now, by worker id (``key <key id>`` without one)."""
        async with self._db.conn() as conn:
            rows = await conn.fetch(
                "SELECT coalesce(worker_id, 'key ' || claimer) AS who, count(*) AS n"
                " FROM intents WHERE status = 'claimed' GROUP BY 1"
            )
        return {r["who"]: r["n"] for r in rows}

    async def _goal_rows(
        self, *, viewer: str | None, where: str, params: Sequence[Any]
    ) -> list[GoalStats]:
        sees = _SEES.replace("$V", "$2")
        async with self._db.conn() as conn:
            rows = await conn.fetch(
                "SELECT namespace, goal,"
                f" count(*) FILTER (WHERE status = 'open' AND run_at <= $1 AND {sees}) AS ready,"
                f" count(*) FILTER (WHERE status = 'open' AND run_at > $1 AND {sees}) AS delayed,"
                " count(*) FILTER (WHERE status = 'claimed'"
                "   AND ($2::text IS NULL OR claimer = $2)) AS claimed,"
                f" count(*) FILTER (WHERE status = 'dead' AND {sees}) AS dead,"
                f" min(run_at) FILTER (WHERE status = 'open' AND run_at <= $1 AND {sees}) AS oldest"
                f" FROM intents WHERE status IN ('open', 'claimed', 'dead') {where}"
                " GROUP BY namespace, goal ORDER BY namespace, goal",
                self._clock(),
                viewer,
                *params,
            )
        now = self._clock()
        return [
            GoalStats(
                namespace=r["namespace"],
                goal=r["goal"],
                ready=r["ready"],
                delayed=r["delayed"],
                claimed=r["claimed"],
                dead=r["dead"],
                oldest_ready_age_seconds=max(0.0, now - r["oldest"]) if r["oldest"] else 0.0,
            )
            for r in rows
            if r["ready"] or r["delayed"] or r["claimed"] or r["dead"]
        ]
