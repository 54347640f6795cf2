"""Claims on the shared database: which intent a claim gets, and waiting for one.

A claim is one ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)``: two
replicas never hand out the same intent, and neither waits for the other. The conditions
are the claim rules of :class:`~..lifecycle.ClaimFilter` (visibility, publisher, target
worker, capability) and the order is the claim order of :meth:`~..records.Intent.sort_key`,
both carried out in SQL. Under load, claims that ask the same share one statement
(:mod:`.groups`): one ``LIMIT n`` claim whose intents are dealt out in claim order.

A claim with ``wait`` that finds nothing parks on this replica (:mod:`.wakeups`) and asks
again when work lands on its goal on any replica.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from intent_fleet.protocol import Now

from ..lifecycle import ClaimFilter
from ..quotas import check_parked
from ..records import Caller, Intent
from ..settings import LimitSettings, QueueSettings
from ..store import intent_from_row
from .database import stopping
from .groups import Grouped
from .sql import RETURNING_INTENT, reopened
from .wakeups import CHANNEL, Waiter, Wakeups

if TYPE_CHECKING:
    from .database import Database

__all__ = ["SharedClaims"]


@dataclass(frozen=True, slots=True)
class _ClaimAsk:
    """What a claim statement looks for: everything but how many. Claims asking the same
    share one statement."""

    namespace: str
    goal: str | None
    #: Whose private intents are visible.
    own: str
    publisher: str | None
    worker_id: str | None
    capabilities: tuple[str, ...]
    caller: str


class SharedClaims:
    """Claims of this replica, grouped, parked and counted."""

    def __init__(
        self,
        *,
        db: Database,
        queue: QueueSettings,
        limits: LimitSettings,
        clock: Now,
        wakeups: Wakeups,
    ) -> None:
        self._db = db
        self._queue = queue
        self._limits = limits
        self._clock = clock
        self._wakeups = wakeups
        self._grouped: Grouped[tuple[_ClaimAsk, int], list[Intent]] = Grouped(
            self._groups, orphaned=self._reopen, closed=stopping
        )
        #: Intents this replica handed out, for /metrics.
        self.served = 0

    async def claim(
        self, flt: ClaimFilter, *, admin: bool, wait: float, limit: int = 1
    ) -> list[Intent]:
        """Claim up to ``limit`` intents; with ``wait``, park until at least one is ready."""
        got = await self._claim_now(flt, admin=admin, limit=limit)
        if got or wait <= 0:
            return got
        if not admin:
            check_parked(self._limits, self._wakeups.count_of(flt.caller, claims=True))
        waiter = Waiter(
            pairs=frozenset({(flt.namespace, flt.goal)}) if flt.goal is not None else frozenset(),
            namespace=None if flt.goal is not None else flt.namespace,
            key_id=flt.caller,
            session=flt.session,
            is_claim=True,
        )
        found = await self._wakeups.park(
            waiter, wait, lambda: self._claim_now(flt, admin=admin, limit=limit)
        )
        return found or []

    def interrupt(self, caller: Caller, session: str) -> int:
        """End the parked claims of one claimer session now."""
        return self._wakeups.interrupt(caller.key_id, session)

    async def aclose(self) -> None:
        await self._grouped.aclose()

    async def _claim_now(self, flt: ClaimFilter, *, admin: bool, limit: int) -> list[Intent]:
        ask = _ClaimAsk(
            namespace=flt.namespace,
            goal=flt.goal,
            own=flt.private_owner(admin=admin),
            publisher=flt.publisher,
            worker_id=flt.worker_id,
            capabilities=tuple(sorted(flt.capabilities)),
            caller=flt.caller,
        )
        return await self._grouped.submit((ask, limit))

    async def _groups(
        self, wanted: Sequence[tuple[_ClaimAsk, int]]
    ) -> list[list[Intent] | Exception]:
        """Claims that arrived together: one statement per distinct ask (run side by side),
        its intents dealt out in claim order, each claim its own number."""
        slots: dict[_ClaimAsk, list[int]] = {}
        for n, (ask, _) in enumerate(wanted):
            slots.setdefault(ask, []).append(n)
        found = await asyncio.gather(
            *(self._rows(ask, sum(wanted[n][1] for n in ns)) for ask, ns in slots.items()),
            return_exceptions=True,
        )
        answers: list[list[Intent] | Exception] = [[] for _ in wanted]
        for ns, got in zip(slots.values(), found, strict=True):
            if isinstance(got, BaseException) and not isinstance(got, Exception):
                raise got
            start = 0
            for n in ns:
                if isinstance(got, Exception):
                    answers[n] = got
                    continue
                answers[n] = got[start : start + wanted[n][1]]
                start += wanted[n][1]
        return answers

    async def _rows(self, ask: _ClaimAsk, limit: int) -> list[Intent]:
        now = self._clock()
        # Two statements, not "($2 IS NULL OR goal = $2)": a prepared statement's generic
        # plan could then not use the goal to find the first ready intent in the index.
        goal = "goal = $2" if ask.goal is not None else "$2::text IS NULL"
        async with self._db.conn(relaxed=True) as conn:
            rows = await conn.fetch(
                "UPDATE intents AS i SET status = 'claimed', attempts = i.attempts + 1,"
                " claim_token = replace(gen_random_uuid()::text, '-', ''),"
                " lease_until = $3 + $9, claimer = $10, worker_id = $6, updated_at = $3"
                " FROM (SELECT id FROM intents"
                f"  WHERE status = 'open' AND namespace = $1 AND {goal}"
                "  AND run_at <= $3 AND (visibility = 'public' OR publisher = $4)"
                "  AND ($5::text IS NULL OR publisher = $5)"
                "  AND (target_worker IS NULL OR target_worker = $6)"
                "  AND (required_capability IS NULL OR required_capability = ANY($7::text[]))"
                "  ORDER BY priority DESC, run_at, attempts, seq"
                "  LIMIT $8 FOR UPDATE SKIP LOCKED) AS picked"
                f" WHERE i.id = picked.id RETURNING {RETURNING_INTENT}",
                ask.namespace,
                ask.goal,
                now,
                ask.own,
                ask.publisher,
                ask.worker_id,
                list(ask.capabilities),
                limit,
                float(self._queue.claim_timeout_seconds),
                ask.caller,
            )
        intents = sorted((intent_from_row(r) for r in rows), key=Intent.sort_key)
        self.served += len(intents)
        return intents

    async def _reopen(self, intents: list[Intent]) -> None:
        """Give back intents claimed for a request that went away before its answer."""
        if not intents:
            return
        self.served -= len(intents)
        async with self._db.conn(relaxed=True) as conn:
            await conn.execute(
                f"WITH changed AS (UPDATE intents SET {reopened('$3')} WHERE id = ANY($1)"
                " AND status = 'claimed' AND claim_token = ANY($2)"
                " RETURNING namespace, goal)"
                " SELECT pg_notify($4, namespace || '/' || goal) FROM changed",
                [i.id for i in intents],
                [i.claim_token for i in intents],
                self._clock(),
                CHANNEL,
            )
