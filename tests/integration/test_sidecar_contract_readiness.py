"""The sidecar claims only while the handler is ready, and loses nothing when it is not.

Real processes throughout: a bus, a sidecar, and the scripted handler, started
late, made unhealthy through its health-fail file, or exiting mid-run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.busproc import BusProcess
from tests.support.procs import read_record
from tests.support.rawbus import RawBus
from tests.support.sidecar_rig import Procs, bus_status, settle, until, wait_status
from tests.support.sidecarproc import SidecarProcess, free_port

GOAL = "ready"


def readyz(sidecar: SidecarProcess) -> int:
    status, _ = sidecar.get("/readyz")
    return status


async def wait_readyz(sidecar: SidecarProcess, code: int, *, timeout: float = 8.0) -> None:
    async def probe() -> bool:
        return readyz(sidecar) == code

    await until(probe, timeout=timeout, what=f"/readyz {code}")


async def stays_unclaimed(raw: RawBus, intent_id: str, seconds: float) -> None:
    async def unclaimed() -> dict[str, Any] | None:
        doc = await bus_status(raw, intent_id)
        ok = doc["status"] == "open" and doc["claim_attempts"] == 0
        return doc if ok else None

    await settle(unclaimed, seconds=seconds, what=f"intent {intent_id} staying unclaimed")


async def test_nothing_is_claimed_until_the_handler_listens(
    bus: BusProcess, raw: RawBus, procs: Procs
) -> None:
    port = free_port()  # nobody listens here yet
    sidecar = procs.sidecar(
        bus_url=bus.url, api_key=bus.admin_secret, goal=GOAL, app_port=port, wait_ready=False
    )
    intent_id = await raw.publish(bus.admin_secret, {"goal": GOAL, "payload": {"status": 200}})
    await stays_unclaimed(raw, intent_id, 2.0)
    assert readyz(sidecar) == 503
    _, state = sidecar.get("/v1/state")
    assert isinstance(state, dict)
    assert state["handler_ready"] is False
    assert sidecar.metric("intent_sidecar_intents_claimed_total") == 0

    handler = procs.handler(port)
    doc = await wait_status(raw, intent_id, timeout=15)
    assert doc["status"] == "fulfilled", doc
    assert doc["claim_attempts"] == 1
    assert len(handler.deliveries(intent_id)) == 1
    await wait_readyz(sidecar, 200, timeout=5)


async def test_health_path_gates_claiming_both_ways(
    bus: BusProcess, raw: RawBus, procs: Procs, tmp_path: Path
) -> None:
    fail_file = tmp_path / "unhealthy"
    fail_file.touch()
    handler = procs.handler(health_path="/healthz", health_fail_file=fail_file)
    sidecar = procs.sidecar(
        bus_url=bus.url,
        api_key=bus.admin_secret,
        goal=GOAL,
        app_port=handler.port,
        extra_args=["--app-health-path", "/healthz"],
        wait_ready=False,
    )
    first = await raw.publish(bus.admin_secret, {"goal": GOAL, "payload": {"status": 200}})
    await stays_unclaimed(raw, first, 2.0)
    assert readyz(sidecar) == 503
    assert handler.deliveries() == []
    probes = [r for r in read_record(handler.record) if r["path"] == "/healthz"]
    assert probes, "the sidecar never asked the health path"

    fail_file.unlink()
    doc = await wait_status(raw, first, timeout=10)
    assert doc["status"] == "fulfilled", doc
    await wait_readyz(sidecar, 200, timeout=5)

    # Unhealthy again mid-run: claiming pauses.
    fail_file.touch()
    await wait_readyz(sidecar, 503, timeout=8)
    second = await raw.publish(bus.admin_secret, {"goal": GOAL, "payload": {"status": 200}})

    # A claim parked before the handler turned unhealthy may take it, but must
    # hand it back unworked (attempt refunded), never deliver it.
    async def not_delivered() -> bool:
        doc = await bus_status(raw, second)
        assert doc["status"] in ("open", "claimed"), doc
        return handler.deliveries(second) == []

    await settle(not_delivered, seconds=2.0, what="the second intent staying undelivered")
    await stays_unclaimed(raw, second, 0.5)

    fail_file.unlink()
    doc = await wait_status(raw, second, timeout=10)
    assert doc["status"] == "fulfilled", doc
    assert doc["claim_attempts"] == 1


async def test_a_handler_that_dies_mid_run_loses_no_intent(
    bus: BusProcess, raw: RawBus, procs: Procs
) -> None:
    handler = procs.handler()
    sidecar = procs.sidecar(
        bus_url=bus.url, api_key=bus.admin_secret, goal=GOAL, app_port=handler.port
    )
    last = await raw.publish(bus.admin_secret, {"goal": GOAL, "payload": {"exit": True}})
    doc = await wait_status(raw, last)
    assert doc["status"] == "fulfilled", doc
    assert doc["result"] == {"bye": True}
    handler.proc.wait(timeout=5)

    # The next intent: either failed as unreachable and put back, or never claimed.
    orphan = await raw.publish(
        bus.admin_secret,
        {"goal": GOAL, "payload": {"status": 200, "json": "back"}, "backoff_base": 0.2},
    )

    async def not_lost() -> dict[str, Any] | None:
        st = await bus_status(raw, orphan)
        assert st["status"] in ("open", "claimed"), st
        return st

    await settle(not_lost, seconds=2.0, what="the orphan staying alive")
    st = await bus_status(raw, orphan)
    assert st["status"] == "open", st
    if st["claim_attempts"]:
        error = st["last_error"] or ""
        assert "unreachable" in error, error
        assert "refused" in error, error
    await wait_readyz(sidecar, 503, timeout=5)

    restarted = procs.handler(handler.port, record=handler.record)
    doc = await wait_status(raw, orphan, timeout=15)
    assert doc["status"] == "fulfilled", doc
    assert doc["result"] == "back"
    assert len(restarted.deliveries(orphan)) == 1
    assert sidecar.proc.poll() is None
