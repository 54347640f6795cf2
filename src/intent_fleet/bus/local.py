"""The embedded backend: one process owns the bus's state in memory, SQLite keeps it.

Its parts are the engine (:mod:`.engine`, the intents and their life cycle), the keys
(:class:`~.auth.KeyRing`), the nonces seen (:class:`~.auth.NonceCache`), the token buckets
(:class:`~.ratelimit.RateLimiter`) and the KV entries (:class:`~.kv.KVStore`);
:class:`~.store.Store` makes each change durable. Nothing here is shared with another
process, which is what makes it fast. The classes below give the in-memory parts the
:mod:`.backend` protocols' shape, writing to the store where a change must be durable
before it counts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from intent_fleet.protocol import GoalStats, Now

from .auth import KeyRing, NonceCache
from .backend import Figures
from .engine import Engine
from .kv import KVStore
from .quotas import check_kv_set
from .ratelimit import RateLimiter
from .records import ApiKey, Caller
from .settings import BusSettings
from .store import Store, insert_key_op, kv_purge_op, revoke_key_op

__all__ = ["LocalBackend", "open_local"]


class LocalKeys:
    """The key ring; a new or revoked key counts once it is on disk."""

    def __init__(self, *, ring: KeyRing, store: Store) -> None:
        self._ring = ring
        self._store = store

    async def authenticate(self, presented: str) -> Caller | None:
        return self._ring.authenticate(presented)

    async def add(self, key: ApiKey) -> None:
        # Usable once on disk: a key the disk refused must not work until the next restart.
        await asyncio.shield(
            self._store.submit([insert_key_op(key)], on_durable=lambda: self._ring.add(key))
        )

    async def find(self, *, secret: str | None, key_id: str | None) -> ApiKey | None:
        return self._ring.find(secret=secret, key_id=key_id)

    async def revoke(self, key: ApiKey, *, now: float) -> None:
        # Written first: a revoke the disk refused must not come undone at the next restart.
        await asyncio.shield(
            self._store.submit(
                [revoke_key_op(key.id, now=now)],
                on_durable=lambda: self._ring.revoke(key, now=now),
            )
        )

    async def all(self) -> list[ApiKey]:
        return self._ring.all()


class LocalNonces:
    """The nonces seen, in memory."""

    def __init__(self, cache: NonceCache) -> None:
        self._cache = cache

    async def remember(self, key_id: str, nonce: str, *, timestamp: int, now: float) -> bool:
        return self._cache.remember(key_id, nonce, timestamp=timestamp, now=now)


class LocalRateLimits:
    """Token buckets in memory."""

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    async def acquire(self, key_id: str, *, now: float) -> int | None:
        return self._limiter.acquire(key_id, now=now)


class LocalBacklogs:
    """The engine's backlog figures."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def stats(
        self, namespace: str | None = None, goal: str | None = None, *, viewer: str | None = None
    ) -> list[GoalStats]:
        return self._engine.stats(namespace, goal, viewer=viewer)

    async def stats_of(
        self, pairs: Sequence[tuple[str, str]], *, viewer: str | None = None
    ) -> list[GoalStats]:
        return self._engine.stats_of(pairs, viewer=viewer)

    async def watch(
        self, pairs: Sequence[tuple[str, str]], *, viewer: str | None, wait: float
    ) -> None:
        await self._engine.watch_backlog(pairs, viewer=viewer, wait=wait)


class LocalKV:
    """KV entries in memory, each change durable before memory shows it."""

    def __init__(self, *, kv: KVStore, store: Store, clock: Now) -> None:
        self._kv = kv
        self._store = store
        self._clock = clock

    async def get(self, owner: str, key: str, *, now: float) -> str | None:
        return self._kv.get(owner, key, now=now)

    async def set(self, owner: str, key: str, value: str, *, expires_at: float, most: int) -> None:
        kv = self._kv
        exists = kv.has(owner, key)
        if most and not exists and kv.count_of(owner) >= most:
            # Entries that expired but are still in memory do not count against the quota.
            kv.forget_expired(now=self._clock())
        check_kv_set(most, held=kv.count_of(owner), exists=exists)
        op = kv.set_op(owner, key, value, expires_at=expires_at)
        await asyncio.shield(
            self._store.submit(
                [op], on_durable=lambda: kv.set(owner, key, value, expires_at=expires_at)
            )
        )


class LocalBackend:
    """The :class:`~.backend.Backend` of one bus process on SQLite."""

    def __init__(
        self,
        *,
        store: Store,
        engine: Engine,
        keys: KeyRing,
        kv: KVStore,
        settings: BusSettings,
        clock: Now,
    ) -> None:
        limits = settings.limits
        self._store, self._engine, self._kv_store = store, engine, kv
        self._clock = clock
        self.keys = LocalKeys(ring=keys, store=store)
        self.nonces = LocalNonces(NonceCache(window_seconds=settings.auth.signature_window_seconds))
        self.rate_limits = LocalRateLimits(
            RateLimiter(rate=limits.rate_limit_per_second, burst=limits.rate_limit_burst)
        )
        self.intents = engine
        self.backlogs = LocalBacklogs(engine)
        self.kv = LocalKV(kv=kv, store=store, clock=clock)

    @property
    def health(self) -> str:
        return self._store.health

    async def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._store.start(loop)
        self._engine.start(loop)

    def release_waiters(self) -> None:
        self._engine.release_waiters()

    async def close(self) -> None:
        self._engine.stop()
        await self._store.close()

    async def figures(self, *, viewer: str | None) -> Figures:
        engine, store = self._engine, self._store
        counts = engine.status_counts(viewer=viewer)
        stats = engine.stats(viewer=viewer)
        if viewer is not None:
            return Figures(status_counts=counts, stats=stats)
        return Figures(
            status_counts=counts,
            stats=stats,
            claims_served=engine.claims_served,
            waiting_claims=engine.waiting_claims(),
            waiting_watches=engine.waiting_watches(),
            commits=store.commits,
            ops_committed=store.ops_committed,
            failed_writes=dict(store.failed_writes),
            storage_health=store.health,
            unwritten_intents=engine.dirty_count(),
            kv_entries=len(self._kv_store),
            held_by_worker=engine.held_by_worker(),
        )

    async def purge(self, namespace: str | None) -> int:
        deleted = await self._engine.purge(namespace)
        if namespace is None:
            await asyncio.shield(
                self._store.submit([kv_purge_op()], on_durable=self._kv_store.purge)
            )
        return deleted

    async def cleanup(self) -> dict[str, int]:
        report = await self._engine.cleanup()
        kv_deleted, op = self._kv_store.sweep(now=self._clock())
        await self._store.submit([op])
        report["kv_deleted"] = kv_deleted
        return report


def open_local(settings: BusSettings, clock: Now = time.time) -> tuple[LocalBackend, int]:
    """The database opened and memory rebuilt from it: the backend, and how many intents
    are live. Raises :class:`~.errors.StartupError`."""
    store = Store(settings.storage.path)
    state = store.open(now=clock())
    engine = Engine(store=store, settings=settings, clock=clock)
    engine.load(state)
    backend = LocalBackend(
        store=store,
        engine=engine,
        keys=KeyRing(admin_secret=settings.auth.admin_secret, keys=state.keys),
        kv=KVStore(state.kv),
        settings=settings,
        clock=clock,
    )
    return backend, len(state.intents)
