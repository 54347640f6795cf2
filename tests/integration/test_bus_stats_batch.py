"""``POST /stats``: many goals' backlog in one call (batch_stats), and waiting for work on
them (backlog_wait), against a real bus process."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.integration.test_bus_stats_metrics import counts, scripted_backlog
from tests.support.busproc import BusProcess
from tests.support.rawbus import RawBus, Reply, assert_error


async def batch(raw: RawBus, key: str, doc: dict[str, Any], **kw: Any) -> Reply:
    return await raw.request("POST", "/stats", key=key, doc=doc, **kw)


def goals(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"namespace": ns, "goal": g} for ns, g in pairs]


async def test_health_lists_the_extensions(raw: RawBus) -> None:
    r = await raw.request("GET", "/health", key=None, sign=False)
    assert {"batch_stats", "backlog_wait"} <= set(r.body["features"])


async def test_every_goal_asked_is_answered_in_order_and_matches_get(
    bus: BusProcess, raw: RawBus
) -> None:
    key = bus.admin_secret
    await scripted_backlog(raw, key)
    asked = [("other", "g"), ("default", "nobody"), ("default", "g"), ("default", "h")]
    r = await batch(raw, key, {"goals": goals(*asked, ("default", "g"))})  # one asked twice
    assert r.status == 200, r
    assert isinstance(r.body["ts"], float)
    assert [counts(e) for e in r.body["goals"]] == [
        ("other", "g", 1, 0, 0, 0),
        ("default", "nobody", 0, 0, 0, 0),
        ("default", "g", 3, 2, 1, 1),
        ("default", "h", 1, 0, 0, 0),
    ]
    for entry in r.body["goals"]:  # the same figures as one GET per goal
        [one] = await raw.stats(key, namespace=entry["namespace"], goal=entry["goal"])
        assert counts(one) == counts(entry)


async def test_a_tenant_sees_its_own_and_public_work_only(bus: BusProcess, raw: RawBus) -> None:
    mine, _ = await raw.new_key("mine")
    theirs, _ = await raw.new_key("theirs")
    await raw.publish(theirs, {"goal": "g", "payload": {}})  # private to them
    await raw.publish(theirs, {"goal": "g", "payload": {}, "visibility": "public"})
    await raw.publish(mine, {"goal": "g", "payload": {}})
    [entry] = (await batch(raw, mine, {"goals": goals(("default", "g"))})).body["goals"]
    assert (entry["ready"], entry["claimed"]) == (2, 0)  # its own and the public one
    [entry] = (await batch(raw, bus.admin_secret, {"goals": goals(("default", "g"))})).body["goals"]
    assert entry["ready"] == 3


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ({}, ["'goals'"]),
        ({"goals": []}, ["'goals'", "1-1000"]),
        ({"goals": "g"}, ["'goals'"]),
        ({"goals": [{"goal": "g"}] * 1001}, ["1-1000"]),
        ({"goals": [{"goal": "g"}, 7]}, ["goals[1]", "object"]),
        ({"goals": [{"goal": "g"}, {"goal": ""}]}, ["goals[1]", "'goal'"]),
        ({"goals": [{"goal": "g", "namespace": "a b"}]}, ["goals[0]", "'namespace'"]),
        ({"goals": [{"goal": "g"}], "wait": -1}, ["'wait'"]),
        ({"goals": [{"goal": "g"}], "wait": 31}, ["'wait'"]),
        ({"goals": [{"goal": "g"}], "wait": True}, ["'wait'", "boolean"]),
    ],
    ids=repr,
)
async def test_a_bad_body_names_the_problem(
    bus: BusProcess, raw: RawBus, doc: dict[str, Any], words: list[str]
) -> None:
    r = await batch(raw, bus.admin_secret, doc)
    assert r.status == 400, r
    assert_error(r, 400, r.body["error"]["code"], *words)


async def test_waiting_answers_at_once_when_there_is_work(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    await raw.publish(key, {"goal": "g", "payload": {}})
    started = time.monotonic()
    r = await batch(raw, key, {"goals": goals(("default", "h"), ("default", "g")), "wait": 10})
    assert time.monotonic() - started < 2
    assert [e["ready"] for e in r.body["goals"]] == [0, 1]


async def test_waiting_ends_with_the_first_publish(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    watch = asyncio.create_task(
        batch(raw, key, {"goals": goals(("default", "a"), ("default", "b")), "wait": 20})
    )
    await asyncio.sleep(0.3)
    assert not watch.done()
    published = time.monotonic()
    await raw.publish(key, {"goal": "b", "payload": {}})
    r = await asyncio.wait_for(watch, 10)
    woke_after = time.monotonic() - published
    assert woke_after < 2, woke_after  # not the 20 s it was willing to wait
    assert [e["ready"] for e in r.body["goals"]] == [0, 1]


async def test_a_delayed_intent_wakes_the_watch_when_it_turns_ready(
    bus: BusProcess, raw: RawBus
) -> None:
    key = bus.admin_secret
    await raw.publish(key, {"goal": "later", "payload": {}, "delay": 1})
    started = time.monotonic()
    r = await batch(raw, key, {"goals": goals(("default", "later")), "wait": 20})
    waited = time.monotonic() - started
    assert 0.5 < waited < 5, waited
    assert r.body["goals"][0]["ready"] == 1


async def test_waiting_runs_out_with_zeros(bus: BusProcess, raw: RawBus) -> None:
    started = time.monotonic()
    r = await batch(raw, bus.admin_secret, {"goals": goals(("default", "quiet")), "wait": 0.6})
    assert time.monotonic() - started >= 0.5
    assert r.status == 200
    assert counts(r.body["goals"][0]) == ("default", "quiet", 0, 0, 0, 0)


async def test_another_tenants_private_work_does_not_wake_a_watch(
    bus: BusProcess, raw: RawBus
) -> None:
    mine, _ = await raw.new_key("mine")
    theirs, _ = await raw.new_key("theirs")
    watch = asyncio.create_task(batch(raw, mine, {"goals": goals(("default", "g")), "wait": 1.5}))
    await asyncio.sleep(0.3)
    await raw.publish(theirs, {"goal": "g", "payload": {}})  # private: not mine to see
    await asyncio.sleep(0.5)
    assert not watch.done(), "a watch woke for work its key cannot see"
    r = await asyncio.wait_for(watch, 5)
    assert r.body["goals"][0]["ready"] == 0
    # Public work is everyone's: that wakes it.
    watch = asyncio.create_task(batch(raw, mine, {"goals": goals(("default", "g")), "wait": 20}))
    await asyncio.sleep(0.3)
    await raw.publish(theirs, {"goal": "g", "payload": {}, "visibility": "public"})
    r = await asyncio.wait_for(watch, 5)
    assert r.body["goals"][0]["ready"] == 1
