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
backlog figures  :class:`.backlog.SharedBacklogs`       :mod:`..backlog`
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

from intent_fleet.protocol import Now, redact_url

from ..auth import KeyRing
from ..backend import Figures
from ..errors import DurabilityError, StartupError
from ..settings import BusSettings
from .backlog import SharedBacklogs
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


class SharedBackend:
    """The :class:`~..backend.Backend` of bus replicas sharing one PostgreSQL database."""

    def __init__(
        self,
        *,
        db: Database,
        settings: BusSettings,
        clock: Now,
        keys: KeyRing,
        rng: random.Random | None = None,
    ) -> None:
        limits = settings.limits
        self._db = db
        self._clock = clock
        self._wakeups = Wakeups()
        self._claims = SharedClaims(
            db=db, queue=settings.queue, limits=limits, clock=clock, wakeups=self._wakeups
        )
        self.keys = SharedKeys(db=db, ring=keys)
        self.nonces = SharedNonces(db=db, window_seconds=settings.auth.signature_window_seconds)
        self.rate_limits = SharedRateLimiter(
            db=db, rate=limits.rate_limit_per_second, burst=limits.rate_limit_burst
        )
        self.intents = SharedEngine(
            db=db,
            settings=settings,
            clock=clock,
            quotas=SharedQuotas(limits=limits, clock=clock),
            claims=self._claims,
            rng=rng,
        )
        self.backlogs = SharedBacklogs(db=db, limits=limits, clock=clock, wakeups=self._wakeups)
        self.kv = SharedKV(db=db, clock=clock)
        self._housekeeping = Housekeeping(
            settings=settings.database,
            clock=clock,
            engine=self.intents,
            keys=self.keys,
            nonces=self.nonces,
            wakeups=self._wakeups,
            rng=rng,
        )

    @property
    def health(self) -> str:
        return self._db.health

    async def start(self, loop: asyncio.AbstractEventLoop) -> None:
        await self._housekeeping.start(loop)

    def release_waiters(self) -> None:
        self._wakeups.release_all()

    async def close(self) -> None:
        self._wakeups.release_all()
        await self.nonces.aclose()
        await self._claims.aclose()
        await self.intents.aclose()
        await self._housekeeping.close()
        await self._db.close()

    async def figures(self, *, viewer: str | None) -> Figures:
        backlogs, db = self.backlogs, self._db
        stats = await backlogs.stats(viewer=viewer)
        counts = await backlogs.status_counts(viewer=viewer)
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
            kv_entries=await self.kv.count(now=self._clock()),
            held_by_worker=await backlogs.held_by_worker(),
        )

    async def purge(self, namespace: str | None) -> int:
        deleted = await self.intents.purge(namespace)
        if namespace is None:
            await self.kv.purge()
        return deleted

    async def cleanup(self) -> dict[str, int]:
        now = self._clock()
        report = await self.intents.cleanup()
        report["kv_deleted"] = await self.kv.sweep(now=now)
        await self.nonces.forget(now=now)
        return report


async def open_shared(
    settings: BusSettings, clock: Now, *, rng: random.Random | None = None
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
        shown = redact_url(settings.database.url)
        raise StartupError(f"cannot prepare the database {shown}: {exc}") from None
    ring = KeyRing(admin_secret=settings.auth.admin_secret, keys=keys)
    return SharedBackend(db=db, settings=settings, clock=clock, keys=ring, rng=rng), int(live)
