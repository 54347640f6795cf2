"""A worker on virtual time: a clock that jumps ahead whenever every task is waiting, an
in-memory bus port and a scripted handler port. Minutes of leases, drains and back-offs run
in milliseconds, in order, the same every time."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from intent_fleet.protocol import ClaimedIntent, ClaimOutcome, Clock
from intent_fleet.sidecar import (
    AppSettings,
    ClaimSettings,
    Delivery,
    Features,
    Fulfilled,
    SidecarMetrics,
    SidecarSettings,
    Worker,
)
from intent_fleet.sidecar.app_channel import Outcome

T0 = 1_800_000_000.0
#: Loop turns with nothing due before virtual time moves on: enough for the in-memory fakes
#: (no real I/O) to run every task that can run.
SETTLE_TURNS = 50


class VirtualClock:
    """Sleeps wait on virtual time; :meth:`run` moves it to the next wake-up once the loop
    has nothing else to do."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def wall(self) -> float:
        return T0 + self.now

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wake = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._order), wake))
        await wake

    def clock(self) -> Clock:
        return Clock(wall=self.wall, monotonic=self.monotonic, sleep=self.sleep)

    async def run(self) -> None:
        while True:
            for _ in range(SETTLE_TURNS):
                await asyncio.sleep(0)
            while self._sleepers and self._sleepers[0][2].done():  # cancelled sleeps
                heapq.heappop(self._sleepers)
            if not self._sleepers:
                continue
            when, _, wake = heapq.heappop(self._sleepers)
            self.now = max(self.now, when)
            wake.set_result(None)

    async def until(self, check: Callable[[], bool], *, limit: float = 3600.0) -> None:
        """Let virtual time pass until ``check()`` holds (at most ``limit`` virtual seconds)."""
        deadline = self.now + limit
        while not check():
            assert self.now < deadline, f"not reached within {limit} virtual seconds"
            await asyncio.sleep(0)


@dataclass
class FakeBus:
    """The bus port: intents waiting to be claimed, and a log of every call."""

    clock: VirtualClock
    queue: list[ClaimedIntent] = field(default_factory=list)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    #: Raised (in order) by the next calls of that name instead of answering.
    errors: dict[str, list[BaseException]] = field(default_factory=dict)
    empty_retry_after: float | None = None

    def publish(self, payload: Any = None, *, lease: int = 30) -> str:
        n = len(self.queue) + len(self.calls)
        intent = ClaimedIntent(
            id=f"i{n}",
            goal="g",
            payload=payload or {},
            claim_token=f"t{n}",
            claim_timeout=lease,
            claim_expires_at=self.clock.wall() + lease,
        )
        self.queue.append(intent)
        return intent.id

    def named(self, name: str) -> list[Any]:
        return [args for call, args in self.calls if call == name]

    def _maybe_fail(self, name: str) -> None:
        pending = self.errors.get(name)
        if pending:
            raise pending.pop(0)

    async def claim(self, goal: str | None = None, **kwargs: Any) -> ClaimOutcome:
        self.calls.append(("claim", self.clock.now))
        self._maybe_fail("claim")
        if not self.queue:
            return ClaimOutcome(intent=None, retry_after=self.empty_retry_after)
        batch = kwargs.get("batch") or 1
        taken, self.queue = self.queue[:batch], self.queue[batch:]
        return ClaimOutcome(intent=taken[0], batch=tuple(taken) if len(taken) > 1 else ())

    async def interrupt_claims(self, session: str) -> int:
        self.calls.append(("interrupt", session))
        return 0

    async def extend(self, intent_id: str, *, claim_token: str, seconds: int) -> int:
        self.calls.append(("extend", (intent_id, claim_token, self.clock.now)))
        self._maybe_fail("extend")
        return seconds

    async def fulfill(self, intent_id: str, **kwargs: Any) -> None:
        self.calls.append(("fulfill", (intent_id, kwargs.get("result"))))
        self._maybe_fail("fulfill")

    async def fail(self, intent_id: str, **kwargs: Any) -> str | None:
        self.calls.append(("fail", (intent_id, kwargs.get("error"))))
        self._maybe_fail("fail")
        return None

    async def release(self, intent_id: str, **kwargs: Any) -> None:
        self.calls.append(("release", intent_id))


@dataclass
class FakeApp:
    """The handler port: each delivery takes ``seconds`` of virtual time, then answers the
    next scripted outcome for its intent (or fulfils)."""

    clock: VirtualClock
    seconds: float = 1.0
    script: dict[str, list[Outcome]] = field(default_factory=dict)
    deliveries: list[tuple[str, float]] = field(default_factory=list)

    async def deliver(self, delivery: Delivery, *, limit_seconds: float) -> Outcome:
        self.deliveries.append((delivery.intent_id, self.clock.now))
        await self.clock.sleep(min(self.seconds, limit_seconds))
        planned = self.script.get(delivery.intent_id)
        return planned.pop(0) if planned else Fulfilled({"ok": True}, "json")


@dataclass
class Rig:
    clock: VirtualClock
    bus: FakeBus
    app: FakeApp
    metrics: SidecarMetrics

    def worker(self, *, features: Features | None = None, **claim: Any) -> Worker:
        settings = SidecarSettings(
            app=AppSettings(timeout_seconds=claim.pop("handler_timeout", 300.0)),
            claim=ClaimSettings(goal="g", worker_id="w", **claim),
        )
        worker = Worker(
            settings=settings,
            bus=self.bus,  # type: ignore[arg-type]
            app=self.app,
            features=features or Features(extend=True, release=True, long_poll=False),
            metrics=self.metrics,
            clock=self.clock.clock(),
            rng=random.Random(7),
        )
        worker.set_handler_ready(True)
        return worker


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = VirtualClock()
    driver = asyncio.create_task(clock.run())
    try:
        yield Rig(clock, FakeBus(clock), FakeApp(clock), SidecarMetrics())
    finally:
        driver.cancel()
        await asyncio.gather(driver, return_exceptions=True)
