"""What a replica does besides answering requests: listen for wake-ups, and sweep.

- **Listening**: one connection per replica listens on :data:`~.wakeups.CHANNEL`. An
  intent that became claimable wakes this replica's waiters on its goal; a change of the
  keys on any replica reloads this one's key cache. When the connection drops, it is
  opened again (backing off) and every waiter looks again, since news may have been lost.
- **Sweeping**, every ``sweep_interval_seconds``: leases that ran out end
  (:meth:`~.engine.SharedEngine.expire`), waiters on goals whose delayed intents came due
  look again, and every :data:`KEY_REFRESH_SECONDS` the key cache is reloaded in full and
  nonces past the signature window are forgotten.

At start, before the replica answers anything, leases that ran out while no replica was
up are ended (if the database is reachable; the sweep tries again either way).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import TYPE_CHECKING, Final

import asyncpg

from intent_fleet.protocol import Now, RetryPolicy

from ..errors import DurabilityError
from ..settings import DatabaseSettings
from .keys import KEYS_CHANGED
from .wakeups import CHANNEL, Wakeups, parse_notification

if TYPE_CHECKING:
    from .engine import SharedEngine
    from .keys import SharedKeys
    from .nonces import SharedNonces

__all__ = ["Housekeeping"]

log = logging.getLogger(__name__)

#: How often the listening connection is tried again after it dropped.
LISTEN_RETRY: Final = RetryPolicy(attempts=1_000_000, base_seconds=0.2, cap_seconds=5.0)
#: Seconds between full reloads of the key cache (changes also arrive by notification).
KEY_REFRESH_SECONDS: Final = 5.0


class Housekeeping:
    """The listening connection and the sweep of one replica."""

    def __init__(
        self,
        *,
        settings: DatabaseSettings,
        clock: Now,
        engine: SharedEngine,
        keys: SharedKeys,
        nonces: SharedNonces,
        wakeups: Wakeups,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._engine = engine
        self._keys = keys
        self._nonces = nonces
        self._wakeups = wakeups
        self._rng = rng or random.Random()  # retry jitter only
        self._listener: asyncpg.Connection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self, loop: asyncio.AbstractEventLoop) -> None:
        now = self._clock()
        with contextlib.suppress(DurabilityError):
            await self._sweep(since=now, now=now)
        self._tasks = [
            loop.create_task(self._listen_forever(), name="bus-listen"),
            loop.create_task(self._sweep_forever(), name="bus-sweep"),
        ]

    async def close(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close(timeout=2)

    # -- listening ------------------------------------------------------------------
    def _notified(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        if not isinstance(payload, str):
            return
        if payload == KEYS_CHANGED:
            asyncio.get_running_loop().create_task(self._reload_keys_quietly())
            return
        pair = parse_notification(payload)
        if pair is not None:
            self._wakeups.ready([pair])

    async def _reload_keys_quietly(self) -> None:
        with contextlib.suppress(DurabilityError):
            await self._keys.reload()

    async def _listen_forever(self) -> None:
        attempt = 0
        while not self._stopping:
            try:
                conn = await asyncpg.connect(
                    self._settings.url, timeout=self._settings.connect_timeout_seconds
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

    # -- sweeping ---------------------------------------------------------------------
    async def _sweep_forever(self) -> None:
        interval = self._settings.sweep_interval_seconds
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
                    await self._keys.reload()
                    await self._nonces.forget(now=now)
            except DurabilityError:
                continue  # logged where it failed; the next sweep tries again
            last = now

    async def _sweep(self, *, since: float, now: float) -> None:
        came_due = await self._engine.expire(since=since, now=now)
        if came_due:
            self._wakeups.ready(came_due)
