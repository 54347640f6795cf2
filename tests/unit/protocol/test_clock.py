"""The one injected clock: waits end at the event or at the deadline, both on the clock's own
sleep, so a test's clock decides how long anything waits."""

from __future__ import annotations

import asyncio
import random

from intent_fleet.protocol import Clock, Health, IntentBusNetworkError, ProtocolVersion, RetryPolicy
from intent_fleet.sidecar import detect_features


class Sleeps:
    """A sleep that records what it was asked and returns at once."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)


async def never() -> None:
    await asyncio.Event().wait()


async def test_a_wait_ends_at_the_deadline_of_the_clocks_sleep() -> None:
    sleeps = Sleeps()
    clock = Clock(sleep=sleeps)
    assert not await clock.wait_for(asyncio.Event(), 30.0)
    assert not await clock.within(12.5, never())
    assert sleeps.asked == [30.0, 12.5]


async def test_a_set_event_and_finished_work_need_no_sleep() -> None:
    clock = Clock(sleep=lambda _: never())
    done = asyncio.Event()
    done.set()
    assert await clock.wait_for(done, 30.0)
    assert await clock.within(30.0, asyncio.sleep(0))


class FlakyBus:
    """Unreachable for the first ``failures`` health checks, then a v2.1 bus."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    async def health(self) -> Health:
        if self.failures:
            self.failures -= 1
            raise IntentBusNetworkError("connection refused")
        return Health(protocol=ProtocolVersion.V2_1, features=frozenset({"long_poll_claim"}))


async def test_the_sidecar_waits_for_its_bus_on_the_injected_clock() -> None:
    sleeps = Sleeps()
    features = await detect_features(
        FlakyBus(failures=3),  # type: ignore[arg-type]
        stop=asyncio.Event(),
        retry=RetryPolicy(base_seconds=1.0, cap_seconds=2.0),
        rng=random.Random(7),
        clock=Clock(sleep=sleeps),
    )
    assert features is not None and features.long_poll and features.extend
    assert len(sleeps.asked) == 3
    assert all(0 <= s <= 2.0 for s in sleeps.asked)
