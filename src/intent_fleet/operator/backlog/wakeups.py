"""Work for a worker at zero, noticed at once: one long-poll per bus on the goals at zero.

A worker scaled to zero would otherwise wait for its next poll to see new work (up to the
polling interval). Instead, the goals whose workers are at zero with an empty queue are
watched with a single ``POST /stats`` that the bus holds open until one of them has work
(extension ``backlog_wait``); their workers are woken at once and poll out of turn. On a
bus without the extension nothing is watched and the regular polls do the work.

A wake-up is one-shot: a woken worker that is still at zero with nothing to do watches
again at its next poll. A goal at zero that has work below its activation threshold is
not watched at all: the bus would answer at once, again and again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Final

from intent_fleet.operator.batching import settled
from intent_fleet.protocol import BusClient, IntentBusError, RetryPolicy
from intent_fleet.protocol.limits import MAX_STATS_GOALS

__all__ = ["WAIT_FEATURE", "Wake", "WakeUps"]

log = logging.getLogger("intent_fleet.operator")

#: The ``/health`` feature that promises ``POST /stats`` with ``wait``.
WAIT_FEATURE: Final = "backlog_wait"
#: After a failed watch: 1 s, doubling while it keeps failing, at most 30 s.
WATCH_RETRY: Final = RetryPolicy(base_seconds=1.0, cap_seconds=30.0, jitter="equal")

#: Wakes one worker (sets its event); must not block.
Wake = Callable[[], None]
Pair = tuple[str, str]


class WakeUps:
    """The goals at zero on one bus, watched with one long-poll that the bus holds open.

    ``settle_seconds`` lets the watches of a fleet that polls together land in one request,
    and bounds how often a watch is sent again.
    """

    def __init__(
        self,
        *,
        client: BusClient,
        bus_url: str,
        wait_seconds: float = 25.0,
        settle_seconds: float = 0.05,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self._url = bus_url
        self._wait = wait_seconds
        self._settle = settle_seconds
        self._rng = rng or random.Random()
        self._wakes: dict[Pair, set[Wake]] = {}
        self._added = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Watches sent and workers woken, for tests and metrics.
        self.watches = 0
        self.woken = 0

    def watched(self) -> set[Pair]:
        return set(self._wakes)

    def watch(self, namespace: str, goal: str, wake: Wake) -> None:
        """Wake ``wake`` once when this goal gets work (again each time it is called)."""
        pair = (namespace, goal)
        if pair not in self._wakes:
            self._added.set()  # the watch in flight does not ask about this goal yet
        self._wakes.setdefault(pair, set()).add(wake)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"wake-ups {self._url}")

    def unwatch(self, namespace: str, goal: str, wake: Wake) -> None:
        wakes = self._wakes.get((namespace, goal))
        if wakes is not None:
            wakes.discard(wake)
            if not wakes:
                del self._wakes[(namespace, goal)]

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._wakes.clear()

    async def _run(self) -> None:
        if not await self._supported():
            return
        failures = 0
        while self._wakes:
            await asyncio.sleep(self._settle)
            self._added.clear()
            pairs = list(self._wakes)[:MAX_STATS_GOALS]
            try:
                answered = await self._watch(pairs)
            except IntentBusError as failed:
                log.warning("watching goals at zero on %s failed: %s", self._url, failed)
                await asyncio.sleep(WATCH_RETRY.delay(failures, self._rng))
                failures += 1
                continue
            failures = 0
            for pair in answered:
                for wake in self._wakes.pop(pair, ()):
                    self.woken += 1
                    wake()

    async def _supported(self) -> bool:
        try:
            return await self._client.supports(WAIT_FEATURE)
        except IntentBusError:
            return False  # the regular polls report what is wrong with the bus

    async def _watch(self, pairs: list[Pair]) -> list[Pair]:
        """The goals of ``pairs`` with work, once there is some; [] when the watch ended
        without any (timed out, or a goal was added and it is asked again)."""
        self.watches += 1
        # settled(): a failed poll pending when kopf stops must not end as a failed task.
        poll = asyncio.ensure_future(settled(self._client.stats_of(pairs, wait=self._wait)))
        added = asyncio.ensure_future(self._added.wait())
        try:
            await asyncio.wait({poll, added}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pending in (poll, added):
                if not pending.done():
                    pending.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await pending
        if not poll.done() or poll.cancelled():
            return []
        answer = poll.result()
        if isinstance(answer, Exception):
            raise answer
        return [(g.namespace, g.goal) for g in answer.goals if g.ready > 0]
