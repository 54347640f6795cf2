"""Admin endpoints: keys, intent views, retry/cancel rules, dead-letter paging, purge, cleanup."""

from __future__ import annotations

import time

from tests.integration.conftest import StartBus
from tests.support.busproc import BusProcess
from tests.support.rawbus import RawBus, assert_error
from tests.support.sidecar_rig import until


async def make_dead(raw: RawBus, key: str, *, goal: str, namespace: str = "default") -> str:
    """Publish an intent with one attempt and fail it: dead at once."""
    intent_id = await raw.publish(
        key, {"goal": goal, "payload": {"g": goal}, "max_attempts": 1, "namespace": namespace}
    )
    got = await raw.claim(key, goal=goal, namespace=namespace)
    assert got is not None
    assert got["id"] == intent_id
    r = await raw.request(
        "POST",
        f"/fail/{intent_id}",
        key=key,
        doc={"claim_token": got["claim_token"], "error": f"{goal} broke"},
    )
    assert r.body["status"] == "dead"
    return intent_id


async def test_generate_and_list_keys(bus: BusProcess, raw: RawBus) -> None:
    r = await raw.admin("POST", "/admin/generate_key", {"owner": "team-a"})
    assert r.status == 201
    assert r.body["api_key"].startswith("tk_")
    assert len(r.body["api_key"]) == 43
    assert r.body["id"].startswith("k_")
    assert r.body["owner"] == "team-a"
    assert isinstance(r.body["created_at"], float) and r.body["created_at"] > 1.7e9
    r2 = await raw.admin("POST", "/admin/generate_key")
    assert r2.status == 201
    assert r2.body["owner"] == "anonymous"
    assert r2.body["api_key"] != r.body["api_key"]
    keys = (await raw.admin("GET", "/admin/keys")).body["keys"]
    assert {(k["id"], k["owner"], k["created_at"]) for k in keys} == {
        (r.body["id"], "team-a", r.body["created_at"]),
        (r2.body["id"], "anonymous", r2.body["created_at"]),
    }
    # Secrets are never listed.
    assert r.body["api_key"] not in str(keys)
    for bad in ({"owner": ""}, {"owner": 5}, {"owner": "o" * 101}):
        assert_error(
            await raw.admin("POST", "/admin/generate_key", bad), 400, "invalid_request", "owner"
        )
    # The new key works at once; an intent records its key id as publisher.
    intent_id = await raw.publish(r.body["api_key"], {"goal": "g", "payload": {"a": 1}})
    view = await raw.admin("GET", f"/admin/intents/{intent_id}")
    assert view.status == 200
    assert view.body["publisher"] == r.body["id"]
    assert view.body["payload"] == {"a": 1}
    assert view.body["status"] == "open"


async def test_keys_survive_a_restart(start: StartBus) -> None:
    bus = start()
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        kept, _ = await raw.new_key("kept")
        revoked, _ = await raw.new_key("revoked")
        await raw.admin("POST", "/admin/revoke_key", {"api_key": revoked})
    assert bus.stop() == 0
    bus2 = start(db=bus.db)
    async with RawBus(bus2.url, admin_secret=bus2.admin_secret) as raw:
        assert (await raw.request("POST", "/claim", key=kept)).status == 204
        assert_error(await raw.request("POST", "/claim", key=revoked), 401, "unauthorized")


async def test_admin_intent_view_of_unknown_and_terminal_intents(
    bus: BusProcess, raw: RawBus
) -> None:
    assert_error(await raw.admin("GET", "/admin/intents/nope"), 404, "not_found")
    key = bus.admin_secret
    dead = await make_dead(raw, key, goal="g")
    view = await raw.admin("GET", f"/admin/intents/{dead}")
    assert view.body["status"] == "dead"
    assert view.body["last_error"] == "g broke"
    assert view.body["claim_attempts"] == 1


async def test_retry_and_cancel_rules(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    live = await raw.publish(key, {"goal": "live", "payload": {}})
    r = await raw.admin("POST", f"/admin/intents/{live}/retry")
    assert_error(r, 409, "conflict", "live")
    assert_error(await raw.admin("POST", "/admin/intents/nope/retry"), 404, "not_found")

    # A cancelled intent can be retried back to life.
    assert (await raw.admin("POST", f"/admin/intents/{live}/cancel")).status == 200
    assert (await raw.admin("POST", f"/admin/intents/{live}/retry")).status == 200
    got = await raw.claim(key, goal="live")
    assert got is not None
    assert got["id"] == live
    await raw.fulfill(key, live, {"claim_token": got["claim_token"]})
    # Fulfilled is final: neither retry nor cancel.
    r = await raw.admin("POST", f"/admin/intents/{live}/retry")
    assert_error(r, 409, "conflict", "fulfilled")
    r = await raw.admin("POST", f"/admin/intents/{live}/cancel")
    assert_error(r, 409, "conflict", "fulfilled")
    # Retrying twice: the second finds it live.
    dead = await make_dead(raw, key, goal="dead")
    assert (await raw.admin("POST", f"/admin/intents/{dead}/retry")).status == 200
    assert_error(await raw.admin("POST", f"/admin/intents/{dead}/retry"), 409, "conflict")


async def test_dead_letter_listing_filters_and_pages(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    a1 = await make_dead(raw, key, goal="a")
    a2 = await make_dead(raw, key, goal="a")
    b1 = await make_dead(raw, key, goal="b")
    n1 = await make_dead(raw, key, goal="a", namespace="other")
    alive = await raw.publish(key, {"goal": "a", "payload": {}})

    everything = (await raw.admin("GET", "/admin/dead")).body["dead"]
    assert {d["intent_id"] for d in everything} == {a1, a2, b1, n1}
    # Newest death first.
    assert everything[0]["intent_id"] == n1
    only_a = (await raw.admin("GET", "/admin/dead", params={"goal": "a"})).body["dead"]
    assert {d["intent_id"] for d in only_a} == {a1, a2, n1}
    scoped = await raw.admin("GET", "/admin/dead", params={"goal": "a", "namespace": "default"})
    assert {d["intent_id"] for d in scoped.body["dead"]} == {a1, a2}
    page1 = (await raw.admin("GET", "/admin/dead", params={"limit": 2})).body["dead"]
    page2 = (await raw.admin("GET", "/admin/dead", params={"limit": 2, "offset": 2})).body["dead"]
    assert len(page1) == len(page2) == 2
    assert {d["intent_id"] for d in page1 + page2} == {a1, a2, b1, n1}
    entry = next(d for d in everything if d["intent_id"] == b1)
    assert entry["reason"] == "b broke"
    assert entry["namespace"] == "default"
    assert entry["died_at"] >= entry["created_at"]

    for params in ({"limit": 0}, {"limit": 1001}, {"limit": "x"}, {"offset": -1}):
        r = await raw.admin("GET", "/admin/dead", params=params)
        assert_error(r, 400, "invalid_request", "limit")
    assert_error(
        await raw.admin("GET", "/admin/dead", params={"namespace": "bad ns"}),
        400,
        "invalid_namespace",
    )
    # Only dead intents have a dead-letter entry.
    assert_error(await raw.admin("GET", f"/admin/dead/{alive}"), 404, "not_found")
    assert_error(await raw.admin("GET", "/admin/dead/nope"), 404, "not_found")


async def test_purge_needs_confirmation_and_can_be_scoped(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    for ns in ("default", "default", "keep"):
        await raw.publish(key, {"goal": "g", "payload": {}, "namespace": ns})
    r = await raw.admin("POST", "/admin/purge", {})
    assert_error(r, 400, "confirmation_required", "confirm")
    r = await raw.admin("POST", "/admin/purge", {"confirm": "yes"})
    assert_error(r, 400, "confirmation_required")

    r = await raw.admin("POST", "/admin/purge", {"confirm": True, "namespace": "default"})
    assert r.status == 200
    assert r.body == {"ok": True, "deleted": 2}
    assert await raw.claim(key, goal="g") is None
    assert await raw.claim(key, goal="g", namespace="keep") is not None

    await raw.request("POST", "/set/k", key=key, doc={"value": "v"})
    r = await raw.admin("POST", "/admin/purge", {"confirm": True})
    assert r.body == {"ok": True, "deleted": 1}
    assert (await raw.request("GET", "/get/k", key=key)).status == 404
    stats = await raw.stats(key)
    assert all(s["ready"] == s["claimed"] == 0 for s in stats)


async def test_cleanup_reports_what_it_removed(start: StartBus) -> None:
    # Retention 0: every terminal intent is past retention as soon as it is terminal.
    bus = start("--retention", "0")
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        key = bus.admin_secret
        done = await raw.publish(key, {"goal": "g", "payload": {}})
        got = await raw.claim(key, goal="g")
        assert got is not None
        await raw.fulfill(key, done, {"claim_token": got["claim_token"]})
        dead = await make_dead(raw, key, goal="d")
        cancelled = await raw.publish(key, {"goal": "c", "payload": {}})
        await raw.admin("POST", f"/admin/intents/{cancelled}/cancel")
        live = await raw.publish(key, {"goal": "g", "payload": {}})
        await raw.request("POST", "/set/short", key=key, doc={"value": "v", "ttl": 1})
        expires = time.time() + 1

        async def expired() -> bool:  # the KV TTL passes; nothing else waits on time
            return time.time() > expires

        await until(expired, timeout=5, what="the KV entry to expire")

        r = await raw.admin("POST", "/admin/cleanup")
        assert r.status == 200
        assert r.body == {
            "fulfilled_deleted": 1,
            "dead_deleted": 1,
            "cancelled_deleted": 1,
            "kv_deleted": 1,
        }
        for gone in (done, dead, cancelled):
            assert (await raw.status(key, gone)).status == 404
        assert (await raw.status(key, live)).body["status"] == "open"
        assert (await raw.stats(key, goal="d"))[0]["dead"] == 0
