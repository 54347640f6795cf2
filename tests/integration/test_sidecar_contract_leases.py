"""Leases: the sidecar keeps a slow intent's lease alive, and drops an outcome it lost.

The bus runs with ``--claim-timeout 3`` so a lease that is not extended runs
out within the test; the bus clamps every extend to at least 10 s.
"""

from __future__ import annotations

import time

from tests.integration.conftest import StartBus
from tests.support.rawbus import RawBus
from tests.support.sidecar_rig import (
    Procs,
    bus_status,
    log_lines,
    metric_value,
    until,
    wait_status,
)

GOAL = "slow"


async def test_a_handler_slower_than_the_lease_is_fulfilled_exactly_once(
    start: StartBus, procs: Procs
) -> None:
    bus = start("--claim-timeout", "3")
    handler = procs.handler()
    sidecar = procs.sidecar(
        bus_url=bus.url,
        api_key=bus.admin_secret,
        goal=GOAL,
        app_port=handler.port,
        extra_args=["--handler-timeout", "30"],
    )
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        intent_id = await raw.publish(
            bus.admin_secret,
            {"goal": GOAL, "payload": {"sleep": 12, "status": 200, "json": "slow but done"}},
        )

        async def delivered() -> bool:
            return bool(handler.deliveries(intent_id))

        await until(delivered, timeout=10, what="the delivery")
        claimed_at = time.time()

        # Well past the 3 s lease the intent is still held, its lease pushed ahead.
        async def past_first_lease() -> bool:
            return time.time() > claimed_at + 5

        await until(past_first_lease, timeout=6, every=0.25)
        st = await bus_status(raw, intent_id)
        assert st["status"] == "claimed", st
        assert st["claim_attempts"] == 1
        assert st["claim_expires_at"] > time.time(), st

        doc = await wait_status(raw, intent_id, timeout=20)
        assert doc["status"] == "fulfilled", doc
        assert doc["result"] == "slow but done"
        assert doc["claim_attempts"] == 1
    assert len(handler.deliveries(intent_id)) == 1
    assert sidecar.metric("intent_sidecar_leases_lost_total") == 0
    assert sidecar.metric("intent_sidecar_bus_request_duration_seconds_count") > 0
    # At least two extends (at ~2 s and ~11 s), none refused.
    assert (
        metric_value(sidecar, 'intent_sidecar_bus_request_duration_seconds_count{op="extend"}') >= 2
    )
    assert "lease extend failed" not in sidecar.logs()
    assert "lease lost" not in sidecar.logs()


async def test_a_lost_lease_drops_the_outcome_and_the_sidecar_goes_on(
    start: StartBus, procs: Procs
) -> None:
    bus = start("--claim-timeout", "3")
    handler = procs.handler()
    sidecar = procs.sidecar(
        bus_url=bus.url,
        api_key=bus.admin_secret,
        goal=GOAL,
        app_port=handler.port,
        extra_args=["--handler-timeout", "30"],
    )
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        doomed = await raw.publish(
            bus.admin_secret, {"goal": GOAL, "payload": {"sleep": 5, "status": 200, "json": 1}}
        )

        async def delivered() -> bool:
            return bool(handler.deliveries(doomed))

        await until(delivered, timeout=10, what="the delivery")
        # An operator cancels it while the handler works: the next extend gets 404.
        r = await raw.admin("POST", f"/admin/intents/{doomed}/cancel")
        assert r.status == 200, r

        async def lost() -> bool:
            return sidecar.metric("intent_sidecar_leases_lost_total") >= 1

        await until(lost, timeout=10, what="the sidecar noticing the lost lease")

        # The handler's late answer changes nothing on the bus.
        async def handler_done() -> bool:
            return sidecar.metric("intent_sidecar_in_flight") == 0

        await until(handler_done, timeout=10, what="the handler finishing")
        st = await bus_status(raw, doomed)
        assert st["status"] == "cancelled", st
        assert sidecar.metric("intent_sidecar_intents_fulfilled_total") == 0
        assert any("lease lost" in str(doc.get("msg", "")) for doc in log_lines(sidecar))

        # And the sidecar keeps working.
        after = await raw.publish(
            bus.admin_secret, {"goal": GOAL, "payload": {"status": 200, "json": "next"}}
        )
        doc = await wait_status(raw, after)
        assert doc["status"] == "fulfilled", doc
        assert doc["result"] == "next"
    assert sidecar.proc.poll() is None
