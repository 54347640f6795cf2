"""A write that fails fails only its own request, and memory is put back as it was.

The database is real (a SQLite file); a trigger makes it refuse the rows of one intent, the
way a bad row or a constraint would: the other requests of the same group commit go through,
the refused request's intent is back where it was, and the bus goes on.
"""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from intent_fleet.bus.backend import Ended
from intent_fleet.bus.errors import DurabilityError
from intent_fleet.bus.records import Status

from .conftest import ALICE, BOB, RunningBus
from .test_engine import claim, claimed, counts, publish


def refuse_writes_of(bus: RunningBus, intent_id: str) -> None:
    """From now on the database refuses any update of this intent's row."""
    conn = sqlite3.connect(bus.path)
    conn.execute(
        "CREATE TRIGGER refuse BEFORE UPDATE ON intents WHEN OLD.id = "
        f"'{intent_id}' BEGIN SELECT RAISE(ABORT, 'this row is refused'); END"
    )
    conn.commit()
    conn.close()


def accept_writes_again(bus: RunningBus) -> None:
    conn = sqlite3.connect(bus.path)
    conn.execute("DROP TRIGGER refuse")
    conn.commit()
    conn.close()


async def test_one_refused_row_fails_only_its_request(bus: RunningBus) -> None:
    engine = bus.engine
    bad = await publish(engine, goal="g", priority=900)
    good = await publish(engine, goal="g")
    got_bad = await claimed(engine, goal="g")
    got_good = await claimed(engine, goal="g")
    assert (got_bad.id, got_good.id) == (bad, good)
    await bus.flush()
    refuse_writes_of(bus, bad)
    # Both fulfils share one group commit; only the refused one fails.
    results = await asyncio.gather(
        engine.fulfill(BOB, bad, got_bad.claim_token, result=None),
        engine.fulfill(BOB, good, got_good.claim_token, result=None),
        return_exceptions=True,
    )
    assert isinstance(results[0], DurabilityError)
    assert results[0].cause == "rejected"
    assert results[1] == Ended("default", "g", Status.FULFILLED)
    assert bus.store.failed_writes == {"rejected": 1}
    assert bus.store.health == "ok"  # the database works; one row was refused
    # The good one is fulfilled on disk; the bad one is claimed again, with its lease.
    assert engine.read_terminal(good).status == "fulfilled"  # type: ignore[union-attr]
    back = engine.live(bad)
    assert back is not None
    assert (back.status, back.claim_token, back.claimer) == (
        Status.CLAIMED,
        got_bad.claim_token,
        BOB.key_id,
    )
    assert counts(engine) == (0, 0, 1, 0)
    # Once the database takes it, the same fulfil (the sidecar's retry) succeeds.
    accept_writes_again(bus)
    await engine.fulfill(BOB, bad, got_bad.claim_token, result=None)
    assert engine.read_terminal(bad).status == "fulfilled"  # type: ignore[union-attr]
    assert counts(engine) == (0, 0, 0, 0)


@pytest.mark.parametrize("operation", ["fail", "fail-last", "extend", "release", "cancel"])
async def test_every_refused_transition_is_undone(bus: RunningBus, operation: str) -> None:
    engine = bus.engine
    attempts = 1 if operation == "fail-last" else 3
    intent_id = await publish(engine, goal="g", max_attempts=attempts)
    got = await claimed(engine, goal="g")
    lease = got.lease_until
    await bus.flush()
    refuse_writes_of(bus, intent_id)
    with pytest.raises(DurabilityError):
        if operation.startswith("fail"):
            await engine.fail(BOB, intent_id, got.claim_token, "boom")
        elif operation == "extend":
            await engine.extend(BOB, intent_id, got.claim_token, 600)
        elif operation == "release":
            await engine.release(BOB, intent_id, got.claim_token)
        else:
            await engine.cancel(intent_id)
    back = engine.live(intent_id)
    assert back is not None
    assert (back.status, back.attempts, back.lease_until, back.last_error) == (
        Status.CLAIMED,
        1,
        lease,
        None,
    )
    assert counts(engine) == (0, 0, 1, 0)
    assert engine.status_counts().get(("default", "dead"), 0) == 0
    # Its quota is as before too: still one live intent.
    assert engine.usage(ALICE.key_id).intents == 1


async def test_a_refused_publish_is_not_counted_nor_claimable(bus: RunningBus) -> None:
    engine = bus.engine
    conn = sqlite3.connect(bus.path)
    conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON intents WHEN NEW.goal = 'bad'"
        " BEGIN SELECT RAISE(ABORT, 'no'); END"
    )
    conn.commit()
    conn.close()
    with pytest.raises(DurabilityError):
        await publish(engine, goal="bad")
    await publish(engine, goal="good")
    assert engine.usage(ALICE.key_id).intents == 1
    assert await claim(engine, goal="bad") is None


async def test_a_refused_background_write_is_written_again_later(bus: RunningBus) -> None:
    engine, clock = bus.engine, bus.clock
    intent_id = await publish(engine, goal="g", max_attempts=1)
    await claimed(engine, goal="g")
    await bus.flush()
    refuse_writes_of(bus, intent_id)
    clock.advance(61)  # the lease runs out on the last attempt: dead, written in the background
    engine._tick()
    await bus.flush()
    assert engine.dirty_count() == 1
    assert engine.live(intent_id) is not None  # kept until the disk has it
    accept_writes_again(bus)
    engine._write_dirty()
    await bus.flush()
    assert engine.dirty_count() == 0
    assert engine.live(intent_id) is None
    assert engine.read_terminal(intent_id).status == "dead"  # type: ignore[union-attr]
