"""Nonces of signed requests, recorded in the shared database in groups.

Every signed request must record its nonce where every replica can see it, before the request
is served; one statement per request would make that the dearest part of a claim. Requests
arriving while a write is in flight wait for the next one, which records all of them in one
statement (as SQLite's group commit shares an fsync): one round trip per request when the
bus is quiet, a fraction of one under load.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

__all__ = ["NonceLedger", "Write"]

#: Records (key id, nonce, expires at) rows; returns the (key id, nonce) pairs that were new.
Write = Callable[[Sequence[tuple[str, str, float]]], Awaitable[set[tuple[str, str]]]]

_Waiting = tuple[str, str, float, "asyncio.Future[bool]"]


class NonceLedger:
    """:meth:`remember` is True for a nonce no request of that key used before."""

    def __init__(self, write: Write) -> None:
        self._write = write
        self._waiting: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None
        #: Statements sent, for tests: fewer than the nonces remembered under load.
        self.writes = 0

    async def remember(self, key_id: str, nonce: str, *, expires_at: float) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((key_id, nonce, expires_at, future))
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_all())
        return await future

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    async def _write_all(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                await self._write_group(group)
        finally:
            self._writer = None
            for *_, future in self._waiting:
                future.cancel()
            self._waiting = []

    async def _write_group(self, group: list[_Waiting]) -> None:
        rows: dict[tuple[str, str], float] = {}
        for key_id, nonce, expires_at, _ in group:
            rows.setdefault((key_id, nonce), expires_at)
        try:
            self.writes += 1
            added = await self._write([(k, n, e) for (k, n), e in rows.items()])
        except asyncio.CancelledError:
            for *_, future in group:
                future.cancel()
            raise
        except Exception as failed:  # each request of the group fails with the cause
            for *_, future in group:
                if not future.done():
                    future.set_exception(failed)
            return
        for key_id, nonce, _, future in group:
            # The same nonce twice in one group: the first is new, the second a replay.
            new = (key_id, nonce) in added
            added.discard((key_id, nonce))
            if not future.done():
                future.set_result(new)
