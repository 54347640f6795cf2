"""The sidecar against a bus answering like a v1.1 server (``--wire-version 1.1``).

v1.1 has no claim tokens, no lease extension, no results, no ``/status`` and
a final ``/fail``; the bus side is read with the admin route
``GET /admin/intents/<id>`` (``X-Admin-Token``).
"""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import StartBus
from tests.support.rawbus import RawBus
from tests.support.sidecar_rig import Procs, log_lines, until

GOAL = "legacy"


async def admin_intent(raw: RawBus, intent_id: str) -> dict[str, Any]:
    r = await raw.admin("GET", f"/admin/intents/{intent_id}")
    assert r.status == 200, r
    doc: dict[str, Any] = r.body
    return doc


async def wait_admin_status(raw: RawBus, intent_id: str, *statuses: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        doc = await admin_intent(raw, intent_id)
        return doc if doc["status"] in statuses else None

    found: dict[str, Any] = await until(probe, timeout=15, what=f"{intent_id} in {statuses}")
    return found


async def test_v1_bus_end_to_end(start: StartBus, procs: Procs) -> None:
    bus = start("--wire-version", "1.1")
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        key, _ = await raw.new_key("v1-tenant")
        handler = procs.handler()
        sidecar = procs.sidecar(bus_url=bus.url, api_key=key, goal=GOAL, app_port=handler.port)

        # The v1.1 lease cannot be extended: the sidecar warns that its
        # handler timeout (300 s by default) outlives the 60 s lease.
        warnings = [
            doc
            for doc in log_lines(sidecar)
            if "handler timeout exceeds the lease" in str(doc.get("msg", ""))
        ]
        assert warnings, sidecar.logs()
        assert warnings[0]["level"] == "warning"
        assert warnings[0]["handler_timeout"] == 300
        assert warnings[0]["lease"] == 60
        detected = [d for d in log_lines(sidecar) if d.get("msg") == "bus detected"]
        assert detected
        assert detected[0]["protocol"] == "1.1"
        assert detected[0]["extend"] is False

        # Published through the local API, claimed without a token, fulfilled.
        status, receipt = sidecar.post(
            "/v1/publish", {"goal": GOAL, "payload": {"status": 200, "json": {"v": 1}}}
        )
        assert status == 201, receipt
        assert isinstance(receipt, dict)
        ok_id = receipt["id"]
        doc = await wait_admin_status(raw, ok_id, "fulfilled", "dead", "failed")
        assert doc["status"] == "fulfilled", doc
        assert doc["claim_attempts"] == 1
        (delivery,) = handler.deliveries(ok_id)
        assert delivery["Intent-Id"] == ok_id
        assert delivery["Intent-Attempt"] == "1"
        assert delivery["Intent-Namespace"] == "default"

        # A busy handler is retried on the same claim (a v1.1 fail would be final).
        busy_id = await raw.publish(
            key,
            {"goal": GOAL, "payload": {"status": 429, "retry_after": "0.2", "times": 2}},
        )
        doc = await wait_admin_status(raw, busy_id, "fulfilled", "dead", "failed")
        assert doc["status"] == "fulfilled", doc
        assert len(handler.deliveries(busy_id)) == 3

        # A 500 fails it, and on v1.1 that is final.
        bad_id = await raw.publish(
            key, {"goal": GOAL, "payload": {"status": 500, "body": "v1 handler broke"}}
        )
        doc = await wait_admin_status(raw, bad_id, "fulfilled", "dead", "failed")
        assert doc["status"] == "dead", doc
        assert doc["claim_attempts"] == 1
        assert "500" in doc["last_error"]
        assert "v1 handler broke" in doc["last_error"]
        assert len(handler.deliveries(bad_id)) == 1

        # v1.1 has no /status: the local API says so clearly instead of crashing.
        code, body = sidecar.get(f"/v1/intents/{ok_id}")
        assert code == 501, (code, body)
        assert isinstance(body, dict)
        assert body["error"]["code"] == "not_supported", body
        assert "v1.1" in body["error"]["message"], body
    assert sidecar.metric("intent_sidecar_intents_fulfilled_total") == 2
    assert sidecar.proc.poll() is None
