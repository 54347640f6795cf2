"""Time as every part of intent-fleet reads it and waits on it: one injected :class:`Clock`.

The sidecar's worker, leasing and app channel, the runner around them, the operator's backlog
sources and the bus clients take a clock instead of calling :mod:`time` and
:func:`asyncio.sleep`, so a test hands them a virtual one and runs minutes of leases, drains
and back-offs in milliseconds. The bus, which only reads the time, takes a :data:`Now`.
Timings that only feed metrics (``perf_counter``) stay real.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

__all__ = ["Clock", "Now", "Sleep"]

#: A reading of the time in seconds (``time.time`` or ``time.monotonic``, or a test's own).
Now = Callable[[], float]
#: Waiting that many seconds (``asyncio.sleep``, or a test's own).
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Clock:
    """The time of one process, and waiting on it; a test passes one of its own."""

    #: Unix seconds: lease ends, deadlines and timestamps shared with other hosts.
    wall: Now = time.time
    #: Seconds for intervals measured on this host: pauses, latencies, idle time.
    monotonic: Now = time.monotonic
    #: Wait that long.
    sleep: Sleep = asyncio.sleep

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
