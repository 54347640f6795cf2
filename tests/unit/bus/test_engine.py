"""The intent life cycle over a real Store on a temporary SQLite file, with a fake clock.

Timers: the engine schedules its expiry callback on the loop; these tests advance
the fake clock and call that callback (``engine._tick()``) themselves.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from intent_fleet.bus.backend import Ended, Result
from intent_fleet.bus.engine import Engine
from intent_fleet.bus.errors import ApiError
from intent_fleet.bus.lifecycle import ClaimFilter
from intent_fleet.bus.records import Caller, Intent, Status, Visibility
from intent_fleet.bus.validation import MAX_ERROR_CHARS, error_text

from .conftest import ADMIN, ALICE, BOB, RNG_SEED, T0, BusFactory, RunningBus, publish_req

LEASE = 60  # QueueSettings.claim_timeout_seconds


def claim_filter(caller: Caller = BOB, **kw: object) -> ClaimFilter:
    kw.setdefault("namespace", "default")
    kw.setdefault("goal", "g")
    return ClaimFilter(caller=caller.key_id, **kw)  # type: ignore[arg-type]


async def publish(engine: Engine, caller: Caller = ALICE, **fields: object) -> str:
    outcome = await engine.publish(caller, publish_req(**fields), idempotency_key=None, body=b"")
    assert not outcome.replayed
    return outcome.id


async def claim(
    engine: Engine, caller: Caller = BOB, *, lease: int | None = None, **kw: object
) -> Intent | None:
    """Claim one intent; with ``lease``, its lease is then set to that many seconds."""
    got = await engine.claim(claim_filter(caller, **kw), admin=caller.admin, wait=0)
    if got and lease is not None:
        await engine.extend(caller, got[0].id, got[0].claim_token, lease)
    return got[0] if got else None


async def claimed(engine: Engine, caller: Caller = BOB, **kw: object) -> Intent:
    got = await claim(engine, caller, **kw)
    assert got is not None
    return got


def counts(engine: Engine, goal: str = "g") -> tuple[int, int, int, int]:
    """The goal's counts; a goal with nothing live or dead is not kept, and counts zero."""
    found = engine.stats(goal=goal)
    if not found:
        return (0, 0, 0, 0)
    (s,) = found
    return (s.ready, s.delayed, s.claimed, s.dead)


async def refused(awaitable: object) -> ApiError:
    with pytest.raises(ApiError) as info:
        await awaitable  # type: ignore[misc]
    return info.value


# -- publish / claim / fulfill --------------------------------------------
async def test_publish_claim_fulfill(bus: RunningBus) -> None:
    engine = bus.engine
    intent_id = await publish(engine, payload=b'{"job":1}')
    assert counts(engine) == (1, 0, 0, 0)

    got = await claimed(engine)
    assert got.id == intent_id
    assert got.payload == b'{"job":1}'
    assert got.attempts == 1
    assert got.claimer == BOB.key_id
    assert got.lease_until == T0 + LEASE
    assert got.claim_token
    assert counts(engine) == (0, 0, 1, 0)
    assert await claim(engine) is None

    ended = await engine.fulfill(
        BOB, intent_id, got.claim_token, result=Result(b'{"ok":1}', "json")
    )
    assert ended == Ended(got.namespace, got.goal, Status.FULFILLED)
    assert engine.live(intent_id) is None  # terminal: memory forgets, the database answers
    row = engine.read_terminal(intent_id)
    assert row is not None
    assert (row.status, row.result, row.result_type, row.claimer) == (
        "fulfilled",
        b'{"ok":1}',
        "json",
        BOB.key_id,
    )
    assert counts(engine) == (0, 0, 0, 0)


async def test_lease_operations_need_the_right_token_or_holder(bus: RunningBus) -> None:
    engine = bus.engine
    intent_id = await publish(engine)
    got = await claimed(engine)
    for caller, token in ((BOB, "stale"), (ALICE, None), (BOB, "")):
        err = await refused(engine.fulfill(caller, intent_id, token, result=None))
        assert (err.status, err.code) == (404, "not_found")
    assert (await refused(engine.fail(BOB, "no-such-id", None, "x"))).status == 404
    # v1.1 style: no token, accepted from the key that holds the lease.
    await engine.fulfill(BOB, intent_id, None, result=None)
    assert got.status is Status.FULFILLED


async def test_private_intent_is_claimable_only_by_its_publisher(bus: RunningBus) -> None:
    engine = bus.engine
    intent_id = await publish(engine, visibility=Visibility.PRIVATE)
    assert await claim(engine, BOB) is None
    assert await claim(engine, ADMIN) is None
    got = await engine.claim(claim_filter(ADMIN, publisher=ALICE.key_id), admin=True, wait=0)
    assert [i.id for i in got] == [intent_id]


# -- fail, backoff, dead ----------------------------------------------------
async def test_fail_backs_off_then_dies_after_max_attempts(bus: RunningBus) -> None:
    engine, clock = bus.engine, bus.clock
    twin = random.Random(RNG_SEED)  # replays the engine's jitter
    intent_id = await publish(engine, max_attempts=2, backoff_base=3.0)

    first = await claimed(engine)
    clock.advance(7)
    ended = await engine.fail(BOB, intent_id, first.claim_token, "boom")
    assert (ended.namespace, ended.goal, ended.status) == ("default", first.goal, Status.OPEN)
    jitter = first.run_at - (clock.now + 3.0 * 2**1)
    assert 0 <= jitter < 2
    assert jitter == pytest.approx(twin.uniform(0.0, 2.0))
    assert first.last_error == "boom"
    assert first.claim_token is None
    assert counts(engine) == (0, 1, 0, 0)
    assert await claim(engine) is None  # still backing off

    clock.now = first.run_at - 0.01
    engine._tick()
    assert counts(engine) == (0, 1, 0, 0)
    clock.now = first.run_at
    engine._tick()
    assert counts(engine) == (1, 0, 0, 0)

    second = await claimed(engine)
    assert second is first
    assert second.attempts == 2
    ended = await engine.fail(BOB, intent_id, second.claim_token, error_text("x" * 2000))
    assert ended.status is Status.DEAD
    assert counts(engine) == (0, 0, 0, 1)
    assert engine.live(intent_id) is None
    row = engine.read_terminal(intent_id)
    assert row is not None
    assert (row.status, row.attempts) == ("dead", 2)
    assert row.last_error == "x" * MAX_ERROR_CHARS
    assert engine.status_counts()[("default", "dead")] == 1


async def test_backoff_grows_exponentially(bus: RunningBus) -> None:
    engine, clock = bus.engine, bus.clock
    intent_id = await publish(engine, max_attempts=5, backoff_base=10.0)
    delays = []
    for _ in range(3):
        got = await claimed(engine)
        await engine.fail(BOB, intent_id, got.claim_token, "again")
        delays.append(got.run_at - clock.now)
        clock.now = got.run_at
        engine._tick()
    for attempts, delay in enumerate(delays, start=1):
        assert 10.0 * 2**attempts <= delay < 10.0 * 2**attempts + 2


# -- leases -----------------------------------------------------------------
async def test_expired_lease_reopens_the_intent(bus: RunningBus) -> None:
    engine, clock = bus.engine, bus.clock
    intent_id = await publish(engine)
    got = await claimed(engine)
    old_token = got.claim_token

    clock.advance(LEASE - 1)
    engine._tick()
    assert counts(engine) == (0, 0, 1, 0)

    clock.advance(1)
    engine._tick()
    assert counts(engine) == (1, 0, 0, 0)
    assert got.status is Status.OPEN
    assert (got.claim_token, got.lease_until, got.claimer) == (None, None, None)
    err = await refused(engine.fulfill(BOB, intent_id, old_token, result=None))
    assert err.status == 404

    again = await claimed(engine, ALICE)
    assert again.id == intent_id
    assert again.attempts == 2
    assert again.claim_token != old_token


async def test_expired_lease_on_the_last_attempt_kills_the_intent(bus: RunningBus) -> None:
    engine, clock = bus.engine, bus.clock
    intent_id = await publish(engine, max_attempts=1)
    await claimed(engine)
    clock.advance(LEASE + 5)
    engine._tick()
    assert counts(engine) == (0, 0, 0, 1)
    await bus.flush()  # the death is persisted in the background
    assert engine.live(intent_id) is None
    row = engine.read_terminal(intent_id)
    assert row is not None
    assert row.status == "dead"
    assert row.last_error == "Lease expired on the last attempt."


async def test_extend_moves_the_lease(bus: RunningBus) -> None:
    engine, clock = bus.engine, bus.clock
    intent_id = await publish(engine)
    got = await claimed(engine)
    clock.advance(50)
    granted = await engine.extend(BOB, intent_id, got.claim_token, 120)
    assert granted == 120
    assert got.lease_until == clock.now + 120

    clock.advance(LEASE)  # past the original lease
    engine._tick()
    assert got.status is Status.CLAIMED
    clock.advance(60)  # past the extended one
    engine._tick()
    assert got.status is Status.OPEN


async def test_extend_is_clamped_and_needs_the_lease(bus: RunningBus) -> None:
    engine = bus.engine
    intent_id = await publish(engine)
    got = await claimed(engine)
    assert await engine.extend(BOB, intent_id, got.claim_token, 1) == 10
    assert await engine.extend(BOB, intent_id, got.claim_token, 10**6) == 3600
    assert (await refused(engine.extend(BOB, intent_id, "wrong", 30))).status == 404
    assert (await refused(engine.extend(ALICE, intent_id, None, 30))).status == 404


async def test_shortened_lease_is_rescheduled(bus: RunningBus) -> None:
    engine, clock = bus.engine, bus.clock
    intent_id = await publish(engine)
    got = await claimed(engine)
    await engine.extend(BOB, intent_id, got.claim_token, 10)
    # The expiry timer must fire at the new, earlier lease end, not the original one.
    assert engine._timer_at == clock.now + 10


async def test_delayed_publish_waits_for_its_time(bus: RunningBus) -> None:
    engine, clock = bus.engine, bus.clock
    await publish(engine, delay=30.0)
    assert counts(engine) == (0, 1, 0, 0)
    assert engine._timer_at == T0 + 30
    assert await claim(engine) is None
    clock.advance(30)
    engine._tick()
    assert counts(engine) == (1, 0, 0, 0)
    assert await claim(engine) is not None


# -- idempotency ------------------------------------------------------------
async def test_idempotent_publish(bus: RunningBus) -> None:
    engine = bus.engine
    req = publish_req()
    body = b'{"goal":"g","payload":{"n":1}}'
    first = await engine.publish(ALICE, req, idempotency_key="key-1", body=body)
    again = await engine.publish(ALICE, req, idempotency_key="key-1", body=body)
    assert (again.id, again.replayed) == (first.id, True)
    assert counts(engine) == (1, 0, 0, 0)

    err = await refused(engine.publish(ALICE, req, idempotency_key="key-1", body=body + b" "))
    assert (err.status, err.code) == (409, "idempotency_conflict")
    # Keys are per publisher: Bob's "key-1" is a different request.
    other = await engine.publish(BOB, req, idempotency_key="key-1", body=body)
    assert other.id != first.id
    assert counts(engine) == (2, 0, 0, 0)


async def test_concurrent_idempotent_publishes_share_one_intent(bus: RunningBus) -> None:
    engine = bus.engine
    req, body = publish_req(), b"{}"
    a, b = await asyncio.gather(
        engine.publish(ALICE, req, idempotency_key="k", body=body),
        engine.publish(ALICE, req, idempotency_key="k", body=body),
    )
    assert a.id == b.id
    assert sorted([a.replayed, b.replayed]) == [False, True]
    assert counts(engine) == (1, 0, 0, 0)

    first = asyncio.ensure_future(engine.publish(ALICE, req, idempotency_key="k2", body=body))
    await asyncio.sleep(0)  # let it register as pending
    err = await refused(engine.publish(ALICE, req, idempotency_key="k2", body=b"[]"))
    assert err.code == "idempotency_conflict"
    await first


# -- admin: cancel, retry, purge ---------------------------------------------
async def test_cancel(bus: RunningBus) -> None:
    engine = bus.engine
    open_id = await publish(engine)
    claimed_id = await publish(engine, goal="h")
    got = await claimed(engine, goal="h")
    await engine.cancel(open_id)
    await engine.cancel(claimed_id)
    assert counts(engine) == (0, 0, 0, 0)
    assert counts(engine, "h") == (0, 0, 0, 0)
    assert await claim(engine) is None
    for intent_id in (open_id, claimed_id):
        row = engine.read_terminal(intent_id)
        assert row is not None
        assert row.status == "cancelled"
    err = await refused(engine.fulfill(BOB, claimed_id, got.claim_token, result=None))
    assert err.status == 404
    assert (await refused(engine.cancel(open_id))).status == 409
    assert (await refused(engine.cancel("nope"))).status == 404
    assert engine.status_counts()[("default", "cancelled")] == 2


async def test_retry_revives_dead_and_cancelled(bus: RunningBus) -> None:
    engine, clock = bus.engine, bus.clock
    dead_id = await publish(engine, max_attempts=1)
    got = await claimed(engine)
    await engine.fail(BOB, dead_id, got.claim_token, "no")
    cancelled_id = await publish(engine)
    await engine.cancel(cancelled_id)
    assert counts(engine) == (0, 0, 0, 1)

    clock.advance(100)
    await engine.retry(dead_id)
    await engine.retry(cancelled_id)
    assert counts(engine) == (2, 0, 0, 0)
    revived = engine.live(dead_id)
    assert revived is not None
    assert (revived.status, revived.attempts, revived.run_at) == (Status.OPEN, 0, clock.now)
    assert {(await claimed(engine)).id, (await claimed(engine)).id} == {dead_id, cancelled_id}
    # A count that falls to zero is not kept (memory follows what is live).
    assert engine.status_counts().get(("default", "dead"), 0) == 0

    assert (await refused(engine.retry(dead_id))).status == 409  # live again
    assert (await refused(engine.retry("nope"))).status == 404


async def test_retry_refuses_fulfilled(bus: RunningBus) -> None:
    engine = bus.engine
    intent_id = await publish(engine)
    got = await claimed(engine)
    await engine.fulfill(BOB, intent_id, got.claim_token, result=None)
    err = await refused(engine.retry(intent_id))
    assert (err.status, err.code) == (409, "conflict")


async def test_purge_one_namespace_then_all(bus: RunningBus) -> None:
    engine = bus.engine
    await publish(engine, namespace="a")
    a_dead = await publish(engine, namespace="a", max_attempts=1, priority=999)
    got = await claimed(engine, namespace="a")
    await engine.fail(BOB, a_dead, got.claim_token, "x")
    a_claimed = await publish(engine, namespace="a")
    await claimed(engine, namespace="a")
    await publish(engine, namespace="b")
    await publish(engine, namespace="b", delay=50.0)

    assert await engine.purge("a") == 3  # open, claimed and the dead row
    assert engine.live(a_claimed) is None
    # Nothing live or dead is left in "a": the goal is not kept at all.
    assert engine.stats(namespace="a") == []
    (b,) = engine.stats(namespace="b")
    assert (b.ready, b.delayed) == (1, 1)
    assert await claim(engine, namespace="a") is None

    assert await engine.purge(None) == 2
    assert all((s.ready, s.delayed, s.claimed, s.dead) == (0, 0, 0, 0) for s in engine.stats())
    assert await claim(engine, namespace="b") is None


# -- stats --------------------------------------------------------------------
async def test_stats_counts_each_place_and_oldest_age(bus: RunningBus) -> None:
    engine, clock = bus.engine, bus.clock
    oldest = await publish(engine, priority=1)  # ready, low priority: stays ready
    clock.advance(10)
    await publish(engine, priority=1)  # ready
    await publish(engine, delay=100.0)  # delayed
    await publish(engine, priority=900)  # claimed below
    dies = await publish(engine, priority=950, max_attempts=1)
    got = await claimed(engine)
    await engine.fail(BOB, dies, got.claim_token, "x")
    assert (await claimed(engine)).priority == 900
    await publish(engine, goal="other")
    clock.advance(5)

    (s,) = engine.stats(namespace="default", goal="g")
    assert (s.ready, s.delayed, s.claimed, s.dead) == (2, 1, 1, 1)
    assert s.oldest_ready_age_seconds == pytest.approx(15.0)
    assert [x.goal for x in engine.stats()] == ["g", "other"]
    assert engine.stats(namespace="nope") == []
    assert engine.status_counts()[("default", "open")] == 4

    got = await claimed(engine)  # the oldest of the two ready ones
    assert got.id == oldest
    (s,) = engine.stats(goal="g")
    assert s.oldest_ready_age_seconds == pytest.approx(5.0)


# -- long-poll hand-off --------------------------------------------------------
async def test_waiting_claim_gets_a_new_intent(bus: RunningBus) -> None:
    engine = bus.engine
    waiter = asyncio.ensure_future(engine.claim(claim_filter(), admin=False, wait=30))
    while engine.waiting_claims() == 0:
        await asyncio.sleep(0)  # a yield, not a wait
    intent_id = await publish(engine)
    got = await waiter
    assert [i.id for i in got] == [intent_id]
    assert engine.long_poll_handoffs == 1
    assert engine.waiting_claims() == 0


async def test_stop_releases_waiting_claims(bus: RunningBus) -> None:
    engine = bus.engine
    waiter = asyncio.ensure_future(engine.claim(claim_filter(), admin=False, wait=30))
    while engine.waiting_claims() == 0:
        await asyncio.sleep(0)
    engine.release_waiters()
    assert await waiter == []


# -- reload ----------------------------------------------------------------------
async def test_reload_rebuilds_the_same_live_state(bus_factory: BusFactory) -> None:
    clock = bus_factory.clock
    first = await bus_factory.open()
    engine = first.engine
    stays_open = await publish(engine, payload=b'{"keep":1}')
    still_leased = await publish(engine, priority=900)
    long_lease = await claimed(engine, lease=600)
    assert long_lease.id == still_leased
    lapses = await publish(engine, priority=800)
    short_lease = await claimed(engine, lease=10)
    assert short_lease.id == lapses
    delayed = await publish(engine, delay=100.0)
    dead = await publish(engine, priority=999, max_attempts=1)
    got = await claimed(engine)
    await engine.fail(BOB, dead, got.claim_token, "x")
    token = long_lease.claim_token
    await first.close()

    clock.advance(30)
    second = await bus_factory.open()
    engine = second.engine
    # A lease that ran out while the bus was down expires at the first timer tick.
    assert engine._timer_at == T0 + 10
    engine._tick()
    assert counts(engine) == (2, 1, 1, 1)
    assert engine.live(dead) is None
    reopened = engine.live(lapses)
    assert reopened is not None
    assert (reopened.status, reopened.claim_token, reopened.attempts) == (Status.OPEN, None, 1)
    leased = engine.live(still_leased)
    assert leased is not None
    assert (leased.status, leased.lease_until) == (Status.CLAIMED, T0 + 600)
    assert engine.live(delayed) is not None

    # Sequence numbers continue after the stored ones, and claim order survives.
    newer = await publish(engine)
    assert engine.live(newer).seq == second.state.max_seq + 1  # type: ignore[union-attr]
    assert second.state.max_seq == 5
    assert engine.live(stays_open).payload == b'{"keep":1}'  # type: ignore[union-attr]
    assert [(await claimed(engine)).id for _ in range(3)] == [lapses, stays_open, newer]
    # The lease granted before the restart is still honoured.
    await engine.fulfill(BOB, still_leased, token, result=None)
    assert counts(engine) == (0, 1, 3, 1)
    # Timers were rebuilt too: the delayed intent comes due, the new leases run out.
    clock.advance(100)
    engine._tick()
    assert counts(engine) == (4, 0, 0, 1)


async def test_reload_kills_an_intent_whose_last_lease_lapsed(bus_factory: BusFactory) -> None:
    clock = bus_factory.clock
    first = await bus_factory.open()
    intent_id = await publish(first.engine, max_attempts=1)
    await claimed(first.engine)
    await first.close()

    clock.advance(LEASE + 1)
    second = await bus_factory.open()
    second.engine._tick()
    await second.flush()
    assert counts(second.engine) == (0, 0, 0, 1)
    assert await claim(second.engine) is None
    row = second.engine.read_terminal(intent_id)
    assert row is not None
    assert (row.status, row.attempts) == ("dead", 1)


async def test_release_hands_the_intent_back_with_its_attempt(bus: RunningBus) -> None:
    engine = bus.engine
    intent_id = await publish(engine)
    got = await claimed(engine)
    await engine.release(BOB, intent_id, got.claim_token)
    assert counts(engine) == (1, 0, 0, 0)
    assert (got.status, got.attempts, got.claim_token) == (Status.OPEN, 0, None)
    assert (await claimed(engine, ALICE)).attempts == 1


async def test_cleanup_removes_terminal_intents_past_retention(bus: RunningBus) -> None:
    engine, clock = bus.engine, bus.clock
    done = await publish(engine)
    got = await claimed(engine)
    await engine.fulfill(BOB, done, got.claim_token, result=None)
    dies = await publish(engine, max_attempts=1)
    got = await claimed(engine)
    await engine.fail(BOB, dies, got.claim_token, "x")
    keep = await publish(engine)

    assert await engine.cleanup() == {
        "fulfilled_deleted": 0,
        "dead_deleted": 0,
        "cancelled_deleted": 0,
    }
    clock.advance(7 * 24 * 3600 + 1)  # StorageSettings.retention_seconds
    assert await engine.cleanup() == {
        "fulfilled_deleted": 1,
        "dead_deleted": 1,
        "cancelled_deleted": 0,
    }
    assert engine.read_terminal(done) is None
    assert engine.read_terminal(dies) is None
    assert counts(engine) == (1, 0, 0, 0)
    assert engine.live(keep) is not None


async def test_batch_claim_takes_up_to_the_limit_in_claim_order(bus: RunningBus) -> None:
    engine = bus.engine
    ids = [await publish(engine, visibility=Visibility.PUBLIC, priority=p) for p in (1, 5, 3)]
    got = await engine.claim(claim_filter(BOB), admin=False, wait=0, limit=2)
    assert [i.id for i in got] == [ids[1], ids[2]]
    assert all(i.status is Status.CLAIMED and i.claim_token for i in got)
    rest = await engine.claim(claim_filter(BOB), admin=False, wait=0, limit=10)
    assert [i.id for i in rest] == [ids[0]]
    assert await engine.claim(claim_filter(BOB), admin=False, wait=0, limit=10) == []
