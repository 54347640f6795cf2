"""Time as the sidecar sees it: one injected object for the worker, leasing and the app channel.

Every wait and every reading of the time goes through a :class:`Clock`, so a test can hand the
worker a virtual one and run minutes of leases, drains and back-offs in milliseconds. Timings
that only feed metrics (``perf_counter``) stay real.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

__all__ = ["Clock"]


@dataclass(frozen=True, slots=True)
class Clock:
    #: Unix seconds: lease ends and deadlines shared with the bus and the handler.
    wall: Callable[[], float] = time.time
    #: Seconds for intervals measured on this host: pauses, busy ratio, idle time.
    monotonic: Callable[[], float] = time.monotonic
    #: Wait that long.
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    async def _sleep(self, seconds: float) -> None:
        await self.sleep(seconds)

    async def wait_for(self, event: asyncio.Event, seconds: float) -> bool:
        """Wait for ``event``, at most ``seconds``; True if it is set."""
        if event.is_set():
            return True
        await self.within(seconds, event.wait())
        return event.is_set()

    async def within(self, seconds: float, work: Coroutine[Any, Any, Any]) -> bool:
        """Run ``work`` for at most ``seconds``: True if it finished, False if it was cancelled
        at the deadline."""
        async with asyncio.TaskGroup() as tasks:
            worker = tasks.create_task(work)
            deadline = tasks.create_task(self._sleep(seconds))
            await asyncio.wait({worker, deadline}, return_when=asyncio.FIRST_COMPLETED)
            finished = worker.done()
            worker.cancel()
            deadline.cancel()
        return finished
