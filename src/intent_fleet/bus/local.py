"""The embedded backend: one process owns the bus's state in memory, SQLite keeps it.

The engine (:mod:`.engine`) holds the intents, :class:`~.auth.KeyRing` the keys,
:class:`~.kv.KVStore` the KV entries, :class:`~.auth.NonceCache` the nonces seen and
:class:`~.ratelimit.RateLimiter` the token buckets; :class:`~.store.Store` makes each change
durable. Nothing here is shared with another process, which is what makes it fast.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from intent_fleet.protocol import GoalStats

from .auth import KeyRing, NonceCache
from .backend import Ended, Figures, PublishOutcome, PublishRequest
from .engine import Engine
from .kv import KVStore
from .lifecycle import ClaimFilter
from .quotas import check_kv_set
from .ratelimit import RateLimiter
from .records import ApiKey, Caller, Intent, TerminalRow
from .settings import BusSettings
from .store import Store, insert_key_op, kv_purge_op, revoke_key_op

__all__ = ["LocalBackend", "open_local"]


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
        clock: Callable[[], float],
    ) -> None:
        self._store, self._engine, self._keys, self._kv = store, engine, keys, kv
        self._clock = clock
        self._nonces = NonceCache(window_seconds=settings.auth.signature_window_seconds)
        self._limiter = RateLimiter(
            rate=settings.limits.rate_limit_per_second, burst=settings.limits.rate_limit_burst
        )

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

    # -- who is calling ----------------------------------------------------
    async def authenticate(self, presented: str) -> Caller | None:
        return self._keys.authenticate(presented)

    async def remember_nonce(self, key_id: str, nonce: str, *, timestamp: int, now: float) -> bool:
        return self._nonces.remember(key_id, nonce, timestamp=timestamp, now=now)

    async def rate_limit(self, key_id: str, *, now: float) -> int | None:
        return self._limiter.acquire(key_id, now=now)

    # -- the intent life cycle -------------------------------------------------
    async def publish(
        self, caller: Caller, req: PublishRequest, *, idempotency_key: str | None, body: bytes
    ) -> PublishOutcome:
        return await self._engine.publish(caller, req, idempotency_key=idempotency_key, body=body)

    async def claim(
        self, flt: ClaimFilter, *, admin: bool, wait: float, limit: int = 1
    ) -> list[Intent]:
        return await self._engine.claim(flt, admin=admin, wait=wait, limit=limit)

    async def interrupt_claims(self, caller: Caller, session: str) -> int:
        return self._engine.interrupt_claims(caller, session)

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
        return self._engine.live(intent_id) or self._engine.read_terminal(intent_id)

    async def intent(self, intent_id: str) -> Intent | None:
        return self._engine.live(intent_id) or self._store.read_intent(intent_id)

    # -- backlog -------------------------------------------------------------------
    async def stats(
        self, namespace: str | None = None, goal: str | None = None, *, viewer: str | None = None
    ) -> list[GoalStats]:
        return self._engine.stats(namespace, goal, viewer=viewer)

    async def stats_of(
        self, pairs: Sequence[tuple[str, str]], *, viewer: str | None = None
    ) -> list[GoalStats]:
        return self._engine.stats_of(pairs, viewer=viewer)

    async def watch_backlog(
        self, pairs: Sequence[tuple[str, str]], *, viewer: str | None, wait: float
    ) -> None:
        await self._engine.watch_backlog(pairs, viewer=viewer, wait=wait)

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
            kv_entries=len(self._kv),
            held_by_worker=engine.held_by_worker(),
        )

    # -- admin -------------------------------------------------------------------------
    async def cancel(self, intent_id: str) -> None:
        await self._engine.cancel(intent_id)

    async def retry(self, intent_id: str) -> None:
        await self._engine.retry(intent_id)

    async def purge(self, namespace: str | None) -> int:
        deleted = await self._engine.purge(namespace)
        if namespace is None:
            await asyncio.shield(self._store.submit([kv_purge_op()], on_durable=self._kv.purge))
        return deleted

    async def cleanup(self) -> dict[str, int]:
        report = await self._engine.cleanup()
        kv_deleted, op = self._kv.sweep(now=self._clock())
        await self._store.submit([op])
        report["kv_deleted"] = kv_deleted
        return report

    async def dead_letters(
        self, *, namespace: str | None, goal: str | None, limit: int, offset: int
    ) -> list[TerminalRow]:
        return self._store.dead_letters(namespace=namespace, goal=goal, limit=limit, offset=offset)

    async def add_key(self, key: ApiKey) -> None:
        # Usable once on disk: a key the disk refused must not work until the next restart.
        await asyncio.shield(
            self._store.submit([insert_key_op(key)], on_durable=lambda: self._keys.add(key))
        )

    async def find_key(self, *, secret: str | None, key_id: str | None) -> ApiKey | None:
        return self._keys.find(secret=secret, key_id=key_id)

    async def revoke_key(self, key: ApiKey, *, now: float) -> None:
        # Written first: a revoke the disk refused must not come undone at the next restart.
        await asyncio.shield(
            self._store.submit(
                [revoke_key_op(key.id, now=now)],
                on_durable=lambda: self._keys.revoke(key, now=now),
            )
        )

    async def keys(self) -> list[ApiKey]:
        return self._keys.all()

    # -- KV --------------------------------------------------------------------------
    async def kv_get(self, owner: str, key: str, *, now: float) -> str | None:
        return self._kv.get(owner, key, now=now)

    async def kv_set(
        self, owner: str, key: str, value: str, *, expires_at: float, most: int
    ) -> None:
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


def open_local(
    settings: BusSettings, clock: Callable[[], float] = time.time
) -> tuple[LocalBackend, int]:
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
