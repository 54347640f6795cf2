"""The handler contract, end to end: a real bus, a real sidecar, a scripted handler process.

Every answer the handler can give is checked where it matters, on the bus
(``/status`` and ``/result`` read with the admin secret): what was fulfilled
with which result, what failed with which error, and how many attempts it cost.
One bus, sidecar and handler serve the whole module; each test publishes its
own intents (``max_attempts=1`` where a failure should be final and visible).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from tests.support.busproc import BusProcess, start_bus
from tests.support.handlers import HandlerProcess
from tests.support.postgres import NewDatabase
from tests.support.rawbus import RawBus
from tests.support.sidecar_rig import Procs, metric_value, until, wait_status
from tests.support.sidecarproc import SidecarProcess

GOAL = "contract"
HANDLER_TIMEOUT = 1.0


@dataclass
class Rig:
    bus: BusProcess
    handler: HandlerProcess
    sidecar: SidecarProcess


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, new_database: NewDatabase) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("contract")
    bus = start_bus(tmp / "bus", db=new_database())
    procs = Procs(tmp)
    try:
        handler = procs.handler()
        sidecar = procs.sidecar(
            bus_url=bus.url,
            api_key=bus.admin_secret,
            goal=GOAL,
            app_port=handler.port,
            extra_args=["--handler-timeout", str(HANDLER_TIMEOUT)],
        )
        yield Rig(bus=bus, handler=handler, sidecar=sidecar)
    finally:
        procs.close()
        assert bus.stop() == 0, bus.logs()


@pytest.fixture
async def raw(rig: Rig) -> AsyncIterator[RawBus]:
    async with RawBus(rig.bus.url, admin_secret=rig.bus.admin_secret) as client:
        yield client


async def publish(raw: RawBus, script: dict[str, Any], **options: Any) -> str:
    doc = {"goal": GOAL, "payload": script, "max_attempts": 1, **options}
    return await raw.publish(raw.admin_secret, doc)


# -- 2xx: fulfilled, with the result the answer carries -------------------------

FULFILLED_CASES = [
    pytest.param(
        {"status": 200, "json": {"n": 1, "nested": [1, "two", None], "ok": True}},
        "json",
        {"n": 1, "nested": [1, "two", None], "ok": True},
        id="200-json",
    ),
    pytest.param({"status": 201, "json": [1, 2, 3]}, "json", [1, 2, 3], id="201-json-list"),
    pytest.param(
        {"status": 200, "text": "héllo wörld\nline 2"}, "text", "héllo wörld\nline 2", id="text"
    ),
    pytest.param(
        {"status": 200, "raw": "a,b\n1,2\n", "content_type": "text/csv"},
        "text",
        "a,b\n1,2\n",
        id="text-csv",
    ),
    pytest.param({"status": 204}, None, None, id="204"),
    pytest.param({"status": 200}, None, None, id="empty-200"),
    pytest.param(
        {"status": 200, "raw": '{"n": 5, "s": "x"}'},
        "json",
        {"n": 5, "s": "x"},
        id="no-content-type-json",
    ),
    pytest.param(
        {"status": 200, "raw": "plain words"}, "text", "plain words", id="no-content-type-text"
    ),
]


@pytest.mark.parametrize(("script", "result_type", "result"), FULFILLED_CASES)
async def test_2xx_answers_fulfill_with_the_result_they_carry(
    raw: RawBus, script: dict[str, Any], result_type: str | None, result: Any
) -> None:
    intent_id = await publish(raw, script)
    doc = await wait_status(raw, intent_id)
    assert doc["status"] == "fulfilled", doc
    assert doc["claim_attempts"] == 1
    if result_type is None:
        assert "result" not in doc, doc
        assert "result_type" not in doc, doc
    else:
        assert doc["result_type"] == result_type, doc
        assert doc["result"] == result
    assert "error" not in doc, doc


# -- answers that fail the intent, each with an error naming the cause ----------

FAILED_CASES = [
    pytest.param(
        {"status": 200, "content_type": "application/octet-stream", "raw_hex": "00ff10fe"},
        ["application/octet-stream", "200"],
        "bad_result",
        id="binary-octet-stream",
    ),
    pytest.param(
        {"status": 200, "content_type": "application/json", "raw": "{nope"},
        ["invalid json"],
        "bad_result",
        id="json-content-type-but-invalid",
    ),
    pytest.param(
        {"status": 200, "bytes": 300_000},
        ["larger than", "262144"],
        "result_too_large",
        id="too-large",
    ),
    pytest.param(
        {"status": 422, "body": "quantity must be positive"},
        ["422", "quantity must be positive", "rejected"],
        "rejected",
        id="422",
    ),
    pytest.param(
        {"status": 404, "body": ""}, ["404", "(no body)"], "rejected", id="404-empty-body"
    ),
    pytest.param(
        {"status": 500, "body": "database exploded"},
        ["500", "database exploded"],
        "handler_error",
        id="500",
    ),
    pytest.param(
        {"status": 502, "body": "upstream"}, ["502", "upstream"], "handler_error", id="502"
    ),
    pytest.param({"sleep": 2.5, "status": 200}, ["timed out", "1 s"], "timeout", id="timeout"),
    pytest.param(
        {"drop": True}, ["closed the connection"], "disconnected", id="dropped-connection"
    ),
]


@pytest.mark.parametrize(("script", "words", "cause"), FAILED_CASES)
async def test_failing_answers_fail_the_intent_with_a_clear_error(
    raw: RawBus, rig: Rig, script: dict[str, Any], words: list[str], cause: str
) -> None:
    series = f'intent_sidecar_intents_failed_total{{reason="{cause}"}}'
    before = metric_value(rig.sidecar, series)
    intent_id = await publish(raw, script)
    doc = await wait_status(raw, intent_id)
    assert doc["status"] == "dead", doc  # max_attempts=1: the one failure is final
    assert doc["claim_attempts"] == 1, doc
    assert "result" not in doc, doc
    error = doc["last_error"]
    assert error == doc["error"]
    for word in words:
        assert word.lower() in error.lower(), (word, error)

    # The failure is counted under its cause, not parsed back out of the text. The sidecar
    # counts it once the bus has taken the fail, so the count may trail the status a little.
    async def counted() -> bool:
        return metric_value(rig.sidecar, series) >= before + 1

    await until(counted, what=f"{series} counted")
    assert metric_value(rig.sidecar, series) == before + 1


async def test_a_long_error_body_is_cut_to_fit_the_bus(raw: RawBus) -> None:
    intent_id = await publish(raw, {"status": 400, "body": "E" * 5000})
    doc = await wait_status(raw, intent_id)
    assert doc["status"] == "dead"
    assert "(400)" in doc["last_error"]
    assert "EEEE" in doc["last_error"]
    assert len(doc["last_error"]) <= 500


async def test_a_failed_intent_is_delivered_again_with_the_next_attempt_number(
    raw: RawBus, rig: Rig
) -> None:
    intent_id = await publish(raw, {"status": 500, "body": "flaky"}, max_attempts=2, backoff_base=0)
    doc = await wait_status(raw, intent_id)
    assert doc["status"] == "dead"
    assert doc["claim_attempts"] == 2
    attempts = [d["Intent-Attempt"] for d in rig.handler.deliveries(intent_id)]
    assert attempts == ["1", "2"]


# -- 429 / 503: busy, the same claim is retried, no attempt burned --------------


@pytest.mark.parametrize("status", [429, 503])
async def test_a_busy_handler_gets_the_same_intent_again_without_burning_an_attempt(
    raw: RawBus, rig: Rig, status: int
) -> None:
    busy_before = rig.sidecar.metric("intent_sidecar_handler_busy_total")
    times = 2
    intent_id = await publish(
        raw, {"status": status, "retry_after": "0.2", "times": times}, max_attempts=1
    )
    doc = await wait_status(raw, intent_id)
    assert doc["status"] == "fulfilled", doc
    assert doc["claim_attempts"] == 1
    assert doc["result"] == {"deliveries": times + 1}

    deliveries = rig.handler.deliveries(intent_id)
    assert len(deliveries) == times + 1
    assert {d["Intent-Attempt"] for d in deliveries} == {"1"}
    assert {d["Idempotency-Key"] for d in deliveries} == {intent_id}
    # Retry-After was honoured between the deliveries.
    gaps = [b["time"] - a["time"] for a, b in itertools.pairwise(deliveries)]
    assert all(gap >= 0.15 for gap in gaps), gaps
    assert rig.sidecar.metric("intent_sidecar_handler_busy_total") >= busy_before + times


# -- what the handler receives ---------------------------------------------------


async def test_delivery_headers_and_body(raw: RawBus, rig: Rig) -> None:
    script = {"status": 200, "json": {"ok": 1}, "note": "über ✓"}
    before = time.time()
    intent_id = await publish(raw, script)
    doc = await wait_status(raw, intent_id)
    assert doc["status"] == "fulfilled"

    (delivery,) = rig.handler.deliveries(intent_id)
    assert delivery["path"] == "/"
    assert delivery["Intent-Id"] == intent_id
    assert delivery["Idempotency-Key"] == intent_id
    assert delivery["Intent-Goal"] == GOAL
    assert delivery["Intent-Namespace"] == "default"
    assert delivery["Intent-Attempt"] == "1"
    assert delivery["headers"]["Content-Type"] == "application/json"
    deadline_text = delivery["Intent-Deadline"]
    assert deadline_text.isdigit(), deadline_text
    deadline = int(deadline_text)
    # Unix seconds, about "now + handler timeout" (rounded down to the second).
    assert before - 1 <= deadline <= delivery["time"] + HANDLER_TIMEOUT + 1
    assert deadline + 1 > delivery["time"]
    # The body is the payload as JSON (byte length of the compact encoding).
    assert delivery["body_bytes"] == len(orjson.dumps(script))


async def test_handler_metrics_count_what_happened(rig: Rig, raw: RawBus) -> None:
    claimed = rig.sidecar.metric("intent_sidecar_intents_claimed_total")
    fulfilled = rig.sidecar.metric("intent_sidecar_intents_fulfilled_total")
    intent_id = await publish(raw, {"status": 200, "json": 1})
    await wait_status(raw, intent_id)

    async def counted() -> bool:
        return rig.sidecar.metric("intent_sidecar_intents_fulfilled_total") >= fulfilled + 1

    await until(counted, timeout=5, what="fulfilled counter")
    assert rig.sidecar.metric("intent_sidecar_intents_claimed_total") >= claimed + 1
    assert rig.sidecar.metric("intent_sidecar_handler_duration_seconds_count") >= 1


# -- what the checks above rely on: /result is whole as soon as it says fulfilled ------


async def test_result_is_never_fulfilled_without_its_result(raw: RawBus) -> None:
    """Regression: /result of an intent fulfilled but not yet on disk showed no result."""
    key = raw.admin_secret
    for n in range(40):
        intent_id = await raw.publish(key, {"goal": "not-the-sidecars", "payload": {}})
        claimed = await raw.claim(key, goal="not-the-sidecars")
        assert claimed is not None
        assert claimed["id"] == intent_id
        body = {"claim_token": claimed["claim_token"], "result": {"n": n}}
        fulfil = asyncio.ensure_future(raw.fulfill(key, intent_id, body))
        try:
            while not fulfil.done():
                doc = (await raw.request("GET", f"/result/{intent_id}", key=key)).body
                if doc["status"] == "fulfilled":
                    assert doc.get("result") == {"n": n}, doc
                await asyncio.sleep(0)
        finally:
            reply = await fulfil
        assert reply.status == 200, reply
