"""The KV store: round trips, JSON text for non-strings, TTLs, per-key scoping, durability."""

from __future__ import annotations

import asyncio
import time

from tests.integration.conftest import StartBus
from tests.support.busproc import BusProcess
from tests.support.rawbus import RawBus, assert_error


async def kv_get(raw: RawBus, key: str, name: str) -> object:
    r = await raw.request("GET", f"/get/{name}", key=key)
    if r.status == 404:
        assert_error(r, 404, "not_found", "Key")
        return None
    assert r.status == 200, r
    return r.body["value"]


async def kv_set(raw: RawBus, key: str, name: str, value: object, **extra: object) -> None:
    r = await raw.request("POST", f"/set/{name}", key=key, doc={"value": value, **extra})
    assert r.status == 200, r
    assert r.body == {"ok": True}


async def test_set_get_round_trip_and_overwrite(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    await kv_set(raw, key, "greeting", "hello ☃")
    assert await kv_get(raw, key, "greeting") == "hello ☃"
    await kv_set(raw, key, "greeting", "bye")
    assert await kv_get(raw, key, "greeting") == "bye"
    assert await kv_get(raw, key, "never-set") is None
    # A key with a space and unicode travels percent-encoded in the path.
    await kv_set(raw, key, "a%20b%C3%A9", "spaced")
    assert await kv_get(raw, key, "a%20b%C3%A9") == "spaced"


async def test_non_string_values_are_stored_as_json_text(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    for value, stored in (
        ({"a": [1, 2]}, '{"a":[1,2]}'),
        (5, "5"),
        (1.5, "1.5"),
        (True, "true"),
        (None, "null"),
        ([], "[]"),
    ):
        await kv_set(raw, key, "v", value)
        assert await kv_get(raw, key, "v") == stored


async def test_ttl_expiry(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    await kv_set(raw, key, "short", "v", ttl=1)
    await kv_set(raw, key, "long", "v", ttl=600)
    assert await kv_get(raw, key, "short") == "v"
    deadline = time.monotonic() + 10
    while await kv_get(raw, key, "short") is not None:
        assert time.monotonic() < deadline, "a 1 s TTL did not expire"
        await asyncio.sleep(0.05)
    assert await kv_get(raw, key, "long") == "v"
    # A TTL of 0 is clamped to 1 s, not "forever" and not "already gone".
    await kv_set(raw, key, "zero", "v", ttl=0)
    assert await kv_get(raw, key, "zero") == "v"


async def test_keys_are_scoped_per_api_key(bus: BusProcess, raw: RawBus) -> None:
    alice, _ = await raw.new_key("alice")
    bob, _ = await raw.new_key("bob")
    await kv_set(raw, alice, "shared-name", "alice's")
    assert await kv_get(raw, bob, "shared-name") is None
    assert await kv_get(raw, bus.admin_secret, "shared-name") is None
    await kv_set(raw, bob, "shared-name", "bob's")
    assert await kv_get(raw, alice, "shared-name") == "alice's"
    assert await kv_get(raw, bob, "shared-name") == "bob's"


async def test_values_survive_a_restart(start: StartBus) -> None:
    bus = start()
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        await kv_set(raw, bus.admin_secret, "kept", {"n": 1})
    assert bus.stop() == 0
    bus2 = start(db=bus.db)
    async with RawBus(bus2.url, admin_secret=bus2.admin_secret) as raw:
        assert await kv_get(raw, bus2.admin_secret, "kept") == '{"n":1}'
