"""The worker on virtual time: leases kept alive and lost, drain deadlines, a busy handler,
report retries and claim back-off, each in milliseconds of real time."""

from __future__ import annotations

import asyncio
import itertools
import time

from intent_fleet.protocol import IntentBusLeaseLostError, IntentBusNetworkError
from intent_fleet.sidecar import Busy, Features, Fulfilled
from tests.unit.sidecar.conftest import Rig


async def _run_until(rig: Rig, worker: object, done: object, *, limit: float = 3600) -> None:
    """Run the worker until ``done()`` holds, then drain it and wait for it to end."""
    assert callable(done)
    run = asyncio.create_task(worker.run())  # type: ignore[attr-defined]
    try:
        await rig.clock.until(lambda: done() or run.done(), limit=limit)
        assert not run.done() or run.exception() is None
    finally:
        worker.drain()  # type: ignore[attr-defined]
        await run


async def test_a_long_delivery_keeps_its_lease_alive_and_is_fulfilled_once(rig: Rig) -> None:
    started = time.monotonic()
    rig.app.seconds = 100.0
    intent = rig.bus.publish({"work": "long"}, lease=30)
    worker = rig.worker()
    await _run_until(rig, worker, lambda: rig.bus.named("fulfill"))
    assert [args[0] for args in rig.bus.named("fulfill")] == [intent]
    extends = rig.bus.named("extend")
    # Renewed when a third of the 30 s lease is left: at 20 s, 40 s, 60 s, 80 s.
    assert [round(at) for _, _, at in extends] == [20, 40, 60, 80]
    assert {token for _, token, _ in extends} == {"t0"}
    assert rig.clock.now >= 100
    assert time.monotonic() - started < 5  # a hundred seconds of work, run in no time


async def test_a_lost_lease_drops_the_outcome(rig: Rig) -> None:
    rig.app.seconds = 60.0
    rig.bus.publish(lease=30)
    rig.bus.errors["extend"] = [IntentBusLeaseLostError("gone", status=404)]
    worker = rig.worker()
    await _run_until(rig, worker, lambda: rig.app.deliveries and rig.clock.now > 61)
    assert rig.bus.named("fulfill") == [] and rig.bus.named("fail") == []
    assert rig.metrics.value("intent_sidecar_leases_lost_total") == 1


async def test_a_failed_extend_is_retried_while_the_lease_lasts(rig: Rig) -> None:
    rig.app.seconds = 25.0
    rig.bus.publish(lease=30)
    rig.bus.errors["extend"] = [IntentBusNetworkError("blip"), IntentBusNetworkError("blip")]
    worker = rig.worker()
    await _run_until(rig, worker, lambda: rig.bus.named("fulfill"))
    extends = [at for _, _, at in rig.bus.named("extend")]
    assert len(extends) == 3 and extends[0] == 20  # two failures, then granted
    assert all(later > earlier for earlier, later in itertools.pairwise(extends))
    assert rig.metrics.value("intent_sidecar_leases_lost_total") == 0


async def test_the_drain_deadline_hands_unfinished_work_back(rig: Rig) -> None:
    rig.app.seconds = 1000.0
    intent = rig.bus.publish(lease=30)
    worker = rig.worker(drain_timeout_seconds=5.0)
    run = asyncio.create_task(worker.run())
    await rig.clock.until(lambda: bool(rig.app.deliveries))
    drained_at = rig.clock.now
    worker.drain()
    await run
    assert rig.bus.named("release") == [intent]
    assert rig.bus.named("fulfill") == []
    assert 5.0 <= rig.clock.now - drained_at < 6.0


async def test_a_busy_handler_gets_the_same_intent_again_without_an_attempt(rig: Rig) -> None:
    intent = rig.bus.publish(lease=60)
    rig.app.seconds = 0.1
    rig.app.script[intent] = [Busy(retry_after=2.0), Busy(retry_after=3.0)]
    worker = rig.worker()
    await _run_until(rig, worker, lambda: rig.bus.named("fulfill"))
    times = [at for delivered, at in rig.app.deliveries if delivered == intent]
    assert len(times) == 3
    assert times[1] - times[0] >= 2.0 and times[2] - times[1] >= 3.0
    assert rig.bus.named("fail") == []
    assert rig.metrics.value("intent_sidecar_handler_busy_total") == 2


async def test_a_report_is_retried_on_network_errors(rig: Rig) -> None:
    intent = rig.bus.publish(lease=60)
    rig.bus.errors["fulfill"] = [IntentBusNetworkError("down"), IntentBusNetworkError("down")]
    worker = rig.worker()
    await _run_until(rig, worker, lambda: len(rig.bus.named("fulfill")) == 3)
    assert [args[0] for args in rig.bus.named("fulfill")] == [intent] * 3
    assert rig.metrics.value("intent_sidecar_intents_fulfilled_total") == 1
    assert rig.metrics.value("intent_sidecar_leases_lost_total") == 0


async def test_empty_polls_back_off_to_the_cap_and_never_spin(rig: Rig) -> None:
    # One lane (concurrency 1), so every gap is one lane's back-off.
    features = Features(extend=True, release=True, long_poll=False)
    worker = rig.worker(features=features, concurrency=1)
    await _run_until(rig, worker, lambda: rig.clock.now >= 120)
    polls = rig.bus.named("claim")
    gaps = [b - a for a, b in itertools.pairwise(polls)]
    # Equal jitter from 0.25 s doubling to 5 s: never under half the ceiling, never over 5 s.
    assert min(gaps) >= 0.125
    assert max(gaps) <= 5.0
    assert max(gaps[-5:]) > 2.5  # at the cap by now
    # About 0.2+0.4+0.8+1.5+3 s to reach the cap, then one poll per 2.5-5 s.
    assert 25 <= len(polls) <= 55


async def test_a_server_retry_after_is_a_floor_for_the_next_poll(rig: Rig) -> None:
    rig.bus.empty_retry_after = 4.0
    worker = rig.worker(concurrency=1)
    await _run_until(rig, worker, lambda: len(rig.bus.named("claim")) >= 4)
    polls = rig.bus.named("claim")
    assert all(b - a >= 4.0 for a, b in itertools.pairwise(polls))


async def test_a_fulfilled_result_reaches_the_bus(rig: Rig) -> None:
    intent = rig.bus.publish(lease=60)
    rig.app.script[intent] = [Fulfilled({"answer": 42}, "json")]
    worker = rig.worker()
    await _run_until(rig, worker, lambda: rig.bus.named("fulfill"))
    assert rig.bus.named("fulfill") == [(intent, {"answer": 42})]
