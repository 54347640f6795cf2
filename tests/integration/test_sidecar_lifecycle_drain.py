"""Sidecar life cycle, draining: SIGTERM under load, POST /v1/drain, and handing work back
at once (second SIGTERM, drain timeout) through the bus's release extension.

Real processes throughout: ``intent-fleet bus``, ``intent-fleet sidecar`` and the
counting handler (tests/support/counting_handler.py), all stopped by PID.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.lifecycle import BusHttp, LifecycleStack, in_flight, wait_until
from tests.support.postgres import NewDatabase
from tests.support.sidecarproc import SidecarProcess

GOAL = "lifecycle"


@pytest.fixture
def stack(tmp_path: Path, new_database: NewDatabase) -> Iterator[LifecycleStack]:
    with LifecycleStack(tmp_path, new_database) as s:
        yield s


def _wait_exit(sidecar: SidecarProcess, timeout: float) -> int:
    try:
        return sidecar.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"the sidecar did not exit within {timeout} s:\n{sidecar.logs()[-4000:]}"
        ) from None


def test_sigterm_under_load_finishes_what_was_claimed_exactly_once_and_claims_no_more(
    stack: LifecycleStack,
) -> None:
    total, concurrency, job = 40, 4, 0.3
    bus = stack.bus()
    http = BusHttp(bus.url, admin_secret=bus.admin_secret)
    ids = [http.publish(GOAL, {"sleep": job, "n": n}) for n in range(total)]
    handler = stack.handler()
    sidecar = stack.sidecar(
        bus, goal=GOAL, app_port=handler.port, extra_args=["--concurrency", str(concurrency)]
    )
    # The first wave is done and the second is in the handler's hands.
    wait_until(
        lambda: len(handler.lines()) >= concurrency and in_flight(sidecar) > 0,
        timeout=15,
        what="work in flight",
        interval=0.02,
    )
    signalled = time.time()
    sidecar.proc.send_signal(signal.SIGTERM)
    assert _wait_exit(sidecar, 20) == 0, sidecar.logs()[-4000:]

    lines = handler.lines()
    handled = Counter(r["intent_id"] for r in lines)
    assert max(handled.values()) == 1, [i for i, n in handled.items() if n > 1]
    assert len(handled) < total, "everything was handled: the sidecar did not stop claiming"
    docs = http.intents(ids)
    for intent_id, doc in docs.items():
        if intent_id in handled:
            # Claimed before the drain: finished, reported, nothing failed or redelivered.
            assert (doc["status"], doc["claim_attempts"]) == ("fulfilled", 1), doc
        else:
            # Never delivered: open and untouched (or handed back with the attempt refunded).
            assert (doc["status"], doc["claim_attempts"]) == ("open", 0), doc
    # Deliveries after the signal come only from claims already under way then: at
    # most one per claim lane, all starting at once, none later.
    late = [r for r in lines if r["t_start"] > signalled]
    assert len(late) <= concurrency, late
    assert all(r["t_start"] < signalled + 1.0 for r in late), (signalled, late)
    # Nothing was in flight when it exited: every delivery ended before the exit.
    assert len(handled) == sum(1 for d in docs.values() if d["status"] == "fulfilled")


def test_post_drain_answers_after_in_flight_work_and_then_claims_nothing(
    stack: LifecycleStack,
) -> None:
    job = 1.0
    bus = stack.bus()
    http = BusHttp(bus.url, admin_secret=bus.admin_secret)
    handler = stack.handler()
    # Two of four lanes take the two intents; the other two stay parked in long-polls.
    sidecar = stack.sidecar(
        bus, goal=GOAL, app_port=handler.port, extra_args=["--concurrency", "4"]
    )
    sidecar.wait_ready()
    first = [http.publish(GOAL, {"sleep": job, "n": n}) for n in range(2)]
    wait_until(
        lambda: in_flight(sidecar) == 2, timeout=10, what="both intents in flight", interval=0.02
    )
    asked = time.time()
    status, body = sidecar.post("/v1/drain", timeout=30)
    answered = time.time()
    assert status == 200, body
    assert isinstance(body, dict) and body["drained"] is True, body

    lines = handler.lines()
    assert sorted(r["intent_id"] for r in lines) == sorted(first)
    # It blocked until the work was done, and answered soon after.
    assert all(r["t_end"] <= answered for r in lines), (answered, lines)
    assert answered - asked < job + 2.0
    assert in_flight(sidecar) == 0
    for doc in http.intents(first).values():
        assert (doc["status"], doc["claim_attempts"]) == ("fulfilled", 1), doc
    status, ready = sidecar.get("/readyz")
    assert status == 503, ready

    # Published now, while long-polls parked before the drain may still be waiting on
    # the bus: the drained sidecar must not take it into work.
    late = http.publish(GOAL, {"n": "late"})
    deadline = time.monotonic() + 2.0
    seen = set()
    while time.monotonic() < deadline:
        doc = http.intent(late)
        seen.add(doc["status"])
        assert doc["status"] in ("open", "claimed"), doc
        time.sleep(0.05)
    doc = http.intent(late)
    assert (doc["status"], doc["claim_attempts"]) == ("open", 0), (doc, seen)
    assert late not in {r["intent_id"] for r in handler.lines()}
    # Drained is not gone: the handler may still use the local API while it shuts
    # down (the sidecar stops after it, on SIGTERM).
    assert sidecar.proc.poll() is None, sidecar.logs()[-4000:]
    assert sidecar.get("/healthz")[0] == 200
    assert sidecar.get("/readyz")[0] == 503
    stopping = time.monotonic()
    assert sidecar.stop(timeout=20) == 0, sidecar.logs()[-4000:]
    assert time.monotonic() - stopping < 3  # nothing left to wait for
    # Still there for any other worker, with no attempt spent.
    doc = http.intent(late)
    assert (doc["status"], doc["claim_attempts"]) == ("open", 0), doc


@pytest.mark.parametrize("how", ["second_sigterm", "drain_timeout"])
def test_unfinished_intent_is_handed_back_at_once_not_after_its_lease(
    stack: LifecycleStack, how: str
) -> None:
    bus = stack.bus()  # the default 60 s lease: waiting it out would fail the test
    http = BusHttp(bus.url, admin_secret=bus.admin_secret)
    handler = stack.handler()
    extra = ["--concurrency", "1"]
    if how == "drain_timeout":
        extra += ["--drain-timeout", "2"]
    sidecar = stack.sidecar(bus, goal=GOAL, app_port=handler.port, extra_args=extra)
    sidecar.wait_ready()
    intent_id = http.publish(GOAL, {"sleep": 30})
    wait_until(lambda: in_flight(sidecar) == 1, timeout=10, what="the intent in flight")
    held = http.intent(intent_id)
    assert (held["status"], held["claim_attempts"]) == ("claimed", 1), held

    started = time.monotonic()
    sidecar.proc.send_signal(signal.SIGTERM)
    if how == "second_sigterm":
        # Draining (not ready any more), then told to stop now.
        wait_until(lambda: sidecar.get("/readyz")[0] == 503, timeout=5, what="draining")
        sidecar.proc.send_signal(signal.SIGTERM)
    code = _wait_exit(sidecar, 15)
    elapsed = time.monotonic() - started
    assert code == 0, sidecar.logs()[-4000:]
    assert elapsed < 10, elapsed  # the handler would have taken 30 s

    doc = http.intent(intent_id)
    # Released, not failed: open again with the attempt refunded, no lease left to wait out.
    assert (doc["status"], doc["claim_attempts"]) == ("open", 0), doc
    assert doc["claim_expires_at"] is None, doc
    assert not doc["last_error"], doc
    # Another worker can claim it right now.
    other = http.claim(GOAL)
    assert other is not None and other["id"] == intent_id, other
    assert other["claim_attempts"] == 1
    handler.proc.kill()  # still sleeping on the abandoned request; nothing to wait for
