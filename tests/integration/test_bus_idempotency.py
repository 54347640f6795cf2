"""Idempotency-Key: a replay answers as the first publish did, across concurrency and restarts."""

from __future__ import annotations

import asyncio

from tests.integration.conftest import StartBus
from tests.support.busproc import BusProcess
from tests.support.rawbus import RawBus, assert_error

DOC = {"goal": "g", "payload": {"order": 17}}


async def test_same_key_same_body_is_one_intent(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    headers = {"Idempotency-Key": "order-17"}
    first = await raw.request("POST", "/intent", key=key, doc=DOC, headers=headers)
    second = await raw.request("POST", "/intent", key=key, doc=DOC, headers=headers)
    assert first.status == second.status == 201
    assert first.body == second.body
    got = await raw.claim(key, goal="g")
    assert got is not None
    assert got["id"] == first.body["id"]
    assert await raw.claim(key, goal="g") is None
    # Still the same answer once the intent is claimed (and later fulfilled).
    third = await raw.request("POST", "/intent", key=key, doc=DOC, headers=headers)
    assert third.body["id"] == first.body["id"]
    await raw.fulfill(key, got["id"], {"claim_token": got["claim_token"]})
    fourth = await raw.request("POST", "/intent", key=key, doc=DOC, headers=headers)
    assert fourth.body["id"] == first.body["id"]
    assert await raw.claim(key, goal="g") is None


async def test_same_key_other_body_is_409(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    headers = {"Idempotency-Key": "order-18"}
    first = await raw.request("POST", "/intent", key=key, doc=DOC, headers=headers)
    assert first.status == 201
    other = {"goal": "g", "payload": {"order": 18}}
    r = await raw.request("POST", "/intent", key=key, doc=other, headers=headers)
    assert_error(r, 409, "idempotency_conflict", "Idempotency-Key")
    assert await raw.claim(key, goal="g") is not None
    assert await raw.claim(key, goal="g") is None


async def test_concurrent_replays_share_one_intent(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    headers = {"Idempotency-Key": "burst"}
    replies = await asyncio.gather(
        *(raw.request("POST", "/intent", key=key, doc=DOC, headers=headers) for _ in range(20))
    )
    assert {r.status for r in replies} == {201}
    assert len({r.body["id"] for r in replies}) == 1
    assert await raw.claim(key, goal="g") is not None
    assert await raw.claim(key, goal="g") is None


async def test_keys_are_scoped_per_api_key(bus: BusProcess, raw: RawBus) -> None:
    alice, _ = await raw.new_key("alice")
    bob, _ = await raw.new_key("bob")
    headers = {"Idempotency-Key": "shared-name"}
    a = await raw.request("POST", "/intent", key=alice, doc=DOC, headers=headers)
    b = await raw.request("POST", "/intent", key=bob, doc=DOC, headers=headers)
    assert a.status == b.status == 201
    assert a.body["id"] != b.body["id"]
    # And without a key every publish is new.
    assert await raw.publish(alice, DOC) != await raw.publish(alice, DOC)


async def test_replay_survives_a_restart(start: StartBus) -> None:
    bus = start()
    headers = {"Idempotency-Key": "before-restart"}
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        key = bus.admin_secret
        first = await raw.request("POST", "/intent", key=key, doc=DOC, headers=headers)
        assert first.status == 201
    assert bus.stop() == 0

    bus2 = start(db=bus.db)
    async with RawBus(bus2.url, admin_secret=bus2.admin_secret) as raw:
        again = await raw.request("POST", "/intent", key=key, doc=DOC, headers=headers)
        assert again.status == 201
        assert again.body["id"] == first.body["id"]
        other = {"goal": "g", "payload": {"changed": True}}
        r = await raw.request("POST", "/intent", key=key, doc=other, headers=headers)
        assert_error(r, 409, "idempotency_conflict")
        got = await raw.claim(key, goal="g")
        assert got is not None
        assert got["id"] == first.body["id"]
        assert await raw.claim(key, goal="g") is None
