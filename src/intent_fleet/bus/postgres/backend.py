"""The shared backend: the bus's state in PostgreSQL, so several replicas serve one bus.

A replica keeps nothing between requests that another replica would need: every
operation is one short statement (or one transaction) on the database, as River, Oban,
graphile-worker and Solid Queue do it.

- A claim is one ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)``: two
  replicas never hand out the same intent, and neither waits for the other.
- Leases that ran out are ended by whichever replica's sweep locks them first; delayed
  intents need no sweep at all (a claim takes ``run_at <= now``), only a wake-up.
- Nonces, rate-limit buckets, keys and KV are rows too, so a request replayed to another
  replica is refused and a key revoked on one is refused by all.
- What is only this replica's: the long-polls parked on it (:mod:`.wakeups`), its
  counters for ``/metrics``, and a cache of the keys it has seen (refreshed when any
  replica changes a key, and every sweep).

Writes that must survive a crash (publish, fulfil, fail, extend, admin changes) commit
with the database's default synchronous commit, on the ``durable`` pool. Claims, nonces,
rate buckets and the sweep commit asynchronously, on the ``relaxed`` pool (its sessions
set ``synchronous_commit = off``), as the embedded backend answers a claim before its
write is on disk: losing the last few to a database crash can only hand an intent out
again (delivery is at-least-once anyway), let a request signed moments before the crash
be replayed, or let a key run a moment past its rate. Each replica opens up to
``pool_size`` connections in each pool, and one more to listen.

Each operation is one statement where it can be, so one round trip: a publish inserts and
notifies in one statement, a claim selects and updates in one. Under load, requests of one
kind that arrive together share a statement (:mod:`.groups`): nonces, claims asking the same
(one ``LIMIT n`` claim dealt out in claim order), and fulfils (one durable commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar

import asyncpg

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

from intent_fleet.protocol import GoalStats, RetryPolicy

from ..auth import KeyRing, hash_secret, is_utf8
from ..backend import Ended, Figures, PublishOutcome, PublishRequest
from ..claim_index import ClaimFilter
from ..errors import ApiError, DurabilityError, StartupError
from ..quotas import KeyUsage, check_publish, kv_full, too_many_parked
from ..records import ApiKey, Caller, Intent, Status, TerminalRow
from ..settings import BusSettings, redacted
from ..store import INTENT_FIELDS, TERMINAL_FIELDS, intent_from_row
from .groups import Grouped
from .nonces import INSERT_NONCES, distinct, first_uses
from .schema import migrate
from .wakeups import CHANNEL, Waiter, Wakeups, notification, parse_notification

__all__ = ["SharedBackend", "open_shared"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]
_Found = TypeVar("_Found")
if TYPE_CHECKING:  # the stubs' generic; the runtime class is not subscriptable
    Conn: TypeAlias = PoolConnectionProxy[asyncpg.Record]

_COLUMNS: Final = ", ".join(INTENT_FIELDS)
_TERMINAL: Final = ", ".join(TERMINAL_FIELDS)
_LIVE: Final = "('open', 'claimed')"


#: A lease belongs to the caller: by its claim token, or (v1.1 clients, no token) by the key.
#: Tokens are compared as digests, so how long the comparison takes says nothing about
#: how much of a guessed token was right.
def _leased(intent_id: str, token: str, caller: str, *, row: str = "") -> str:
    """The condition that ``row`` (an alias and a dot, or nothing) is the intent
    ``intent_id`` leased to ``caller`` under ``token`` (SQL expressions)."""
    return (
        f"{row}id = {intent_id} AND {row}status = 'claimed' AND CASE WHEN {token} IS NULL"
        f" THEN {row}claimer = {caller} ELSE md5({row}claim_token) = md5({token}) END"
    )


_LEASED: Final = _leased("$1", "$2::text", "$3")


def _reopened(now: str) -> str:
    """The assignments that make a claimed intent claimable again, as if never claimed."""
    return (
        "status = 'open', attempts = greatest(0, attempts - 1), claim_token = NULL,"
        f" lease_until = NULL, claimer = NULL, worker_id = NULL, updated_at = {now}"
    )


_NOT_LEASED: Final = (
    "Intent not found, not claimed by you, or the claim token is stale "
    "(the lease expired or the intent was claimed again)."
)

#: Ready to claim by a viewer: public intents and its own private ones ($V null: all).
_SEES: Final = "($V::text IS NULL OR visibility = 'public' OR publisher = $V)"

#: How often the listening connection is tried again after it dropped.
LISTEN_RETRY = RetryPolicy(attempts=1_000_000, base_seconds=0.2, cap_seconds=5.0)
#: Seconds a parked claim waits for a wake-up before it looks again by itself.
RECHECK_SECONDS = 5.0
#: Seconds between full reloads of the key cache (changes also arrive by notification).
KEY_REFRESH_SECONDS = 5.0
#: Seconds a replica trusts its count of a key's live intents (see _check_quotas).
USAGE_REFRESH_SECONDS = 1.0
#: Most unknown key hashes remembered (a flood of made-up keys only empties the set).
MAX_UNKNOWN_KEYS = 10_000
#: Most leases one sweep ends (the next sweep takes the rest).
SWEEP_BATCH = 1000


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


@dataclass(frozen=True, slots=True)
class _Fulfil:
    caller: str
    intent_id: str
    token: str | None
    result: bytes | None
    result_type: str | None


def _stopping() -> DurabilityError:
    return DurabilityError("the bus is stopping", cause="io")


def _db_error(exc: BaseException) -> DurabilityError:
    if isinstance(exc, asyncpg.PostgresError) and not isinstance(
        exc, asyncpg.PostgresConnectionError | asyncpg.CannotConnectNowError
    ):
        return DurabilityError(f"the database refused the request: {exc}", cause="rejected")
    return DurabilityError(f"the database is unreachable: {type(exc).__name__}", cause="io")


class SharedBackend:
    """The :class:`~.backend.Backend` of bus replicas sharing one PostgreSQL database."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        relaxed: asyncpg.Pool,
        settings: BusSettings,
        clock: Clock,
        keys: KeyRing,
        rng: random.Random | None = None,
    ) -> None:
        self._pool = pool
        self._relaxed = relaxed
        self._settings = settings
        self._clock = clock
        self._keys = keys
        self._rng = rng or random.Random()  # backoff jitter only
        self._wakeups = Wakeups()
        self._nonces: Grouped[tuple[str, str, float], bool] = Grouped(
            self._record_nonces, closed=_stopping
        )
        self._claims: Grouped[tuple[_ClaimAsk, int], list[Intent]] = Grouped(
            self._claim_groups, orphaned=self._reopen, closed=_stopping
        )
        self._fulfils: Grouped[_Fulfil, Ended | None] = Grouped(
            self._fulfil_group, closed=_stopping
        )
        #: Hashes of presented keys the database did not know at the last key reload.
        self._unknown: set[str] = set()
        #: key id -> (when counted, what it holds): see _check_quotas.
        self._usage: dict[str, tuple[float, KeyUsage]] = {}
        self._listener: asyncpg.Connection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._health = "ok"
        self._failed: dict[str, int] = {}
        self._transactions = 0
        self.claims_served = 0

    # -- life cycle -------------------------------------------------------
    @property
    def health(self) -> str:
        return self._health

    async def start(self, loop: asyncio.AbstractEventLoop) -> None:
        # Leases that ran out while no replica was up end before this one answers anything
        # (if the database is reachable: the sweep task tries again either way).
        now = self._clock()
        with contextlib.suppress(DurabilityError):
            await self._sweep(since=now, now=now)
        self._tasks = [
            loop.create_task(self._listen_forever(), name="bus-listen"),
            loop.create_task(self._sweep_forever(), name="bus-sweep"),
        ]

    def release_waiters(self) -> None:
        self._wakeups.release_all()

    async def close(self) -> None:
        self._stopping = True
        self._wakeups.release_all()
        for grouped in (self._nonces, self._claims, self._fulfils):
            await grouped.aclose()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close(timeout=2)
        await self._pool.close()
        await self._relaxed.close()

    @contextlib.asynccontextmanager
    async def _conn(self, *, relaxed: bool = False) -> AsyncIterator[Conn]:
        """A pooled connection (``relaxed``: one whose commits do not wait for the disk); a
        failure of the database becomes the bus's own error."""
        try:
            async with (self._relaxed if relaxed else self._pool).acquire() as conn:
                yield conn
        except (ApiError, asyncio.CancelledError):
            raise
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            error = _db_error(exc)
            self._failed[error.cause] = self._failed.get(error.cause, 0) + 1
            if error.cause != "rejected":
                self._health = "unreachable"
            log.error("database request failed", extra={"cause": error.cause, "error": str(exc)})
            raise error from None
        else:
            self._health = "ok"
            self._transactions += 1

    # -- who is calling ----------------------------------------------------
    async def authenticate(self, presented: str) -> Caller | None:
        found = self._keys.authenticate(presented)
        if found is not None or not is_utf8(presented):
            return found
        digest = hash_secret(presented)
        if digest in self._unknown:
            return None
        # A key made by another replica since the last refresh.
        async with self._conn() as conn:
            row = await conn.fetchrow(
                "SELECT id, name, secret_hash, created_at, revoked_at FROM api_keys"
                " WHERE secret_hash = $1 AND revoked_at IS NULL",
                digest,
            )
        if row is None:
            # Asked once until the keys change: a client repeating a wrong key must not cost
            # the database a query per request.
            if len(self._unknown) >= MAX_UNKNOWN_KEYS:
                self._unknown.clear()
            self._unknown.add(digest)
            return None
        self._keys.add(ApiKey(*row))
        return self._keys.authenticate(presented)

    async def remember_nonce(self, key_id: str, nonce: str, *, timestamp: int, now: float) -> bool:
        expires = timestamp + self._settings.auth.signature_window_seconds
        return await self._nonces.submit((key_id, nonce, expires))

    async def _record_nonces(self, rows: Sequence[tuple[str, str, float]]) -> list[bool]:
        once = distinct(rows)
        async with self._conn(relaxed=True) as conn:
            added = await conn.fetch(
                INSERT_NONCES, [r[0] for r in once], [r[1] for r in once], [r[2] for r in once]
            )
        return first_uses(rows, {(r["key_id"], r["nonce"]) for r in added})

    async def rate_limit(self, key_id: str, *, now: float) -> int | None:
        limits = self._settings.limits
        rate, burst = limits.rate_limit_per_second, float(max(1, limits.rate_limit_burst))
        if rate <= 0:
            return None
        refilled = "least($2, b.tokens + greatest(0, $3 - b.stamp) * $4)"
        async with self._conn(relaxed=True) as conn:
            # Refilled and taken from in one statement: the row lock orders the replicas.
            row = await conn.fetchrow(
                "INSERT INTO rate_buckets AS b (key_id, tokens, stamp, granted)"
                " VALUES ($1, $2 - 1, $3, true) ON CONFLICT (key_id) DO UPDATE SET"
                f" tokens = CASE WHEN {refilled} >= 1 THEN {refilled} - 1 ELSE {refilled} END,"
                f" granted = {refilled} >= 1, stamp = $3"
                " RETURNING tokens, granted",
                key_id,
                burst,
                now,
                rate,
            )
        assert row is not None  # an upsert always answers its row
        if row["granted"]:
            return None
        tokens: float = row["tokens"]
        return max(1, math.ceil((1.0 - tokens) / rate))

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
        async with self._conn() as conn:
            if idempotency_key is not None:
                replay = await self._replay(conn, caller, idempotency_key, body_hash)
                if replay is not None:
                    return replay
            await self._check_quotas(conn, caller, req)
            # Inserted and announced in one statement, so one round trip; the notification
            # is delivered once the row is committed.
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
        self._accepted(caller, req)
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
            raise ApiError(
                409,
                "idempotency_conflict",
                "Idempotency-Key was already used with a different request body.",
            )
        return PublishOutcome(id=row["id"], namespace=row["namespace"], replayed=True)

    async def _check_quotas(self, conn: Conn, caller: Caller, req: PublishRequest) -> None:
        """Refuse a publish past the key's quotas, counted from the database.

        Counting a key's live intents costs a scan of them, so each replica counts at most
        once a :data:`USAGE_REFRESH_SECONDS` per key and adds what it accepts in between; a
        publish that would be refused is checked against a fresh count first, so intents
        finished meanwhile (on any replica) count as finished. Replicas accepting at the same
        moment can pass a count quota by what the others accepted since their last count.
        """
        limits = self._settings.limits
        if caller.admin or not (
            limits.max_live_intents_per_key
            or limits.max_live_bytes_per_key
            or limits.max_goals_per_key
        ):
            return
        counted = self._usage.get(caller.key_id)
        fresh = counted is None or self._clock() - counted[0] >= USAGE_REFRESH_SECONDS
        if counted is None or fresh:
            usage = await self._count_usage(conn, caller.key_id)
        else:
            usage = counted[1]
        try:
            self._check_usage(usage, req)
        except ApiError:
            if fresh:
                raise
            self._check_usage(await self._count_usage(conn, caller.key_id), req)

    def _check_usage(self, usage: KeyUsage, req: PublishRequest) -> None:
        check_publish(
            self._settings.limits,
            intents=usage.intents,
            payload_bytes=usage.payload_bytes,
            goals=len(usage.goals),
            in_goal=(req.namespace, req.goal) in usage.goals,
            size=len(req.payload),
        )

    async def _count_usage(self, conn: Conn, key_id: str) -> KeyUsage:
        rows = await conn.fetch(
            "SELECT namespace, goal, count(*) AS n, sum(payload_size) AS bytes FROM intents"
            f" WHERE publisher = $1 AND status IN {_LIVE} GROUP BY namespace, goal",
            key_id,
        )
        usage = KeyUsage(
            intents=sum(r["n"] for r in rows),
            payload_bytes=sum(r["bytes"] for r in rows),
            goals={(r["namespace"], r["goal"]): r["n"] for r in rows},
        )
        self._usage[key_id] = (self._clock(), usage)
        return usage

    def _accepted(self, caller: Caller, req: PublishRequest) -> None:
        counted = self._usage.get(caller.key_id)
        if counted is not None:
            usage = counted[1]
            usage.intents += 1
            usage.payload_bytes += len(req.payload)
            where = (req.namespace, req.goal)
            usage.goals[where] = usage.goals.get(where, 0) + 1

    # -- claim ------------------------------------------------------------
    async def claim(
        self, flt: ClaimFilter, *, admin: bool, wait: float, limit: int = 1
    ) -> list[Intent]:
        got = await self._claim_now(flt, admin=admin, limit=limit)
        if got or wait <= 0:
            return got
        most = self._settings.limits.max_parked_claims_per_key
        if not admin and most and self._wakeups.count_of(flt.caller, claims=True) >= most:
            raise too_many_parked(most)
        waiter = Waiter(
            pairs=frozenset({(flt.namespace, flt.goal)}) if flt.goal is not None else frozenset(),
            namespace=None if flt.goal is not None else flt.namespace,
            key_id=flt.caller,
            session=flt.session,
            is_claim=True,
        )
        found = await self._park(
            waiter, wait, lambda: self._claim_now(flt, admin=admin, limit=limit)
        )
        return found or []

    async def _park(
        self, waiter: Waiter, wait: float, look: Callable[[], Awaitable[_Found]]
    ) -> _Found | None:
        """Wait up to ``wait`` seconds for what ``look`` finds (anything truthy): it looks
        again at each wake-up, and every :data:`RECHECK_SECONDS` in case one was missed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        self._wakeups.add(waiter)
        try:
            while not waiter.interrupted:
                left = deadline - loop.time()
                if left <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(left, RECHECK_SECONDS)):
                        await waiter.event.wait()
                waiter.event.clear()
                if waiter.interrupted:
                    return None
                if found := await look():
                    return found
            return None
        finally:
            self._wakeups.remove(waiter)

    async def _claim_now(self, flt: ClaimFilter, *, admin: bool, limit: int) -> list[Intent]:
        ask = _ClaimAsk(
            namespace=flt.namespace,
            goal=flt.goal,
            own=flt.publisher if (admin and flt.publisher is not None) else flt.caller,
            publisher=flt.publisher,
            worker_id=flt.worker_id,
            capabilities=tuple(sorted(flt.capabilities)),
            caller=flt.caller,
        )
        return await self._claims.submit((ask, limit))

    async def _claim_groups(
        self, wanted: Sequence[tuple[_ClaimAsk, int]]
    ) -> list[list[Intent] | Exception]:
        """Claims that arrived together: one statement per distinct ask (run side by side),
        its intents dealt out in claim order, each claim its own number."""
        slots: dict[_ClaimAsk, list[int]] = {}
        for n, (ask, _) in enumerate(wanted):
            slots.setdefault(ask, []).append(n)
        found = await asyncio.gather(
            *(self._claim_rows(ask, sum(wanted[n][1] for n in ns)) for ask, ns in slots.items()),
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

    async def _claim_rows(self, ask: _ClaimAsk, limit: int) -> list[Intent]:
        now = self._clock()
        lease = self._settings.queue.claim_timeout_seconds
        # Two statements, not "($2 IS NULL OR goal = $2)": a prepared statement's generic
        # plan could then not use the goal to find the first ready intent in the index.
        goal = "goal = $2" if ask.goal is not None else "$2::text IS NULL"
        async with self._conn(relaxed=True) as conn:
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
                f" WHERE i.id = picked.id RETURNING {', '.join('i.' + c for c in INTENT_FIELDS)}",
                ask.namespace,
                ask.goal,
                now,
                ask.own,
                ask.publisher,
                ask.worker_id,
                list(ask.capabilities),
                limit,
                float(lease),
                ask.caller,
            )
        intents = sorted((intent_from_row(r) for r in rows), key=Intent.sort_key)
        self.claims_served += len(intents)
        return intents

    async def _reopen(self, intents: list[Intent]) -> None:
        """Give back intents claimed for a request that went away before its answer."""
        if not intents:
            return
        self.claims_served -= len(intents)
        async with self._conn(relaxed=True) as conn:
            await conn.execute(
                f"WITH changed AS (UPDATE intents SET {_reopened('$3')} WHERE id = ANY($1)"
                " AND status = 'claimed' AND claim_token = ANY($2)"
                " RETURNING namespace, goal)"
                " SELECT pg_notify($4, namespace || '/' || goal) FROM changed",
                [i.id for i in intents],
                [i.claim_token for i in intents],
                self._clock(),
                CHANNEL,
            )

    async def interrupt_claims(self, caller: Caller, session: str) -> int:
        return self._wakeups.interrupt(caller.key_id, session)

    # -- leases -----------------------------------------------------------
    async def _leased_update(
        self, caller: Caller, intent_id: str, token: str | None, sets: str, *params: Any
    ) -> asyncpg.Record:
        """Change an intent the caller holds; one that is claimable again is announced in
        the same statement."""
        n = 4 + len(params)
        async with self._conn() as conn:
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
            raise ApiError(404, "not_found", _NOT_LEASED)
        return row

    async def extend(self, caller: Caller, intent_id: str, token: str | None, seconds: int) -> int:
        q = self._settings.queue
        seconds = max(q.min_extend_seconds, min(q.max_extend_seconds, seconds))
        now = self._clock()
        await self._leased_update(
            caller, intent_id, token, "lease_until = $4, updated_at = $5", now + seconds, now
        )
        return seconds

    async def fulfill(
        self,
        caller: Caller,
        intent_id: str,
        token: str | None,
        *,
        result: bytes | None,
        result_type: str | None,
    ) -> Ended:
        done = await self._fulfils.submit(
            _Fulfil(caller.key_id, intent_id, token, result, result_type)
        )
        if done is None:
            raise ApiError(404, "not_found", _NOT_LEASED)
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
        async with self._conn() as conn:
            rows = await self._once_more_after_deadlock(
                conn,
                "UPDATE intents AS i SET status = 'fulfilled', updated_at = $6,"
                " last_error = NULL, claim_token = NULL, lease_until = NULL,"
                " result = req.result, result_type = req.result_type, completed_at = $6"
                " FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[])"
                "  WITH ORDINALITY AS req(id, token, caller, result, result_type, n)"
                f" WHERE {_leased(req + 'id', req + 'token', req + 'caller', row='i.')}"
                " RETURNING req.n, i.namespace, i.goal",
                [a.intent_id for a in asks],
                [a.token for a in asks],
                [a.caller for a in asks],
                [a.result for a in asks],
                [a.result_type for a in asks],
                now,
            )
        held = {order[r["n"] - 1]: Ended(r["namespace"], r["goal"], Status.FULFILLED) for r in rows}
        return [held.get(n) for n in range(len(asks))]

    @staticmethod
    async def _once_more_after_deadlock(conn: Conn, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Fetch; again if the database broke a deadlock by failing it. Two replicas' groups
        that both hold the same two intents (duplicate fulfils, crossing) can lock them in
        opposite orders; the database fails one after ``deadlock_timeout``."""
        try:
            return await conn.fetch(sql, *args)
        except asyncpg.DeadlockDetectedError:
            log.warning("a grouped statement met another replica's in a deadlock; retrying")
            return await conn.fetch(sql, *args)

    async def fail(
        self, caller: Caller, intent_id: str, token: str | None, error: str, *, final: bool = False
    ) -> Ended:
        now = self._clock()
        dies = "($5 OR attempts >= max_attempts)"
        row = await self._leased_update(
            caller,
            intent_id,
            token,
            f"status = CASE WHEN {dies} THEN 'dead' ELSE 'open' END,"
            f" claimer = CASE WHEN {dies} THEN claimer ELSE NULL END,"
            # base * 2^attempts (capped at a day) plus up to 2 s of jitter, as the local
            # engine and the reference server do.
            f" run_at = CASE WHEN {dies} THEN run_at ELSE $4"
            " + least(backoff_base * power(2, least(attempts, 20)), 86400.0) + $7 END,"
            " last_error = $6, claim_token = NULL, lease_until = NULL, updated_at = $4",
            now,
            final,
            error,
            self._rng.uniform(0.0, 2.0),
        )
        return Ended(row["namespace"], row["goal"], Status(row["status"]))

    async def release(self, caller: Caller, intent_id: str, token: str | None) -> None:
        await self._leased_update(caller, intent_id, token, _reopened("$4"), self._clock())

    # -- reads ------------------------------------------------------------
    async def lookup(self, intent_id: str) -> Intent | TerminalRow | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS}, result, result_type, completed_at FROM intents WHERE id = $1",
                intent_id,
            )
        if row is None:
            return None
        if row["status"] in ("open", "claimed"):
            return intent_from_row(list(row)[: len(INTENT_FIELDS)])
        return TerminalRow(*(row[name] for name in TERMINAL_FIELDS))

    async def intent(self, intent_id: str) -> Intent | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM intents WHERE id = $1", intent_id)
        return intent_from_row(row) if row is not None else None

    # -- backlog ------------------------------------------------------------
    async def _goal_rows(
        self, *, viewer: str | None, where: str, params: Sequence[Any]
    ) -> list[GoalStats]:
        sees = _SEES.replace("$V", "$2")
        async with self._conn() as conn:
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

    async def stats(
        self, namespace: str | None = None, goal: str | None = None, *, viewer: str | None = None
    ) -> list[GoalStats]:
        return await self._goal_rows(
            viewer=viewer,
            where="AND ($3::text IS NULL OR namespace = $3) AND ($4::text IS NULL OR goal = $4)",
            params=(namespace, goal),
        )

    async def stats_of(
        self, pairs: Sequence[tuple[str, str]], *, viewer: str | None = None
    ) -> list[GoalStats]:
        found = await self._goal_rows(
            viewer=viewer,
            where="AND (namespace, goal) IN (SELECT * FROM unnest($3::text[], $4::text[]))",
            params=([ns for ns, _ in pairs], [g for _, g in pairs]),
        )
        by_pair = {(s.namespace, s.goal): s for s in found}
        return [
            by_pair.get(
                (ns, g),
                GoalStats(
                    namespace=ns,
                    goal=g,
                    ready=0,
                    delayed=0,
                    claimed=0,
                    dead=0,
                    oldest_ready_age_seconds=0.0,
                ),
            )
            for ns, g in pairs
        ]

    async def watch_backlog(
        self, pairs: Sequence[tuple[str, str]], *, viewer: str | None, wait: float
    ) -> None:
        async def any_ready() -> bool:
            return any(s.ready for s in await self.stats_of(pairs, viewer=viewer))

        if await any_ready():
            return
        most = self._settings.limits.max_parked_claims_per_key
        if viewer is not None and most and self._wakeups.count_of(viewer, claims=False) >= most:
            raise too_many_parked(most, watches=True)
        await self._park(Waiter(pairs=frozenset(pairs), key_id=viewer), wait, any_ready)

    async def figures(self, *, viewer: str | None) -> Figures:
        stats = await self.stats(viewer=viewer)
        sees = _SEES.replace("$V", "$1")
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT namespace, status, count(*) AS n FROM intents"
                f" WHERE (status = 'claimed' AND ($1::text IS NULL OR claimer = $1))"
                f" OR (status <> 'claimed' AND {sees})"
                " GROUP BY namespace, status",
                viewer,
            )
            kv_entries = 0
            held: list[asyncpg.Record] = []
            if viewer is None:
                kv_entries = await conn.fetchval(
                    "SELECT count(*) FROM kv WHERE expires_at > $1", self._clock()
                )
                held = await conn.fetch(
                    "SELECT coalesce(worker_id, 'key ' || claimer) AS who, count(*) AS n"
                    " FROM intents WHERE status = 'claimed' GROUP BY 1"
                )
        counts = {(r["namespace"], r["status"]): r["n"] for r in rows}
        if viewer is not None:
            return Figures(status_counts=counts, stats=stats)
        return Figures(
            status_counts=counts,
            stats=stats,
            claims_served=self.claims_served,
            waiting_claims=self._wakeups.claims(),
            waiting_watches=self._wakeups.watches(),
            commits=self._transactions,
            ops_committed=self._transactions,
            failed_writes=dict(self._failed),
            storage_health=self._health,
            kv_entries=kv_entries,
            held_by_worker={r["who"]: r["n"] for r in held},
        )

    # -- admin ------------------------------------------------------------
    async def cancel(self, intent_id: str) -> None:
        async with self._conn() as conn:
            done = await conn.fetchval(
                "UPDATE intents SET status = 'cancelled', claim_token = NULL, lease_until = NULL,"
                " updated_at = $2, last_error = 'Cancelled by admin'"
                " WHERE id = $1 AND status IN ('open', 'claimed', 'dead') RETURNING 1",
                intent_id,
                self._clock(),
            )
            if done is not None:
                return
            status = await conn.fetchval("SELECT status FROM intents WHERE id = $1", intent_id)
        if status is None:
            raise ApiError(404, "not_found", "Intent not found.")
        raise ApiError(
            409,
            "conflict",
            f"Intent is already {status}; only live or dead intents can be cancelled.",
        )

    async def retry(self, intent_id: str) -> None:
        now = self._clock()
        async with self._conn() as conn:
            async with conn.transaction():
                row = await conn.fetchrow(
                    "UPDATE intents SET status = 'open', attempts = 0, run_at = $2,"
                    " updated_at = $2, claimer = NULL, worker_id = NULL,"
                    " last_error = 'Retried by admin'"
                    " WHERE id = $1 AND status IN ('dead', 'cancelled') RETURNING namespace, goal",
                    intent_id,
                    now,
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
            raise ApiError(404, "not_found", "Intent not found.")
        if status in ("open", "claimed"):
            raise ApiError(
                409, "conflict", "Intent is still live; only dead or cancelled ones can be retried."
            )
        raise ApiError(
            409,
            "conflict",
            f"Intent is {status}; only dead or cancelled ones can be retried.",
        )

    async def purge(self, namespace: str | None) -> int:
        async with self._conn() as conn, conn.transaction():
            if namespace is None:
                deleted = await conn.execute("DELETE FROM intents")
                await conn.execute("DELETE FROM kv")
            else:
                deleted = await conn.execute("DELETE FROM intents WHERE namespace = $1", namespace)
        return int(deleted.split()[-1])

    async def cleanup(self) -> dict[str, int]:
        now = self._clock()
        cutoff = now - self._settings.storage.retention_seconds
        async with self._conn() as conn, conn.transaction():
            rows = await conn.fetch(
                "WITH gone AS (DELETE FROM intents"
                " WHERE status IN ('fulfilled', 'dead', 'cancelled') AND updated_at < $1"
                " RETURNING status) SELECT status, count(*) AS n FROM gone GROUP BY status",
                cutoff,
            )
            kv = await conn.execute("DELETE FROM kv WHERE expires_at <= $1", now)
            await conn.execute("DELETE FROM nonces WHERE expires_at < $1", now)
        report = {f"{s}_deleted": 0 for s in ("fulfilled", "dead", "cancelled")}
        for r in rows:
            report[f"{r['status']}_deleted"] = r["n"]
        report["kv_deleted"] = int(kv.split()[-1])
        return report

    async def dead_letters(
        self, *, namespace: str | None, goal: str | None, limit: int, offset: int
    ) -> list[TerminalRow]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT {_TERMINAL} FROM intents WHERE status = 'dead'"
                " AND ($1::text IS NULL OR namespace = $1) AND ($2::text IS NULL OR goal = $2)"
                " ORDER BY updated_at DESC LIMIT $3 OFFSET $4",
                namespace,
                goal,
                limit,
                offset,
            )
        return [TerminalRow(*r) for r in rows]

    async def add_key(self, key: ApiKey) -> None:
        async with self._conn() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO api_keys (id, name, secret_hash, created_at) VALUES ($1, $2, $3, $4)",
                key.id,
                key.name,
                key.secret_hash,
                key.created_at,
            )
            await conn.execute("SELECT pg_notify($1, 'keys')", CHANNEL)
        self._keys.add(key)

    async def find_key(self, *, secret: str | None, key_id: str | None) -> ApiKey | None:
        await self._reload_keys()
        return self._keys.find(secret=secret, key_id=key_id)

    async def revoke_key(self, key: ApiKey, *, now: float) -> None:
        async with self._conn() as conn, conn.transaction():
            await conn.execute("UPDATE api_keys SET revoked_at = $2 WHERE id = $1", key.id, now)
            await conn.execute("SELECT pg_notify($1, 'keys')", CHANNEL)
        self._keys.revoke(key, now=now)

    async def keys(self) -> list[ApiKey]:
        await self._reload_keys()
        return self._keys.all()

    async def _reload_keys(self) -> None:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT id, name, secret_hash, created_at, revoked_at FROM api_keys"
            )
        self._keys.replace([ApiKey(*r) for r in rows])
        self._unknown.clear()

    # -- KV -----------------------------------------------------------------
    async def kv_get(self, owner: str, key: str, *, now: float) -> str | None:
        async with self._conn() as conn:
            value: str | None = await conn.fetchval(
                "SELECT value FROM kv WHERE owner = $1 AND key = $2 AND expires_at > $3",
                owner,
                key,
                now,
            )
        return value

    async def kv_set(
        self, owner: str, key: str, value: str, *, expires_at: float, most: int
    ) -> None:
        async with self._conn() as conn, conn.transaction():
            if most:
                # One writer per owner at a time, so replicas cannot both take the last slot.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('kv:' || $1))", owner)
                held = await conn.fetchval(
                    "SELECT count(*) FROM kv WHERE owner = $1 AND expires_at > $2 AND key <> $3",
                    owner,
                    self._clock(),
                    key,
                )
                if held >= most:
                    raise kv_full(most)
            await conn.execute(
                "INSERT INTO kv (owner, key, value, expires_at) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (owner, key) DO UPDATE SET value = $3, expires_at = $4",
                owner,
                key,
                value,
                expires_at,
            )

    # -- background: notifications and the sweep ----------------------------------
    def _notified(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        if not isinstance(payload, str):
            return
        if payload == "keys":
            asyncio.get_running_loop().create_task(self._refresh_keys_quietly())
            return
        pair = parse_notification(payload)
        if pair is not None:
            self._wakeups.ready([pair])

    async def _refresh_keys_quietly(self) -> None:
        with contextlib.suppress(DurabilityError):
            await self._reload_keys()

    async def _listen_forever(self) -> None:
        attempt = 0
        while not self._stopping:
            try:
                conn = await asyncpg.connect(
                    self._settings.database.url,
                    timeout=self._settings.database.connect_timeout_seconds,
                )
            except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
                delay = LISTEN_RETRY.delay(attempt, self._rng)
                attempt += 1
                log.warning(
                    "cannot listen for wake-ups; retrying",
                    extra={"error": type(exc).__name__, "retry_in": round(delay, 2)},
                )
                await asyncio.sleep(delay)
                continue
            attempt = 0
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _c, lost=lost: lost.set())
            try:
                await conn.add_listener(CHANNEL, self._notified)
                self._listener = conn
                # News may have been missed while not listening: everyone looks again.
                self._wakeups.wake_all()
                await lost.wait()
                log.warning("lost the wake-up connection; reconnecting")
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pass
            finally:
                self._listener = None
                with contextlib.suppress(Exception):
                    await conn.close(timeout=1)

    async def _sweep_forever(self) -> None:
        interval = self._settings.database.sweep_interval_seconds
        last = self._clock()
        since_keys = 0.0
        while not self._stopping:
            await asyncio.sleep(interval)
            now = self._clock()
            try:
                await self._sweep(since=last, now=now)
                since_keys += interval
                if since_keys >= KEY_REFRESH_SECONDS:
                    since_keys = 0.0
                    await self._reload_keys()
                    await self._forget_nonces(now)
            except DurabilityError:
                continue  # logged by _conn; the next sweep tries again
            last = now

    async def _forget_nonces(self, now: float) -> None:
        """Nonces whose timestamp can no longer pass the window cannot be replayed."""
        async with self._conn(relaxed=True) as conn:
            await conn.execute("DELETE FROM nonces WHERE expires_at < $1", now)

    async def _sweep(self, *, since: float, now: float) -> None:
        """End leases that ran out (once, whichever replica locks them first) and wake this
        replica's waiters on intents that came due since the last sweep."""
        async with self._conn(relaxed=True) as conn, conn.transaction():
            ended = await conn.fetch(
                "UPDATE intents AS i SET"
                " status = CASE WHEN i.attempts >= i.max_attempts THEN 'dead' ELSE 'open' END,"
                " last_error = CASE WHEN i.attempts >= i.max_attempts"
                "   THEN coalesce(i.last_error, 'Lease expired on the last attempt.')"
                "   ELSE i.last_error END,"
                " claimer = CASE WHEN i.attempts >= i.max_attempts THEN i.claimer ELSE NULL END,"
                " claim_token = NULL, lease_until = NULL, updated_at = $1"
                " FROM (SELECT id FROM intents WHERE status = 'claimed' AND lease_until <= $1"
                "  ORDER BY lease_until LIMIT $2 FOR UPDATE SKIP LOCKED) AS due"
                " WHERE i.id = due.id RETURNING i.namespace, i.goal, i.status",
                now,
                SWEEP_BATCH,
            )
            for ns, goal in {(r["namespace"], r["goal"]) for r in ended if r["status"] == "open"}:
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, notification(ns, goal))
            came_due = await conn.fetch(
                "SELECT DISTINCT namespace, goal FROM intents"
                " WHERE status = 'open' AND run_at > $1 AND run_at <= $2",
                since,
                now,
            )
        if came_due:
            self._wakeups.ready((r["namespace"], r["goal"]) for r in came_due)


async def _keep_session(_conn: object) -> None:
    """What a connection goes back to its pool with: nothing to undo. The backend leaves no
    session state behind (settings are the pool's own, locks and LISTEN live on their own
    connections), so asyncpg's default reset (``RESET ALL; UNLISTEN *; ...``) would only cost
    a round trip per request."""


async def open_shared(settings: BusSettings, clock: Clock) -> tuple[SharedBackend, int]:
    """Connect, migrate, and load the keys: the backend, and how many intents are live.
    Raises :class:`StartupError` when the database cannot be reached or is too new."""
    db = settings.database
    shown = redacted(db.url)
    statement_ms = str(int(db.statement_timeout_seconds * 1000))

    def pool(**session: str) -> Any:
        return asyncpg.create_pool(
            db.url,
            min_size=1,
            max_size=db.pool_size,
            reset=_keep_session,
            timeout=db.connect_timeout_seconds,
            command_timeout=db.statement_timeout_seconds + 1,
            server_settings={
                "statement_timeout": statement_ms,
                "application_name": "intent-bus",
                **session,
            },
        )

    try:
        durable = await pool()
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StartupError(f"cannot connect to the database {shown}: {exc}") from None
    try:
        async with durable.acquire() as conn:
            await migrate(conn)
            rows = await conn.fetch(
                "SELECT id, name, secret_hash, created_at, revoked_at FROM api_keys"
            )
            live = await conn.fetchval(f"SELECT count(*) FROM intents WHERE status IN {_LIVE}")
        relaxed = await pool(synchronous_commit="off")
    except StartupError:
        await durable.close()
        raise
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        await durable.close()
        raise StartupError(f"cannot prepare the database {shown}: {exc}") from None
    keys = KeyRing(admin_secret=settings.auth.admin_secret, keys=[ApiKey(*r) for r in rows])
    backend = SharedBackend(
        pool=durable, relaxed=relaxed, settings=settings, clock=clock, keys=keys
    )
    return backend, int(live)
