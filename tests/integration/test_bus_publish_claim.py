"""Publish, claim, fulfill against the real bus: results, claim order, visibility, routing."""

from __future__ import annotations

import asyncio
import time

from tests.support.busproc import BusProcess
from tests.support.rawbus import RawBus


async def test_publish_claim_fulfill_with_json_result(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    r = await raw.request("POST", "/intent", key=key, doc={"goal": "g", "payload": {"n": 1}})
    assert r.status == 201
    assert r.headers["X-Intent-Version"] == "2.1"
    assert r.body["status"] == "published"
    assert r.body["namespace"] == "default"
    intent_id = r.body["id"]

    st = await raw.status(key, intent_id)
    assert st.status == 200
    assert st.body["status"] == "open"
    assert st.body["claim_attempts"] == 0

    got = await raw.claim(key, goal="g")
    assert got is not None
    assert got["id"] == intent_id
    assert got["payload"] == {"n": 1}
    assert got["goal"] == "g"
    assert got["namespace"] == "default"
    assert got["claim_attempts"] == 1
    assert got["max_attempts"] == 3
    assert got["priority"] == 100
    assert got["visibility"] == "private"
    assert got["claim_timeout"] == 60
    assert isinstance(got["claim_token"], str)
    assert got["claim_token"]

    st = await raw.status(key, intent_id)
    assert st.body["status"] == "claimed"
    assert st.body["claim_expires_at"] > time.time()

    f = await raw.fulfill(
        key, intent_id, {"claim_token": got["claim_token"], "result": {"answer": [42, "x"]}}
    )
    assert f.status == 200
    assert f.body == {"id": intent_id, "ok": True}

    st = await raw.status(key, intent_id)
    assert st.body["status"] == "fulfilled"
    assert st.body["completed_at"] is not None
    assert st.body["claim_expires_at"] is None
    res = await raw.request("GET", f"/result/{intent_id}", key=key)
    assert res.status == 200
    assert res.body["status"] == "fulfilled"
    assert res.body["result_type"] == "json"
    assert res.body["result"] == {"answer": [42, "x"]}
    # Fulfilled means gone from the queue.
    assert await raw.claim(key, goal="g") is None


async def test_text_result_is_returned_as_a_string(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    intent_id = await raw.publish(key, {"goal": "g", "payload": {}})
    got = await raw.claim(key, goal="g")
    assert got is not None
    text = 'line one\nline "two" \u2013 ünïcode ☃ {"not": "json"}'
    f = await raw.fulfill(
        key,
        intent_id,
        {"claim_token": got["claim_token"], "result": text, "result_type": "text"},
    )
    assert f.status == 200
    res = await raw.request("GET", f"/result/{intent_id}", key=key)
    assert res.body["result_type"] == "text"
    assert res.body["result"] == text


async def test_fulfill_without_result_has_no_result(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    intent_id = await raw.publish(key, {"goal": "g", "payload": {}})
    got = await raw.claim(key, goal="g")
    assert got is not None
    assert (await raw.fulfill(key, intent_id, {"claim_token": got["claim_token"]})).status == 200
    res = await raw.request("GET", f"/result/{intent_id}", key=key)
    assert res.body["status"] == "fulfilled"
    # No result stored: result_type is left out (SDK 2.1.2 rejects a null one).
    assert res.body.get("result_type") is None
    assert "result" not in res.body


async def test_claim_order_is_priority_then_age(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    published = {}
    for name, priority in [("a", 100), ("b", 100), ("c", 500), ("d", 0), ("e", 500)]:
        published[name] = await raw.publish(
            key, {"goal": "g", "payload": {"name": name}, "priority": priority}
        )
    order = []
    while (got := await raw.claim(key, goal="g")) is not None:
        order.append(got["payload"]["name"])
        assert got["id"] == published[got["payload"]["name"]]
    assert order == ["c", "e", "a", "b", "d"]


async def test_namespaces_isolate(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    blue = await raw.publish(key, {"goal": "g", "payload": {}, "namespace": "blue"})
    default = await raw.publish(key, {"goal": "g", "payload": {}})
    got = await raw.claim(key, goal="g")
    assert got is not None
    assert got["id"] == default
    assert await raw.claim(key, goal="g") is None
    assert await raw.claim(key, goal="g", namespace="green") is None
    got = await raw.claim(key, goal="g", namespace="blue")
    assert got is not None
    assert got["id"] == blue
    assert got["namespace"] == "blue"


async def test_claim_without_goal_takes_any_goal_in_order(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    low = await raw.publish(key, {"goal": "x", "payload": {}, "priority": 10})
    high = await raw.publish(key, {"goal": "y", "payload": {}, "priority": 900})
    other_ns = await raw.publish(key, {"goal": "z", "payload": {}, "namespace": "ns2"})
    first = await raw.claim(key)
    second = await raw.claim(key)
    assert first is not None
    assert second is not None
    assert (first["id"], first["goal"]) == (high, "y")
    assert (second["id"], second["goal"]) == (low, "x")
    assert await raw.claim(key) is None
    third = await raw.claim(key, namespace="ns2")
    assert third is not None
    assert third["id"] == other_ns


async def test_empty_claim_is_204_with_retry_after(bus: BusProcess, raw: RawBus) -> None:
    r = await raw.request("POST", "/claim", key=bus.admin_secret, params={"goal": "nothing"})
    assert r.status == 204
    assert r.headers["Retry-After"] == "1"
    assert r.headers["X-Intent-Version"] == "2.1"
    assert r.body is None


async def test_private_intents_are_invisible_to_other_tenants(bus: BusProcess, raw: RawBus) -> None:
    alice, _ = await raw.new_key("alice")
    bob, _ = await raw.new_key("bob")
    private = await raw.publish(alice, {"goal": "g", "payload": {"secret": 1}})
    assert await raw.claim(bob, goal="g") is None
    assert await raw.claim(bus.admin_secret, goal="g") is None
    # A stranger cannot read its status either.
    st = await raw.status(bob, private)
    assert st.status == 403
    assert st.body["error"]["code"] == "forbidden"

    public = await raw.publish(alice, {"goal": "g", "payload": {}, "visibility": "public"})
    got = await raw.claim(bob, goal="g")
    assert got is not None
    assert got["id"] == public
    assert got["visibility"] == "public"
    # The claimer of a public intent may read its status.
    assert (await raw.status(bob, public)).status == 200

    got = await raw.claim(alice, goal="g")
    assert got is not None
    assert got["id"] == private


async def test_publisher_filter(bus: BusProcess, raw: RawBus) -> None:
    alice, alice_id = await raw.new_key("alice")
    bob, bob_id = await raw.new_key("bob")
    bobs = await raw.publish(bob, {"goal": "g", "payload": {}})
    bobs_public = await raw.publish(bob, {"goal": "g", "payload": {}, "visibility": "public"})
    alices = await raw.publish(alice, {"goal": "g", "payload": {}, "priority": 0})

    r = await raw.request("POST", "/claim", key=alice, params={"goal": "g", "publisher": bob_id})
    assert r.status == 403
    assert r.body["error"]["code"] == "forbidden"
    assert "publisher" in r.body["error"]["message"]

    # Own publisher id: only own intents, even though a public one ranks higher.
    got = await raw.claim(alice, goal="g", publisher=alice_id)
    assert got is not None
    assert got["id"] == alices

    # An admin may name any publisher, and gets that publisher's private intents too.
    got = await raw.claim(bus.admin_secret, goal="g", publisher=bob_id)
    assert got is not None
    assert got["id"] in (bobs, bobs_public)
    got2 = await raw.claim(bus.admin_secret, goal="g", publisher=bob_id)
    assert got2 is not None
    assert {got["id"], got2["id"]} == {bobs, bobs_public}
    assert await raw.claim(bus.admin_secret, goal="g", publisher=bob_id) is None


async def test_target_worker_routing(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    intent_id = await raw.publish(key, {"goal": "g", "payload": {}, "target_worker": "w1"})
    assert await raw.claim(key, goal="g") is None
    assert await raw.claim(key, goal="g", headers={"X-Worker-ID": "w2"}) is None
    got = await raw.claim(key, goal="g", headers={"X-Worker-ID": "w1"})
    assert got is not None
    assert got["id"] == intent_id
    assert got["target_worker"] == "w1"
    admin_view = await raw.admin("GET", f"/admin/intents/{intent_id}")
    assert admin_view.body["worker_id"] == "w1"


async def test_required_capability_routing(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    intent_id = await raw.publish(key, {"goal": "g", "payload": {}, "required_capability": "gpu"})
    plain = await raw.publish(key, {"goal": "g", "payload": {}, "priority": 0})
    # A worker without the capability skips it and gets the lower-priority plain intent.
    got = await raw.claim(key, goal="g", headers={"X-Worker-Capabilities": "cpu,ssd"})
    assert got is not None
    assert got["id"] == plain
    assert await raw.claim(key, goal="g") is None
    got = await raw.claim(key, goal="g", headers={"X-Worker-Capabilities": "cpu, gpu"})
    assert got is not None
    assert got["id"] == intent_id
    assert got["required_capability"] == "gpu"


async def test_delayed_intent_becomes_claimable(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    intent_id = await raw.publish(key, {"goal": "g", "payload": {}, "delay": 0.5})
    st = await raw.status(key, intent_id)
    assert st.body["status"] == "open"
    assert st.body["run_at"] > time.time()
    assert await raw.claim(key, goal="g") is None
    deadline = time.monotonic() + 10
    got = None
    while got is None and time.monotonic() < deadline:
        got = await raw.claim(key, goal="g")
        if got is None:
            await asyncio.sleep(0.05)
    assert got is not None
    assert got["id"] == intent_id


async def test_status_and_result_of_unknown_intent_are_404(bus: BusProcess, raw: RawBus) -> None:
    for path in ("/status/nope", "/result/nope"):
        r = await raw.request("GET", path, key=bus.admin_secret)
        assert r.status == 404
        assert r.body["error"]["code"] == "not_found"
