"""Leases: extend, stale tokens, v1.1-style fulfill, fail/backoff/dead, expiry, restarts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.integration.conftest import StartBus
from tests.support.busproc import BusProcess
from tests.support.rawbus import RawBus


async def until(
    probe: Callable[[], Awaitable[Any]], *, timeout: float = 10.0, every: float = 0.05
) -> Any:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = await probe()
        if got:
            return got
        assert time.monotonic() < deadline, f"condition not met within {timeout} s"
        await asyncio.sleep(every)


def assert_lease_lost(reply: Any) -> None:
    assert reply.status == 404, reply
    assert reply.body["error"]["code"] == "not_found"
    assert "stale" in reply.body["error"]["message"]


async def test_extend_claim_keeps_the_lease_past_the_claim_timeout(start: StartBus) -> None:
    bus = start("--claim-timeout", "1")
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        key = bus.admin_secret
        kept = await raw.publish(key, {"goal": "g", "payload": {}})
        lost = await raw.publish(key, {"goal": "g", "payload": {}})
        a = await raw.claim(key, goal="g")
        b = await raw.claim(key, goal="g")
        assert a is not None
        assert b is not None
        assert (a["id"], b["id"]) == (kept, lost)
        assert a["claim_timeout"] == 1

        r = await raw.request(
            "POST", f"/extend_claim/{kept}", key=key, doc={"claim_token": a["claim_token"]}
        )
        assert r.status == 200
        assert r.body == {"id": kept, "ok": True, "extended_by": 60}

        # The unextended lease runs out and its intent comes back; the extended one does not.
        again = await until(lambda: raw.claim(key, goal="g"))
        assert again["id"] == lost
        assert again["claim_attempts"] == 2
        st = await raw.status(key, kept)
        assert st.body["status"] == "claimed"
        assert st.body["claim_expires_at"] > time.time() + 30
        f = await raw.fulfill(key, kept, {"claim_token": a["claim_token"]})
        assert f.status == 200


async def test_extend_claim_clamps_seconds(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    intent_id = await raw.publish(key, {"goal": "g", "payload": {}})
    got = await raw.claim(key, goal="g")
    assert got is not None
    path, token = f"/extend_claim/{intent_id}", got["claim_token"]
    r = await raw.request("POST", path, key=key, doc={"claim_token": token, "seconds": 1})
    assert r.body["extended_by"] == 10
    r = await raw.request("POST", path, key=key, doc={"claim_token": token, "seconds": 10**9})
    assert r.body["extended_by"] == 3600
    st = await raw.status(key, intent_id)
    assert st.body["claim_expires_at"] > time.time() + 3000
    r = await raw.request("POST", path, key=key, doc={"seconds": 30})
    assert r.status == 400
    assert "claim_token" in r.body["error"]["message"]


async def test_stale_or_wrong_token_is_404(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    intent_id = await raw.publish(key, {"goal": "g", "payload": {}})
    got = await raw.claim(key, goal="g")
    assert got is not None
    wrong = {"claim_token": "0" * 32}
    for path in (f"/fulfill/{intent_id}", f"/fail/{intent_id}", f"/extend_claim/{intent_id}"):
        assert_lease_lost(await raw.request("POST", path, key=key, doc=wrong))
    # Unknown intent: same answer.
    assert_lease_lost(await raw.fulfill(key, "no-such-intent", {"claim_token": "x"}))
    # The lease is untouched by the refused calls.
    assert (await raw.status(key, intent_id)).body["status"] == "claimed"
    ok = await raw.fulfill(key, intent_id, {"claim_token": got["claim_token"]})
    assert ok.status == 200
    # Once fulfilled the token is stale too.
    assert_lease_lost(await raw.fulfill(key, intent_id, {"claim_token": got["claim_token"]}))


async def test_fulfill_without_token_only_from_the_lease_holder(
    bus: BusProcess, raw: RawBus
) -> None:
    alice, _ = await raw.new_key("alice")
    bob, _ = await raw.new_key("bob")
    first = await raw.publish(alice, {"goal": "g", "payload": {}, "visibility": "public"})
    second = await raw.publish(alice, {"goal": "g", "payload": {}, "visibility": "public"})
    got = await raw.claim(bob, goal="g")
    assert got is not None
    assert got["id"] == first
    # The publisher does not hold the lease; neither does the admin.
    assert_lease_lost(await raw.fulfill(alice, first, {}))
    assert_lease_lost(await raw.fulfill(bus.admin_secret, first, {}))
    # v1.1 style: no body at all, from the key holding the lease.
    r = await raw.request("POST", f"/fulfill/{first}", key=bob)
    assert r.status == 200
    assert (await raw.status(alice, first)).body["status"] == "fulfilled"

    got = await raw.claim(alice, goal="g")
    assert got is not None
    assert got["id"] == second
    assert_lease_lost(await raw.request("POST", f"/fail/{second}", key=bob, doc={}))
    assert (await raw.status(alice, second)).body["status"] == "claimed"


async def test_fail_requeues_with_backoff_then_dies(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    intent_id = await raw.publish(
        key,
        {
            "goal": "g",
            "payload": {"p": 1},
            "max_attempts": 2,
            "backoff_base": 0.05,
        },
    )
    got = await raw.claim(key, goal="g")
    assert got is not None
    before = time.time()
    r = await raw.request(
        "POST",
        f"/fail/{intent_id}",
        key=key,
        doc={"claim_token": got["claim_token"], "error": "boom 1"},
    )
    assert r.status == 200
    assert r.body == {"id": intent_id, "ok": True, "status": "open"}
    st = await raw.status(key, intent_id)
    assert st.body["status"] == "open"
    assert st.body["run_at"] > before
    assert st.body["last_error"] == "boom 1"
    stats = await raw.stats(key, goal="g")
    assert stats[0]["ready"] + stats[0]["delayed"] == 1
    assert stats[0]["claimed"] == 0

    # Back-off (0.05 * 2^1 s plus up to 2 s of jitter), then claimable again.
    got = await until(lambda: raw.claim(key, goal="g"))
    assert got["id"] == intent_id
    assert got["claim_attempts"] == 2
    assert time.time() >= st.body["run_at"] - 0.01

    r = await raw.request(
        "POST",
        f"/fail/{intent_id}",
        key=key,
        doc={"claim_token": got["claim_token"], "error": {"why": "boom 2"}},
    )
    assert r.body["status"] == "dead"
    st = await raw.status(key, intent_id)
    assert st.body["status"] == "dead"
    assert st.body["last_error"] == '{"why":"boom 2"}'
    assert await raw.claim(key, goal="g") is None

    dead = await raw.admin("GET", "/admin/dead")
    assert dead.status == 200
    [entry] = dead.body["dead"]
    assert entry["intent_id"] == intent_id
    assert entry["goal"] == "g"
    assert entry["attempts"] == 2
    assert entry["reason"] == '{"why":"boom 2"}'
    detail = await raw.admin("GET", f"/admin/dead/{intent_id}")
    assert detail.status == 200
    assert detail.body["payload"] == {"p": 1}
    assert detail.body["publisher"] == "admin"
    assert detail.body["attempts"] == 2

    # Admin retry: claimable again with a fresh set of attempts.
    r = await raw.admin("POST", f"/admin/intents/{intent_id}/retry")
    assert r.status == 200
    assert r.body == {"id": intent_id, "ok": True, "status": "open"}
    assert (await raw.admin("GET", "/admin/dead")).body["dead"] == []
    got = await raw.claim(key, goal="g")
    assert got is not None
    assert got["id"] == intent_id
    assert got["claim_attempts"] == 1
    assert (await raw.fulfill(key, intent_id, {"claim_token": got["claim_token"]})).status == 200


async def test_admin_cancel(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    open_one = await raw.publish(key, {"goal": "g", "payload": {}})
    claimed_one = await raw.publish(key, {"goal": "g", "payload": {}, "priority": 999})
    got = await raw.claim(key, goal="g")
    assert got is not None
    assert got["id"] == claimed_one
    for intent_id in (open_one, claimed_one):
        r = await raw.admin("POST", f"/admin/intents/{intent_id}/cancel")
        assert r.status == 200
        assert r.body == {"id": intent_id, "ok": True, "status": "cancelled"}
        assert (await raw.status(key, intent_id)).body["status"] == "cancelled"
    assert await raw.claim(key, goal="g") is None
    # The worker that held the lease has lost it.
    assert_lease_lost(await raw.fulfill(key, claimed_one, {"claim_token": got["claim_token"]}))
    r = await raw.admin("POST", f"/admin/intents/{open_one}/cancel")
    assert r.status == 409
    assert "cancelled" in r.body["error"]["message"]
    r = await raw.admin("POST", "/admin/intents/nope/cancel")
    assert r.status == 404


async def test_expired_lease_makes_the_intent_claimable_again(start: StartBus) -> None:
    bus = start("--claim-timeout", "1")
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        key = bus.admin_secret
        intent_id = await raw.publish(key, {"goal": "g", "payload": {}})
        first = await raw.claim(key, goal="g")
        assert first is not None
        assert first["claim_attempts"] == 1
        again = await until(lambda: raw.claim(key, goal="g"))
        assert again["id"] == intent_id
        assert again["claim_attempts"] == 2
        assert again["claim_token"] != first["claim_token"]
        assert_lease_lost(await raw.fulfill(key, intent_id, {"claim_token": first["claim_token"]}))
        ok = await raw.fulfill(key, intent_id, {"claim_token": again["claim_token"]})
        assert ok.status == 200


async def test_expired_lease_on_the_last_attempt_makes_it_dead(start: StartBus) -> None:
    bus = start("--claim-timeout", "1")
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        key = bus.admin_secret
        intent_id = await raw.publish(key, {"goal": "g", "payload": {}, "max_attempts": 1})
        assert await raw.claim(key, goal="g") is not None

        async def is_dead() -> bool:
            return (await raw.status(key, intent_id)).body["status"] == "dead"

        await until(is_dead)
        st = await raw.status(key, intent_id)
        assert "Lease expired" in st.body["last_error"]
        assert await raw.claim(key, goal="g") is None
        dead = await raw.admin("GET", "/admin/dead", params={"goal": "g"})
        assert [d["intent_id"] for d in dead.body["dead"]] == [intent_id]
        assert (await raw.stats(key, goal="g"))[0]["dead"] == 1


async def test_release_hands_the_intent_back_without_using_an_attempt(
    bus: BusProcess, raw: RawBus
) -> None:
    key = bus.admin_secret
    intent_id = await raw.publish(key, {"goal": "g", "payload": {}, "max_attempts": 1})
    got = await raw.claim(key, goal="g")
    assert got is not None
    r = await raw.request(
        "POST", f"/release/{intent_id}", key=key, doc={"claim_token": got["claim_token"]}
    )
    assert r.status == 200
    assert r.body == {"id": intent_id, "ok": True, "status": "open"}
    again = await raw.claim(key, goal="g")
    assert again is not None
    assert again["id"] == intent_id
    assert again["claim_attempts"] == 1
    assert_lease_lost(
        await raw.request(
            "POST", f"/release/{intent_id}", key=key, doc={"claim_token": got["claim_token"]}
        )
    )


async def test_lease_survives_a_restart(start: StartBus) -> None:
    bus = start()
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        key = bus.admin_secret
        intent_id = await raw.publish(key, {"goal": "g", "payload": {"x": 1}})
        got = await raw.claim(key, goal="g")
        assert got is not None
    assert bus.stop() == 0

    bus2 = start(db=bus.db)
    async with RawBus(bus2.url, admin_secret=bus2.admin_secret) as raw:
        st = await raw.status(key, intent_id)
        assert st.body["status"] == "claimed"
        assert st.body["claim_attempts"] == 1
        # Still leased: nobody else gets it.
        assert await raw.claim(key, goal="g") is None
        f = await raw.fulfill(key, intent_id, {"claim_token": got["claim_token"], "result": 7})
        assert f.status == 200
        res = await raw.request("GET", f"/result/{intent_id}", key=key)
        assert res.body["status"] == "fulfilled"
        assert res.body["result"] == 7


async def test_lease_that_expired_while_down_is_claimable_after_restart(
    start: StartBus,
) -> None:
    bus = start("--claim-timeout", "1")
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        key = bus.admin_secret
        retried = await raw.publish(key, {"goal": "g", "payload": {}, "max_attempts": 2})
        last = await raw.publish(key, {"goal": "h", "payload": {}, "max_attempts": 1})
        first = await raw.claim(key, goal="g")
        assert first is not None
        assert await raw.claim(key, goal="h") is not None
    # Stopped cleanly: a claim is answered before its write is on disk (a claim lost
    # in a crash only means a redelivery), and this test needs the leases on disk.
    assert bus.stop() == 0
    expires = first["claim_expires_at"]
    while time.time() <= expires + 0.05:
        await asyncio.sleep(0.05)

    bus2 = start("--claim-timeout", "1", db=bus.db)
    async with RawBus(bus2.url, admin_secret=bus2.admin_secret) as raw:
        got = await raw.claim(key, goal="g")
        assert got is not None
        assert got["id"] == retried
        assert got["claim_attempts"] == 2
        assert_lease_lost(await raw.fulfill(key, retried, {"claim_token": first["claim_token"]}))
        # The other one expired on its last attempt: dead, as it would be had the bus stayed up.
        st = await raw.status(key, last)
        assert st.body["status"] == "dead"
        assert await raw.claim(key, goal="h") is None
