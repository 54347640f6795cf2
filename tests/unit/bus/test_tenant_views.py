"""A tenant sees what it could claim, and what its workers hold; never another tenant's goals."""

from __future__ import annotations

from intent_fleet.bus.engine import Engine
from intent_fleet.bus.records import Caller, Visibility

from .conftest import ALICE, BOB, RunningBus, publish_req
from .test_engine import claimed, publish

CAROL = Caller(key_id="k_carol")


def view(engine: Engine, viewer: Caller | None) -> dict[tuple[str, str], tuple[int, ...]]:
    key = None if viewer is None else viewer.key_id
    return {
        (s.namespace, s.goal): (s.ready, s.delayed, s.claimed, s.dead)
        for s in engine.stats(viewer=key)
    }


async def test_each_tenant_sees_public_work_and_its_own_private_work(bus: RunningBus) -> None:
    engine = bus.engine
    private = Visibility.PRIVATE
    await publish(engine, ALICE, goal="shared")  # public
    await publish(engine, ALICE, goal="shared", visibility=private)
    await publish(engine, ALICE, goal="alice-only", visibility=private)
    await publish(engine, ALICE, goal="alice-only", visibility=private, delay=60.0)
    await publish(engine, BOB, goal="bob-only", visibility=private)
    await publish(engine, BOB, goal="shared", visibility=private)

    assert view(engine, None) == {
        ("default", "alice-only"): (1, 1, 0, 0),
        ("default", "bob-only"): (1, 0, 0, 0),
        ("default", "shared"): (3, 0, 0, 0),
    }
    assert view(engine, ALICE) == {
        ("default", "alice-only"): (1, 1, 0, 0),
        ("default", "shared"): (2, 0, 0, 0),
    }
    assert view(engine, BOB) == {
        ("default", "bob-only"): (1, 0, 0, 0),
        ("default", "shared"): (2, 0, 0, 0),
    }
    # A stranger sees the public intent only, and none of the private goals' names.
    assert view(engine, CAROL) == {("default", "shared"): (1, 0, 0, 0)}
    assert engine.status_counts(viewer=CAROL.key_id) == {("default", "open"): 1}


async def test_in_flight_is_what_the_viewers_own_workers_hold(bus: RunningBus) -> None:
    engine = bus.engine
    for _ in range(3):
        await publish(engine, ALICE, goal="shared")
    await claimed(engine, BOB, goal="shared")
    await claimed(engine, CAROL, goal="shared")
    await claimed(engine, CAROL, goal="shared")
    assert view(engine, BOB)[("default", "shared")] == (0, 0, 1, 0)
    assert view(engine, CAROL)[("default", "shared")] == (0, 0, 2, 0)
    # Alice published them but holds none, and none is left to claim: nothing for her.
    assert ("default", "shared") not in view(engine, ALICE)
    assert view(engine, None)[("default", "shared")] == (0, 0, 3, 0)


async def test_dead_letters_count_only_where_the_viewer_could_have_claimed(
    bus: RunningBus,
) -> None:
    engine = bus.engine
    mine = await publish(engine, ALICE, goal="g", visibility=Visibility.PRIVATE, max_attempts=1)
    got = await claimed(engine, ALICE, goal="g")
    await engine.fail(ALICE, mine, got.claim_token, "no")
    assert view(engine, ALICE)[("default", "g")] == (0, 0, 0, 1)
    assert ("default", "g") not in view(engine, BOB)
    assert view(engine, None)[("default", "g")] == (0, 0, 0, 1)


async def test_oldest_ready_age_is_of_what_the_viewer_could_claim(bus: RunningBus) -> None:
    engine, clock = bus.engine, bus.clock
    await publish(engine, BOB, goal="g", visibility=Visibility.PRIVATE)
    clock.advance(30)
    await publish(engine, ALICE, goal="g")  # public, 30 s younger
    clock.advance(10)
    (alice,) = engine.stats(viewer=ALICE.key_id)
    (bob,) = engine.stats(viewer=BOB.key_id)
    assert alice.oldest_ready_age_seconds == 10
    assert bob.oldest_ready_age_seconds == 40


async def test_a_goal_with_nothing_left_leaves_memory(bus: RunningBus) -> None:
    engine = bus.engine
    for n in range(50):
        intent_id = await publish(engine, ALICE, goal=f"once-{n}")
        got = await claimed(engine, BOB, goal=f"once-{n}")
        await engine.fulfill(BOB, intent_id, got.claim_token, result=None)
    assert len(engine._index) == 50  # kept a moment, in case work comes back at once
    engine.forget_empty_goals()
    assert len(engine._index) == 0
    assert engine.stats() == []
    # Publishing again brings the goal back with the right counts.
    await engine.publish(ALICE, publish_req(goal="once-0"), idempotency_key=None, body=b"")
    assert view(engine, None) == {("default", "once-0"): (1, 0, 0, 0)}
