"""Sidecar life cycle, crashes: a sidecar SIGKILLed mid-job, a bus restarted under a sidecar.

Real processes throughout: ``intent-fleet bus``, ``intent-fleet sidecar`` and the
counting handler (tests/support/counting_handler.py), all stopped by PID.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.lifecycle import BusHttp, LifecycleStack, in_flight, wait_until
from tests.support.postgres import NewDatabase

GOAL = "lifecycle"


@pytest.fixture
def stack(tmp_path: Path, new_database: NewDatabase) -> Iterator[LifecycleStack]:
    with LifecycleStack(tmp_path, new_database) as s:
        yield s


def test_sigkill_mid_job_the_intent_returns_after_its_lease_and_another_sidecar_fulfills_it(
    stack: LifecycleStack,
) -> None:
    lease = 3
    bus = stack.bus("--claim-timeout", str(lease))
    http = BusHttp(bus.url, admin_secret=bus.admin_secret)
    handler = stack.handler()
    a = stack.sidecar(bus, goal=GOAL, app_port=handler.port, extra_args=["--concurrency", "1"])
    a.wait_ready()
    # The first extend comes when a third of the lease is left (leasing.RENEW_FRACTION),
    # 2 s after the claim, and the bus clamps it to >= 10 s: A dies long before that.
    intent_id = http.publish(GOAL, {"sleep": 1.5})
    claimed = wait_until(
        lambda: (doc := http.intent(intent_id))["status"] == "claimed" and doc,
        timeout=10,
        what="sidecar A to claim the intent",
        interval=0.02,
    )
    assert claimed["claim_attempts"] == 1
    wait_until(
        lambda: in_flight(a) == 1,
        timeout=5,
        what="sidecar A to start the job",
        interval=0.02,
    )
    wait_until(
        lambda: handler.arrived(intent_id),
        timeout=5,
        what="the delivery to reach the handler",
        interval=0.02,
    )
    a.kill()
    assert a.proc.returncode == -9
    lease_end = claimed["claim_expires_at"]
    # A never extended the lease: it still ends the bus's 3 s after the claim.
    after = http.intent(intent_id)
    assert (after["status"], after["claim_expires_at"]) == ("claimed", lease_end), after
    assert lease_end - time.time() <= lease, after

    b = stack.sidecar(bus, goal=GOAL, app_port=handler.port)
    doc = wait_until(
        lambda: (d := http.intent(intent_id))["status"] == "fulfilled" and d,
        timeout=lease + 12,
        what="sidecar B to fulfil the intent",
        detail=lambda: f"{http.intent(intent_id)}\nB:\n{b.logs()[-3000:]}",
    )
    assert doc["claim_attempts"] == 2, doc

    def deliveries() -> list[dict[str, Any]]:
        return [r for r in handler.lines() if r["intent_id"] == intent_id]

    lines = wait_until(
        lambda: got if len(got := deliveries()) == 2 else None,
        timeout=5,
        what="both deliveries in the record",
        detail=lambda: str(handler.lines()),
    )
    first, second = sorted(lines, key=lambda r: r["t_start"])
    assert (first["attempt"], second["attempt"]) == (1, 2)
    # B got it only once the lease A held had run out, not before.
    assert second["t_start"] >= lease_end - 0.05, (lease_end, second)
    assert b.stop(timeout=60) == 0, b.logs()[-3000:]


def _run_through_a_bus_restart(stack: LifecycleStack, *, crash: bool) -> None:
    total = 200
    # Short leases, so that after a crash a claim the sidecar never heard of comes
    # back in seconds rather than a minute; a graceful stop loses no claim, so there
    # the lease only has to outlast the outage (reports are retried while it lasts).
    bus = stack.bus("--claim-timeout", "5" if crash else "10")
    http = BusHttp(bus.url, admin_secret=bus.admin_secret)
    ids = [http.publish(GOAL, {"sleep": 0.01, "n": n}) for n in range(total)]
    handler = stack.handler()
    sidecar = stack.sidecar(bus, goal=GOAL, app_port=handler.port)
    wait_until(
        lambda: len(handler.lines()) >= 20,
        timeout=15,
        what="some intents to be handled",
        interval=0.01,
    )
    errors_before = sidecar.metric("intent_sidecar_bus_errors_total")
    if crash:
        bus.kill()
    else:
        assert bus.stop() == 0, bus.logs()[-3000:]
    done_before = {r["intent_id"] for r in handler.lines()}
    assert len(done_before) < total, "the run ended before the bus went down; nothing tested"

    # The bus stays down until the sidecar has failed to reach it a few times: it must keep
    # trying, not give up.
    wait_until(
        lambda: sidecar.metric("intent_sidecar_bus_errors_total") >= errors_before + 3,
        timeout=15,
        what="the sidecar to meet the outage",
        detail=lambda: sidecar.logs()[-3000:],
    )
    assert sidecar.alive(), sidecar.logs()[-3000:]
    bus2 = stack.bus(db=bus.db, port=bus.port, admin_secret=bus.admin_secret)

    def settled() -> bool:
        row = http.stats(GOAL)
        return bool(row["ready"] == row["delayed"] == row["claimed"] == 0)

    wait_until(
        settled,
        timeout=40,
        what="the backlog to drain after the restart",
        interval=0.2,
        detail=lambda: f"{http.stats(GOAL)}\n{sidecar.logs()[-3000:]}",
    )
    docs = http.intents(ids)
    statuses = Counter(d["status"] for d in docs.values())
    assert statuses == {"fulfilled": total}, statuses
    handled = Counter(r["intent_id"] for r in handler.lines())
    assert set(handled) == set(ids)
    if not crash:
        # A graceful stop keeps every lease: nothing is handed out twice.
        assert max(handled.values()) == 1, [i for i, n in handled.items() if n > 1]
        assert {d["claim_attempts"] for d in docs.values()} == {1}
    assert sidecar.proc.poll() is None, "the sidecar died instead of riding out the restart"
    assert sidecar.stop(timeout=60) == 0, sidecar.logs()[-3000:]
    assert bus2.stop() == 0, bus2.logs()[-3000:]


def test_bus_sigterm_and_restart_mid_run_the_sidecar_recovers_and_nothing_is_lost(
    stack: LifecycleStack,
) -> None:
    _run_through_a_bus_restart(stack, crash=False)


def test_bus_sigkill_and_restart_mid_run_the_sidecar_recovers_and_nothing_is_lost(
    stack: LifecycleStack,
) -> None:
    _run_through_a_bus_restart(stack, crash=True)
