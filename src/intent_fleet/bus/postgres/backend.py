"""The shared backend: the bus's state in PostgreSQL, so several replicas serve one bus.

A replica keeps nothing between requests that another replica would need. It is made of
the same parts as the embedded :class:`~..local.LocalBackend`, each the database's
counterpart of one there:

===============  =====================================  =================================
part             here                                   embedded
===============  =====================================  =================================
storage          :class:`.database.Database`            :class:`~..store.Store`
keys             :class:`.keys.SharedKeys`              :class:`~..auth.KeyRing`
nonces           :class:`.nonces.SharedNonces`          :class:`~..auth.NonceCache`
rate limits      :class:`.ratelimit.SharedRateLimiter`  :class:`~..ratelimit.RateLimiter`
quotas           :class:`.quotas.SharedQuotas`          :class:`~..quotas.Quotas`
life cycle       :class:`.engine.SharedEngine`          :class:`~..engine.Engine`
claims           :class:`.claims.SharedClaims`          :mod:`..claim_index`
backlog figures  :class:`.backlog.SharedBacklog`        :mod:`..backlog`
long-polls       :class:`.wakeups.Wakeups`              :mod:`..longpoll`
KV               :class:`.kv.SharedKV`                  :class:`~..kv.KVStore`
timers           :class:`.housekeeping.Housekeeping`    the engine's timers
===============  =====================================  =================================

What is only this replica's: the long-polls parked on it, its counters for ``/metrics``,
and a cache of the keys it has seen (refreshed when any replica changes a key, and every
few seconds). Each replica opens up to ``pool_size`` connections in each of its two pools
(:mod:`.database`), and one more to listen.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence

from intent_fleet.protocol import GoalStats

from ..auth import KeyRing
from ..backend import Ended, Figures, PublishOutcome, PublishRequest
from ..errors import DurabilityError, StartupError
from ..lifecycle import ClaimFilter
from ..records import ApiKey, Caller, Intent, TerminalRow
from ..settings import BusSettings, redacted
from .backlog import SharedBacklog
from .claims import SharedClaims
from .database import Database, open_database
from .engine import SharedEngine
from .housekeeping import Housekeeping
from .keys import SharedKeys, load_keys
from .kv import SharedKV
from .nonces import SharedNonces
from .quotas import SharedQuotas
from .ratelimit import SharedRateLimiter
from .sql import LIVE
from .wakeups import Wakeups

__all__ = ["SharedBackend", "open_shared"]

Clock = Callable[[], float]


class SharedBackend:
    """The :class:`~..backend.Backend` of bus replicas sharing one PostgreSQL database."""

    def __init__(
        self,
        *,
        db: Database,
        settings: BusSettings,
        clock: Clock,
        keys: KeyRing,
        rng: random.Random | None = None,
    ) -> None:
        limits = settings.limits
        self._db = db
        self._wakeups = Wakeups()
        self._keys = SharedKeys(db=db, ring=keys)
        self._nonces = SharedNonces(db=db, window_seconds=settings.auth.signature_window_seconds)
        self._limiter = SharedRateLimiter(
            db=db, rate=limits.rate_limit_per_second, burst=limits.rate_limit_burst
        )
        self._engine = SharedEngine(
            db=db,
            settings=settings,
            clock=clock,
            quotas=SharedQuotas(limits=limits, clock=clock),
            rng=rng,
        )
        self._claims = SharedClaims(
            db=db, queue=settings.queue, limits=limits, clock=clock, wakeups=self._wakeups
        )
        self._backlog = SharedBacklog(db=db, limits=limits, clock=clock, wakeups=self._wakeups)
        self._kv = SharedKV(db=db, clock=clock)
        self._housekeeping = Housekeeping(
            settings=settings.database,
            clock=clock,
            engine=self._engine,
            keys=self._keys,
            nonces=self._nonces,
            wakeups=self._wakeups,
            rng=rng,
        )
        self._clock = clock

    # -- life cycle -------------------------------------------------------
    @property
    def health(self) -> str:
        return self._db.health

    async def start(self, loop: asyncio.AbstractEventLoop) -> None:
        await self._housekeeping.start(loop)

    def release_waiters(self) -> None:
        self._wakeups.release_all()

    async def close(self) -> None:
        self._wakeups.release_all()
        await self._nonces.aclose()
        await self._claims.aclose()
        await self._engine.aclose()
        await self._housekeeping.close()
        await self._db.close()

    # -- who is calling ----------------------------------------------------
    async def authenticate(self, presented: str) -> Caller | None:
        return await self._keys.authenticate(presented)

    async def remember_nonce(self, key_id: str, nonce: str, *, timestamp: int, now: float) -> bool:
        return await self._nonces.remember(key_id, nonce, timestamp=timestamp)

    async def rate_limit(self, key_id: str, *, now: float) -> int | None:
        return await self._limiter.acquire(key_id, now=now)

    # -- the intent life cycle -------------------------------------------------
    async def publish(
        self, caller: Caller, req: PublishRequest, *, idempotency_key: str | None, body: bytes
    ) -> PublishOutcome:
        return await self._engine.publish(caller, req, idempotency_key=idempotency_key, body=body)

    async def claim(
        self, flt: ClaimFilter, *, admin: bool, wait: float, limit: int = 1
    ) -> list[Intent]:
        return await self._claims.claim(flt, admin=admin, wait=wait, limit=limit)

    async def interrupt_claims(self, caller: Caller, session: str) -> int:
        return self._claims.interrupt(caller, session)

    async def extend(self, caller: Caller, intent_id: str, token: str | None, seconds: int) -> int:
        return await self._engine.extend(caller, intent_id, token, seconds)

    async def fulfill(
        self,
        caller: Caller,
        intent_id: str,
        token: str | None,
        *,
        result: bytes | None,
        result_type: str | None,
    ) -> Ended:
        return await self._engine.fulfill(
            caller, intent_id, token, result=result, result_type=result_type
        )

    async def fail(
        self, caller: Caller, intent_id: str, token: str | None, error: str, *, final: bool = False
    ) -> Ended:
        return await self._engine.fail(caller, intent_id, token, error, final=final)

    async def release(self, caller: Caller, intent_id: str, token: str | None) -> None:
        await self._engine.release(caller, intent_id, token)

    async def lookup(self, intent_id: str) -> Intent | TerminalRow | None:
        return await self._engine.lookup(intent_id)

    async def intent(self, intent_id: str) -> Intent | None:
        return await self._engine.intent(intent_id)

    # -- backlog -------------------------------------------------------------------
    async def stats(
        self, namespace: str | None = None, goal: str | None = None, *, viewer: str | None = None
    ) -> list[GoalStats]:
        return await self._backlog.stats(namespace, goal, viewer=viewer)

    async def stats_of(
        self, pairs: Sequence[tuple[str, str]], *, viewer: str | None = None
    ) -> list[GoalStats]:
        return await self._backlog.stats_of(pairs, viewer=viewer)

    async def watch_backlog(
        self, pairs: Sequence[tuple[str, str]], *, viewer: str | None, wait: float
    ) -> None:
        await self._backlog.watch(pairs, viewer=viewer, wait=wait)

    async def figures(self, *, viewer: str | None) -> Figures:
        backlog, db = self._backlog, self._db
        stats = await backlog.stats(viewer=viewer)
        counts = await backlog.status_counts(viewer=viewer)
        if viewer is not None:
            return Figures(status_counts=counts, stats=stats)
        return Figures(
            status_counts=counts,
            stats=stats,
            claims_served=self._claims.served,
            waiting_claims=self._wakeups.claims(),
            waiting_watches=self._wakeups.watches(),
            commits=db.transactions,
            ops_committed=db.transactions,
            failed_writes=dict(db.failed),
            storage_health=db.health,
            kv_entries=await self._kv.count(now=self._clock()),
            held_by_worker=await backlog.held_by_worker(),
        )

    # -- admin -------------------------------------------------------------------------
    async def cancel(self, intent_id: str) -> None:
        await self._engine.cancel(intent_id)

    async def retry(self, intent_id: str) -> None:
        await self._engine.retry(intent_id)

    async def purge(self, namespace: str | None) -> int:
        deleted = await self._engine.purge(namespace)
        if namespace is None:
            await self._kv.purge()
        return deleted

    async def cleanup(self) -> dict[str, int]:
        now = self._clock()
        report = await self._engine.cleanup()
        report["kv_deleted"] = await self._kv.sweep(now=now)
        await self._nonces.forget(now=now)
        return report

    async def dead_letters(
        self, *, namespace: str | None, goal: str | None, limit: int, offset: int
    ) -> list[TerminalRow]:
        return await self._engine.dead_letters(
            namespace=namespace, goal=goal, limit=limit, offset=offset
        )

    async def add_key(self, key: ApiKey) -> None:
        await self._keys.add(key)

    async def find_key(self, *, secret: str | None, key_id: str | None) -> ApiKey | None:
        return await self._keys.find(secret=secret, key_id=key_id)

    async def revoke_key(self, key: ApiKey, *, now: float) -> None:
        await self._keys.revoke(key, now=now)

    async def keys(self) -> list[ApiKey]:
        return await self._keys.all()

    # -- KV --------------------------------------------------------------------------
    async def kv_get(self, owner: str, key: str, *, now: float) -> str | None:
        return await self._kv.get(owner, key, now=now)

    async def kv_set(
        self, owner: str, key: str, value: str, *, expires_at: float, most: int
    ) -> None:
        await self._kv.set(owner, key, value, expires_at=expires_at, most=most)


async def open_shared(
    settings: BusSettings, clock: Clock, *, rng: random.Random | None = None
) -> tuple[SharedBackend, int]:
    """Connect, migrate, and load the keys: the backend, and how many intents are live
    (``rng``: the jitter's, for tests that replay it). Raises :class:`StartupError` when
    the database cannot be reached or is too new."""
    db = await open_database(settings.database)
    try:
        async with db.conn() as conn:
            keys = await load_keys(conn)
            live = await conn.fetchval(f"SELECT count(*) FROM intents WHERE status IN {LIVE}")
    except DurabilityError as exc:
        await db.close()
        shown = redacted(settings.database.url)
        raise StartupError(f"cannot prepare the database {shown}: {exc}") from None
    ring = KeyRing(admin_secret=settings.auth.admin_secret, keys=keys)
    return SharedBackend(db=db, settings=settings, clock=clock, keys=ring, rng=rng), int(live)
