"""The intent life cycle on the shared database: publish, lease changes, admin changes.

The counterpart of the embedded :class:`~..engine.Engine`, applying the same rules
(:mod:`..lifecycle`), but keeping nothing between requests that another replica would need:
every operation is one short statement (or one transaction) on the database, as River,
Oban, graphile-worker and Solid Queue do it. Claims are :mod:`.claims`'s.

- A publish inserts and announces in one statement (the notification is delivered once
  the row is committed), so one round trip; an idempotency key is one unique index.
- Fulfils that arrive together share one durable statement (:mod:`.groups`), each checked
  against its own lease.
- A fail, an extend or a release is one ``UPDATE`` on the caller's lease, announcing the
  intent in the same statement when it is claimable again.
- Leases that ran out are ended by whichever replica's sweep locks them first
  (:meth:`SharedEngine.expire`); delayed intents need no sweep at all (a claim takes
  ``run_at <= now``), only a wake-up.
"""

from __future__ import annotations

import hashlib
import logging
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import asyncpg

from intent_fleet.protocol import Now

from ..backend import Ended, PublishOutcome, PublishRequest, Result
from ..lifecycle import (
    CANCELLABLE,
    CANCELLED_BY_ADMIN,
    LEASE_EXPIRED,
    RETRIED_BY_ADMIN,
    RETRY_DELAY_CAP_SECONDS,
    RETRY_DOUBLINGS,
    RETRYABLE,
    ClaimFilter,
    cannot_cancel,
    cannot_retry,
    extension,
    idempotency_conflict,
    not_found,
    not_leased,
    retry_jitter,
)
from ..records import Caller, Intent, Status, TerminalRow
from ..settings import BusSettings
from ..store import INTENT_FIELDS, TERMINAL_FIELDS, intent_from_row
from .database import stopping
from .groups import Grouped
from .sql import COLUMNS, TERMINAL, leased, reopened
from .wakeups import CHANNEL, notification

if TYPE_CHECKING:
    from .claims import SharedClaims
    from .database import Conn, Database
    from .quotas import SharedQuotas

__all__ = ["SharedEngine"]

log = logging.getLogger(__name__)

_LEASED: Final = leased("$1", "$2::text", "$3")

#: Most leases one sweep ends (the next sweep takes the rest).
SWEEP_BATCH: Final = 1000

_CANCELLABLE: Final = [s.value for s in CANCELLABLE]
_RETRYABLE: Final = [s.value for s in RETRYABLE]


@dataclass(frozen=True, slots=True)
class _Fulfil:
    caller: str
    intent_id: str
    token: str | None
    result: Result | None


class SharedEngine:
    """The intents' changes, each carried out by the database."""

    def __init__(
        self,
        *,
        db: Database,
        settings: BusSettings,
        clock: Now,
        quotas: SharedQuotas,
        claims: SharedClaims,
        rng: random.Random | None = None,
    ) -> None:
        self._db = db
        self._claims = claims
        self._settings = settings
        self._clock = clock
        self._quotas = quotas
        self._rng = rng or random.Random()  # backoff jitter only
        self._fulfils: Grouped[_Fulfil, Ended | None] = Grouped(self._fulfil_group, closed=stopping)

    async def aclose(self) -> None:
        await self._fulfils.aclose()

    # -- publish ----------------------------------------------------------
    async def publish(
        self, caller: Caller, req: PublishRequest, *, idempotency_key: str | None, body: bytes
    ) -> PublishOutcome:
        body_hash = hashlib.sha256(body).digest() if idempotency_key else None
        now = self._clock()
        values: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "namespace": req.namespace,
            "goal": req.goal,
            "publisher": caller.key_id,
            "visibility": req.visibility.value,
            "payload": req.payload,
            "priority": req.priority,
            "max_attempts": req.max_attempts,
            "backoff_base": req.backoff_base,
            "target_worker": req.target_worker,
            "required_capability": req.required_capability,
            "status": Status.OPEN.value,
            "attempts": 0,
            "run_at": now + req.delay,
            "created_at": now,
            "updated_at": now,
            "idempotency_key": idempotency_key,
            "body_hash": body_hash,
        }
        names = [*values, "payload_size"]
        params = [
            *values.values(),
            len(req.payload),
            CHANNEL,
            notification(req.namespace, req.goal),
        ]
        placeholders = ", ".join(f"${n}" for n in range(1, len(names) + 1))
        conflict = (
            " ON CONFLICT (publisher, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING"
            if idempotency_key
            else ""
        )
        channel, ready = len(names) + 1, len(names) + 2
        async with self._db.conn() as conn:
            if idempotency_key is not None:
                replay = await self._replay(conn, caller, idempotency_key, body_hash)
                if replay is not None:
                    return replay
            await self._quotas.check(conn, caller, req)
            inserted = await conn.fetchval(
                f"WITH added AS (INSERT INTO intents ({', '.join(names)}) VALUES ({placeholders})"
                f"{conflict} RETURNING id, run_at, created_at)"
                f" SELECT id, CASE WHEN run_at <= created_at THEN pg_notify(${channel}, ${ready})"
                " END FROM added",
                *params,
            )
            if inserted is None:
                # The same key published concurrently, and won: answer as it did.
                assert idempotency_key is not None
                replay = await self._replay(conn, caller, idempotency_key, body_hash)
                assert replay is not None
                return replay
        self._quotas.accepted(caller, req)
        return PublishOutcome(id=values["id"], namespace=req.namespace, replayed=False)

    @staticmethod
    async def _replay(
        conn: Conn, caller: Caller, key: str, body_hash: bytes | None
    ) -> PublishOutcome | None:
        row = await conn.fetchrow(
            "SELECT id, namespace, body_hash FROM intents"
            " WHERE publisher = $1 AND idempotency_key = $2",
            caller.key_id,
            key,
        )
        if row is None:
            return None
        if row["body_hash"] != body_hash:
            raise idempotency_conflict()
        return PublishOutcome(id=row["id"], namespace=row["namespace"], replayed=True)

    # -- claims: SharedClaims's ----------------------------------------------
    async def claim(
        self, flt: ClaimFilter, *, admin: bool, wait: float, limit: int = 1
    ) -> list[Intent]:
        return await self._claims.claim(flt, admin=admin, wait=wait, limit=limit)

    async def interrupt_claims(self, caller: Caller, session: str) -> int:
        return self._claims.interrupt(caller, session)

    # -- leases -----------------------------------------------------------
    async def _leased_update(
        self, caller: Caller, intent_id: str, token: str | None, sets: str, *params: Any
    ) -> asyncpg.Record:
        """Change an intent the caller holds; one that is claimable again is announced in
        the same statement."""
        n = 4 + len(params)
        async with self._db.conn() as conn:
            row = await conn.fetchrow(
                f"WITH changed AS (UPDATE intents SET {sets} WHERE {_LEASED}"
                " RETURNING status, namespace, goal, run_at, updated_at)"
                " SELECT status, namespace, goal, CASE WHEN status = 'open'"
                f" AND run_at <= updated_at THEN pg_notify(${n}, namespace || '/' || goal) END"
                " FROM changed",
                intent_id,
                token,
                caller.key_id,
                *params,
                CHANNEL,
            )
        if row is None:
            raise not_leased()
        return row

    async def extend(self, caller: Caller, intent_id: str, token: str | None, seconds: int) -> int:
        seconds = extension(seconds, self._settings.queue)
        now = self._clock()
        await self._leased_update(
            caller, intent_id, token, "lease_until = $4, updated_at = $5", now + seconds, now
        )
        return seconds

    async def fulfill(
        self, caller: Caller, intent_id: str, token: str | None, *, result: Result | None
    ) -> Ended:
        done = await self._fulfils.submit(_Fulfil(caller.key_id, intent_id, token, result))
        if done is None:
            raise not_leased()
        return done

    async def _fulfil_group(self, asks: Sequence[_Fulfil]) -> list[Ended | Exception | None]:
        """Fulfils that arrived together, in one durable statement (one commit, one flush):
        for each, what it ended, or None where the caller did not hold the lease. Of two
        fulfils of one intent in a group at most one holds it."""
        now = self._clock()
        req = "req."
        # In id order, so two replicas' groups lock shared rows in the same order.
        order = sorted(range(len(asks)), key=lambda n: asks[n].intent_id)
        asks = [asks[n] for n in order]
        async with self._db.conn() as conn:
            rows = await _once_more_after_deadlock(
                conn,
                "UPDATE intents AS i SET status = 'fulfilled', updated_at = $6,"
                " last_error = NULL, claim_token = NULL, lease_until = NULL,"
                " result = req.result, result_type = req.result_type, completed_at = $6"
                " FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[])"
                "  WITH ORDINALITY AS req(id, token, caller, result, result_type, n)"
                f" WHERE {leased(req + 'id', req + 'token', req + 'caller', row='i.')}"
                " RETURNING req.n, i.namespace, i.goal",
                [a.intent_id for a in asks],
                [a.token for a in asks],
                [a.caller for a in asks],
                [a.result.body if a.result else None for a in asks],
                [a.result.type if a.result else None for a in asks],
                now,
            )
        held = {order[r["n"] - 1]: Ended(r["namespace"], r["goal"], Status.FULFILLED) for r in rows}
        return [held.get(n) for n in range(len(asks))]

    async def fail(
        self, caller: Caller, intent_id: str, token: str | None, error: str, *, final: bool = False
    ) -> Ended:
        now = self._clock()
        # lifecycle.dies and lifecycle.retry_delay, with the rule's numbers as parameters.
        dies = "($5 OR attempts >= max_attempts)"
        row = await self._leased_update(
            caller,
            intent_id,
            token,
            f"status = CASE WHEN {dies} THEN 'dead' ELSE 'open' END,"
            f" claimer = CASE WHEN {dies} THEN claimer ELSE NULL END,"
            f" run_at = CASE WHEN {dies} THEN run_at ELSE $4"
            " + least(backoff_base * power(2, least(attempts, $8)), $9) + $7 END,"
            " last_error = $6, claim_token = NULL, lease_until = NULL, updated_at = $4",
            now,
            final,
            error,
            retry_jitter(self._rng),
            RETRY_DOUBLINGS,
            RETRY_DELAY_CAP_SECONDS,
        )
        return Ended(row["namespace"], row["goal"], Status(row["status"]))

    async def release(self, caller: Caller, intent_id: str, token: str | None) -> None:
        await self._leased_update(caller, intent_id, token, reopened("$4"), self._clock())

    async def expire(self, *, since: float, now: float) -> list[tuple[str, str]]:
        """End leases that ran out (once, whichever replica locks them first: open again,
        or dead on the last attempt); answers the goals of intents that came due since
        ``since`` (delayed ones, backed-off ones), whose waiters should look again."""
        async with self._db.conn(relaxed=True) as conn, conn.transaction():
            # lifecycle.dies, with LEASE_EXPIRED as the error of an intent that had none.
            ended = await conn.fetch(
                "UPDATE intents AS i SET"
                " status = CASE WHEN i.attempts >= i.max_attempts THEN 'dead' ELSE 'open' END,"
                " last_error = CASE WHEN i.attempts >= i.max_attempts"
                "   THEN coalesce(i.last_error, $3) ELSE i.last_error END,"
                " claimer = CASE WHEN i.attempts >= i.max_attempts THEN i.claimer ELSE NULL END,"
                " claim_token = NULL, lease_until = NULL, updated_at = $1"
                " FROM (SELECT id FROM intents WHERE status = 'claimed' AND lease_until <= $1"
                "  ORDER BY lease_until LIMIT $2 FOR UPDATE SKIP LOCKED) AS due"
                " WHERE i.id = due.id RETURNING i.namespace, i.goal, i.status",
                now,
                SWEEP_BATCH,
                LEASE_EXPIRED,
            )
            for ns, goal in {(r["namespace"], r["goal"]) for r in ended if r["status"] == "open"}:
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, notification(ns, goal))
            came_due = await conn.fetch(
                "SELECT DISTINCT namespace, goal FROM intents"
                " WHERE status = 'open' AND run_at > $1 AND run_at <= $2",
                since,
                now,
            )
        return [(r["namespace"], r["goal"]) for r in came_due]

    # -- reads ------------------------------------------------------------
    async def lookup(self, intent_id: str) -> Intent | TerminalRow | None:
        async with self._db.conn() as conn:
            row = await conn.fetchrow(
                f"SELECT {COLUMNS}, result, result_type, completed_at FROM intents WHERE id = $1",
                intent_id,
            )
        if row is None:
            return None
        if not Status(row["status"]).terminal:
            return intent_from_row(list(row)[: len(INTENT_FIELDS)])
        return TerminalRow(*(row[name] for name in TERMINAL_FIELDS))

    async def intent(self, intent_id: str) -> Intent | None:
        async with self._db.conn() as conn:
            row = await conn.fetchrow(f"SELECT {COLUMNS} FROM intents WHERE id = $1", intent_id)
        return intent_from_row(row) if row is not None else None

    async def dead_letters(
        self, *, namespace: str | None, goal: str | None, limit: int, offset: int
    ) -> list[TerminalRow]:
        async with self._db.conn() as conn:
            rows = await conn.fetch(
                f"SELECT {TERMINAL} FROM intents WHERE status = 'dead'"
                " AND ($1::text IS NULL OR namespace = $1) AND ($2::text IS NULL OR goal = $2)"
                " ORDER BY updated_at DESC LIMIT $3 OFFSET $4",
                namespace,
                goal,
                limit,
                offset,
            )
        return [TerminalRow(*r) for r in rows]

    # -- admin ------------------------------------------------------------
    async def cancel(self, intent_id: str) -> None:
        async with self._db.conn() as conn:
            done = await conn.fetchval(
                "UPDATE intents SET status = 'cancelled', claim_token = NULL, lease_until = NULL,"
                " updated_at = $2, last_error = $3"
                " WHERE id = $1 AND status = ANY($4::text[]) RETURNING 1",
                intent_id,
                self._clock(),
                CANCELLED_BY_ADMIN,
                _CANCELLABLE,
            )
            if done is not None:
                return
            status = await conn.fetchval("SELECT status FROM intents WHERE id = $1", intent_id)
        if status is None:
            raise not_found()
        raise cannot_cancel(Status(status))

    async def retry(self, intent_id: str) -> None:
        now = self._clock()
        async with self._db.conn() as conn:
            async with conn.transaction():
                row = await conn.fetchrow(
                    "UPDATE intents SET status = 'open', attempts = 0, run_at = $2,"
                    " updated_at = $2, claimer = NULL, worker_id = NULL, last_error = $3"
                    " WHERE id = $1 AND status = ANY($4::text[]) RETURNING namespace, goal",
                    intent_id,
                    now,
                    RETRIED_BY_ADMIN,
                    _RETRYABLE,
                )
                if row is not None:
                    await conn.execute(
                        "SELECT pg_notify($1, $2)",
                        CHANNEL,
                        notification(row["namespace"], row["goal"]),
                    )
                    return
            status = await conn.fetchval("SELECT status FROM intents WHERE id = $1", intent_id)
        if status is None:
            raise not_found()
        raise cannot_retry(Status(status))

    async def purge(self, namespace: str | None) -> int:
        """Delete every intent (of one namespace); returns how many rows went."""
        async with self._db.conn() as conn:
            if namespace is None:
                deleted = await conn.execute("DELETE FROM intents")
            else:
                deleted = await conn.execute("DELETE FROM intents WHERE namespace = $1", namespace)
        return int(deleted.split()[-1])

    async def cleanup(self) -> dict[str, int]:
        """Remove terminal intents past retention: how many of each status."""
        cutoff = self._clock() - self._settings.storage.retention_seconds
        async with self._db.conn() as conn:
            rows = await conn.fetch(
                "WITH gone AS (DELETE FROM intents"
                " WHERE status IN ('fulfilled', 'dead', 'cancelled') AND updated_at < $1"
                " RETURNING status) SELECT status, count(*) AS n FROM gone GROUP BY status",
                cutoff,
            )
        report = {f"{s}_deleted": 0 for s in ("fulfilled", "dead", "cancelled")}
        for r in rows:
            report[f"{r['status']}_deleted"] = r["n"]
        return report


async def _once_more_after_deadlock(conn: Conn, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Fetch; again if the database broke a deadlock by failing it. Two replicas' groups
    that both hold the same two intents (duplicate fulfils, crossing) can lock them in
    opposite orders; the database fails one after ``deadlock_timeout``."""
    try:
        return await conn.fetch(sql, *args)
    except asyncpg.DeadlockDetectedError:
        log.warning("a grouped statement met another replica's in a deadlock; retrying")
        return await conn.fetch(sql, *args)
