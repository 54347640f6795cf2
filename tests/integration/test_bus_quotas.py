"""Per-key quotas on a real bus: each refusal is a 429 or 507 naming the quota, and nothing
already accepted is lost or changed by it."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from intent_fleet.bus import LimitSettings
from tests.integration.conftest import StartBus
from tests.support.busproc import BusProcess
from tests.support.rawbus import RawBus, assert_error

SMALL = [
    "--max-live-intents-per-key",
    "3",
    "--max-live-bytes-per-key",
    "2000",
    "--max-goals-per-key",
    "2",
    "--max-kv-entries-per-key",
    "2",
    "--max-parked-claims-per-key",
    "1",
]


@pytest.fixture
def quota_bus(start: StartBus) -> BusProcess:
    return start(*SMALL)


async def test_live_intents_are_bounded_per_key_and_free_up_as_work_is_done(
    quota_bus: BusProcess,
) -> None:
    async with RawBus(quota_bus.url, admin_secret=quota_bus.admin_secret) as raw:
        alice, _ = await raw.new_key("alice")
        bob, _ = await raw.new_key("bob")
        ids = [await raw.publish(alice, {"goal": "g", "payload": {"n": n}}) for n in range(3)]
        r = await raw.request("POST", "/intent", key=alice, doc={"goal": "g", "payload": {}})
        assert_error(r, 429, "quota_exceeded", "3 live intents")
        assert r.headers["Retry-After"] == "5"
        # Another tenant, and the admin, are not held back by alice's quota.
        await raw.publish(bob, {"goal": "g", "payload": {}})
        await raw.publish(quota_bus.admin_secret, {"goal": "g", "payload": {}})
        # Nothing accepted was lost: alice's three are there, untouched.
        for intent_id in ids:
            r = await raw.request("GET", f"/status/{intent_id}", key=alice)
            assert r.body["status"] == "open"
        got = await raw.claim(alice, goal="g")
        assert got is not None
        await raw.fulfill(alice, got["id"], {"claim_token": got["claim_token"]})
        await raw.publish(alice, {"goal": "g", "payload": {}})  # room again


async def test_live_payload_bytes_are_bounded_per_key(quota_bus: BusProcess) -> None:
    async with RawBus(quota_bus.url, admin_secret=quota_bus.admin_secret) as raw:
        alice, _ = await raw.new_key("alice")
        big = {"goal": "g", "payload": {"blob": "x" * 1200}}
        await raw.publish(alice, big)
        r = await raw.request("POST", "/intent", key=alice, doc=big)
        assert_error(r, 507, "quota_exceeded", "bytes")
        await raw.publish(alice, {"goal": "g", "payload": {"small": 1}})


async def test_goals_are_bounded_per_key(quota_bus: BusProcess) -> None:
    async with RawBus(quota_bus.url, admin_secret=quota_bus.admin_secret) as raw:
        alice, _ = await raw.new_key("alice")
        await raw.publish(alice, {"goal": "g1", "payload": {}})
        await raw.publish(alice, {"goal": "g2", "payload": {}})
        r = await raw.request("POST", "/intent", key=alice, doc={"goal": "g3", "payload": {}})
        assert_error(r, 429, "quota_exceeded", "2 goals")
        # Another namespace is another goal too.
        doc = {"goal": "g1", "payload": {}, "namespace": "other"}
        r = await raw.request("POST", "/intent", key=alice, doc=doc)
        assert_error(r, 429, "quota_exceeded")
        await raw.publish(alice, {"goal": "g1", "payload": {}})  # an existing goal is fine


async def test_kv_entries_are_bounded_per_key(quota_bus: BusProcess) -> None:
    async with RawBus(quota_bus.url, admin_secret=quota_bus.admin_secret) as raw:
        alice, _ = await raw.new_key("alice")
        for name in ("a", "b"):
            r = await raw.request("POST", f"/set/{name}", key=alice, doc={"value": name})
            assert r.status == 200
        r = await raw.request("POST", "/set/c", key=alice, doc={"value": "c"})
        assert_error(r, 429, "quota_exceeded", "KV entries")
        r = await raw.request("POST", "/set/a", key=alice, doc={"value": "again"})
        assert r.status == 200  # overwriting takes no new entry
        r = await raw.request("GET", "/get/b", key=alice)
        assert r.body == {"value": "b"}  # nothing was lost
        # Expired entries make room without waiting for the sweep.
        r = await raw.request("POST", "/set/a", key=alice, doc={"value": "short", "ttl": 1})
        await asyncio.sleep(1.2)
        r = await raw.request("POST", "/set/c", key=alice, doc={"value": "c"})
        assert r.status == 200, r


async def test_parked_long_polls_are_bounded_per_key(quota_bus: BusProcess) -> None:
    async with RawBus(quota_bus.url, admin_secret=quota_bus.admin_secret) as raw:
        alice, _ = await raw.new_key("alice")
        parked = asyncio.create_task(raw.claim(alice, goal="idle", wait=3))
        await asyncio.sleep(0.3)
        r = await raw.request("POST", "/claim", key=alice, params={"goal": "idle", "wait": 3})
        assert_error(r, 429, "quota_exceeded", "claims waiting")
        # A claim that does not wait is not parked and not limited.
        r = await raw.request("POST", "/claim", key=alice, params={"goal": "idle"})
        assert r.status == 204
        # The parked claim still gets work, then its slot is free again.
        await raw.publish(alice, {"goal": "idle", "payload": {}})
        got = await parked
        assert got is not None
        again = asyncio.create_task(raw.claim(alice, goal="idle", wait=1))
        assert await again is None


def test_the_defaults_are_on_and_every_quota_is_a_flag() -> None:
    limits = LimitSettings()
    assert limits.rate_limit_per_second > 0
    for value in (
        limits.max_live_intents_per_key,
        limits.max_live_bytes_per_key,
        limits.max_goals_per_key,
        limits.max_kv_entries_per_key,
        limits.max_parked_claims_per_key,
    ):
        assert value > 0
    done = subprocess.run(
        [sys.executable, "-m", "intent_fleet.cli.main", "bus", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    for flag in [*SMALL[::2], "--rate-limit", "--rate-burst"]:
        assert flag in done.stdout, flag
