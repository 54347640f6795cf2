"""Shared pieces of the bus unit tests: a fake clock, intent builders, a running engine.

No sockets and no sleeping: time is a :class:`FakeClock` the test advances, and
the engine's timer callback is driven by hand where a test needs it.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from intent_fleet.bus.backend import PublishRequest
from intent_fleet.bus.engine import Engine
from intent_fleet.bus.records import Caller, Intent, Status, Visibility
from intent_fleet.bus.settings import AuthSettings, BusSettings
from intent_fleet.bus.store import LoadedState, Store

T0 = 1_700_000_000.0

#: An admin secret long enough for the settings check; the engine never reads it.
UNIT_ADMIN_SECRET = "unit-tests-admin-secret-0123456789"


class FakeClock:
    """A clock that moves only when the test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_intent(seq: int, **fields: Any) -> Intent:
    """An open intent with sensible defaults; any field can be overridden."""
    values: dict[str, Any] = {
        "id": f"i{seq}",
        "namespace": "default",
        "goal": "g",
        "publisher": "p1",
        "visibility": Visibility.PUBLIC,
        "payload": b"{}",
        "priority": 100,
        "max_attempts": 3,
        "backoff_base": 5.0,
        "target_worker": None,
        "required_capability": None,
        "status": Status.OPEN,
        "attempts": 0,
        "run_at": T0,
        "created_at": T0,
        "updated_at": T0,
        "seq": seq,
    }
    values.update(fields)
    return Intent(**values)


def publish_req(**fields: Any) -> PublishRequest:
    """A validated publish request with the protocol's defaults."""
    values: dict[str, Any] = {
        "namespace": "default",
        "goal": "g",
        "payload": b'{"n":1}',
        "visibility": Visibility.PUBLIC,
        "priority": 100,
        "delay": 0.0,
        "max_attempts": 3,
        "backoff_base": 5.0,
        "target_worker": None,
        "required_capability": None,
    }
    values.update(fields)
    return PublishRequest(**values)


ALICE = Caller(key_id="k_alice")
BOB = Caller(key_id="k_bob")
ADMIN = Caller(key_id="admin", admin=True)

#: Seed of the engine's jitter generator; tests replay it to predict backoff.
RNG_SEED = 1234


@dataclass
class RunningBus:
    """A Store + Engine pair on one SQLite file, started on the test's loop."""

    path: Path
    clock: FakeClock
    store: Store
    engine: Engine
    state: LoadedState
    closed: bool = False

    async def flush(self) -> None:
        """Wait until everything queued so far (including background writes) is on disk."""
        await self.store.submit([])

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.engine.stop()
            await self.store.close()


@dataclass
class BusFactory:
    """Opens buses on ``path``; the fixture closes whatever a test left open."""

    path: Path
    clock: FakeClock
    settings: BusSettings = field(
        default_factory=lambda: BusSettings(auth=AuthSettings(admin_secret=UNIT_ADMIN_SECRET))
    )
    opened: list[RunningBus] = field(default_factory=list)

    async def open(self) -> RunningBus:
        store = Store(self.path)
        state = store.open(now=self.clock())
        engine = Engine(
            store=store, settings=self.settings, clock=self.clock, rng=random.Random(RNG_SEED)
        )
        engine.load(state)
        loop = asyncio.get_running_loop()
        store.start(loop)
        engine.start(loop)
        bus = RunningBus(path=self.path, clock=self.clock, store=store, engine=engine, state=state)
        self.opened.append(bus)
        return bus


@pytest.fixture
async def bus_factory(tmp_path: Path, clock: FakeClock) -> AsyncIterator[BusFactory]:
    factory = BusFactory(path=tmp_path / "bus.db", clock=clock)
    yield factory
    for bus in factory.opened:
        await bus.close()
    writers = [t for t in threading.enumerate() if t.name == "bus-writer" and t.is_alive()]
    assert not writers, "a store writer thread is still running"


@pytest.fixture
async def bus(bus_factory: BusFactory) -> RunningBus:
    return await bus_factory.open()
