"""Reads that arrive together share one request.

An operator polling a thousand IntentWorkers on one bus would send the bus a thousand
``/stats`` requests a second; workers that share a bus and a key poll at the same phase
(see the operator's handlers), so their reads arrive within the same few milliseconds, and
a :class:`Batcher` turns them into one request for all their keys. A Prometheus endpoint
that several workers read is scraped once per poll the same way (a batch of one key), and
a Secret whose cached value ran out is read again once, not once per worker using it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Generic, TypeVar

__all__ = ["Batcher", "settled"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: Fetches the values of some keys: a value, or the exception that key's readers get.
Fetch = Callable[[Sequence[K]], Awaitable[Mapping[K, V | BaseException]]]


async def settled(awaitable: Awaitable[V]) -> V | Exception:
    """The value, or the exception it raised, as a value.

    ``asyncio.gather(*(settled(a) for a in ...))`` instead of ``return_exceptions=True``: no
    task gather makes ends with an exception, which kopf (which checks every task born while
    it runs when it stops) would otherwise raise again and fail the operator's exit.
    """
    try:
        return await awaitable
    except Exception as failed:  # handed back, not swallowed: the caller decides
        return failed


class Batcher(Generic[K, V]):
    """Calls of :meth:`get` made within ``window`` seconds of the first share one ``fetch``.

    A fetch takes at most ``most`` keys; more go in further fetches, concurrently. A key no
    fetch answered, or a fetch that raised, fails its readers with that exception. Nothing
    is cached: a read after a fetch has started waits for the next one.
    """

    def __init__(self, fetch: Fetch[K, V], *, window: float = 0.005, most: int = 1000) -> None:
        self._fetch = fetch
        self._window = window
        self._most = most
        self._waiting: dict[K, list[asyncio.Future[V]]] = {}
        self._flush: asyncio.Task[None] | None = None
        #: Flushes still answering (this object owns them: aclose() ends them).
        self._running: set[asyncio.Task[None]] = set()
        #: Fetches made, for tests and metrics: reads made minus this is what batching saved.
        self.fetches = 0

    async def get(self, key: K) -> V:
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._flush is None:
            self._flush = asyncio.create_task(self._after_window())
            self._running.add(self._flush)
            self._flush.add_done_callback(self._running.discard)
        return await future

    async def aclose(self) -> None:
        """End the fetches in progress; their readers see CancelledError."""
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        for futures in self._waiting.values():
            for future in futures:
                future.cancel()
        self._waiting.clear()

    async def _after_window(self) -> None:
        await asyncio.sleep(self._window)
        waiting, self._waiting, self._flush = self._waiting, {}, None
        keys = list(waiting)
        chunks = [keys[i : i + self._most] for i in range(0, len(keys), self._most)]
        try:
            await asyncio.gather(*(self._answer(chunk, waiting) for chunk in chunks))
        finally:
            # Cancelled (aclose): these readers would otherwise wait for ever.
            for futures in waiting.values():
                for future in futures:
                    future.cancel()

    async def _answer(self, keys: list[K], waiting: dict[K, list[asyncio.Future[V]]]) -> None:
        self.fetches += 1
        try:
            found = await self._fetch(keys)
        except Exception as failed:  # every reader of these keys gets it, as raised
            found = dict.fromkeys(keys, failed)
        for key in keys:
            value = found.get(key, LookupError(f"no answer for {key!r}"))
            for future in waiting[key]:
                if future.done():  # its reader was cancelled
                    continue
                if isinstance(value, BaseException):
                    future.set_exception(value)
                else:
                    future.set_result(value)
