"""Backlog per goal: ``/stats`` (API key) and ``/metrics`` (Prometheus text, bearer token)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.integration.conftest import StartBus
from tests.support.busproc import BusProcess
from tests.support.rawbus import RawBus, assert_error
from tests.support.scrape import assert_samples


async def scripted_backlog(raw: RawBus, key: str) -> None:
    """default/g: 3 ready, 2 delayed, 1 claimed, 1 dead, 1 fulfilled; default/h: 1 ready;
    other/g: 1 ready."""
    dead = await raw.publish(key, {"goal": "g", "payload": {}, "max_attempts": 1, "priority": 999})
    got = await raw.claim(key, goal="g")
    assert got is not None
    assert got["id"] == dead
    r = await raw.request("POST", f"/fail/{dead}", key=key, doc={"claim_token": got["claim_token"]})
    assert r.body["status"] == "dead"
    for _ in range(5):
        await raw.publish(key, {"goal": "g", "payload": {}})
    for _ in range(2):
        await raw.publish(key, {"goal": "g", "payload": {}, "delay": 3600})
    first = await raw.claim(key, goal="g")
    second = await raw.claim(key, goal="g")
    assert first is not None
    assert second is not None
    await raw.fulfill(key, first["id"], {"claim_token": first["claim_token"]})
    await raw.publish(key, {"goal": "h", "payload": {}})
    await raw.publish(key, {"goal": "g", "payload": {}, "namespace": "other"})


def counts(entry: dict[str, object]) -> tuple[object, ...]:
    return tuple(entry[k] for k in ("namespace", "goal", "ready", "delayed", "claimed", "dead"))


async def test_stats_count_every_state_per_goal(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    await scripted_backlog(raw, key)
    everything = await raw.stats(key)
    assert sorted(counts(e) for e in everything) == [
        ("default", "g", 3, 2, 1, 1),
        ("default", "h", 1, 0, 0, 0),
        ("other", "g", 1, 0, 0, 0),
    ]
    only_g = await raw.stats(key, goal="g")
    assert sorted(counts(e) for e in only_g) == [
        ("default", "g", 3, 2, 1, 1),
        ("other", "g", 1, 0, 0, 0),
    ]
    scoped = await raw.stats(key, goal="g", namespace="other")
    assert [counts(e) for e in scoped] == [("other", "g", 1, 0, 0, 0)]
    # Another tenant sees none of it: these are the admin key's private intents.
    tenant, _ = await raw.new_key()
    assert await raw.stats(tenant) == []


async def test_stats_follow_claims_to_empty(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    await scripted_backlog(raw, key)
    while (got := await raw.claim(key, goal="g")) is not None:
        await raw.fulfill(key, got["id"], {"claim_token": got["claim_token"]})
    [entry] = await raw.stats(key, goal="g", namespace="default")
    # The still-claimed intent from the script, the delayed ones and the dead one remain.
    assert counts(entry) == ("default", "g", 0, 2, 1, 1)
    assert entry["oldest_ready_age_seconds"] == 0


async def test_stats_survive_a_restart(start: StartBus) -> None:
    bus = start()
    key = bus.admin_secret
    async with RawBus(bus.url, admin_secret=key) as raw:
        await scripted_backlog(raw, key)
        before = sorted(counts(e) for e in await raw.stats(key))
    assert bus.stop() == 0
    bus2 = start(db=bus.db)
    async with RawBus(bus2.url, admin_secret=key) as raw:
        assert sorted(counts(e) for e in await raw.stats(key)) == before


async def test_oldest_ready_age_grows(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    published = time.time()
    await raw.publish(key, {"goal": "g", "payload": {}})
    deadline = time.monotonic() + 5

    async def age() -> float:
        [entry] = await raw.stats(key, goal="g")
        return float(entry["oldest_ready_age_seconds"])

    while (seen := await age()) <= 0:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert 0 < seen <= time.time() - published + 0.01


async def test_unknown_goal_has_an_empty_backlog(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    assert await raw.stats(key, goal="nobody-publishes-this") == [
        {
            "namespace": "default",
            "goal": "nobody-publishes-this",
            "ready": 0,
            "delayed": 0,
            "claimed": 0,
            "dead": 0,
            "oldest_ready_age_seconds": 0.0,
        }
    ]
    [entry] = await raw.stats(key, goal="x", namespace="ns2")
    assert counts(entry) == ("ns2", "x", 0, 0, 0, 0)
    assert await raw.stats(key) == []
    assert_error(await raw.request("GET", "/stats", key=None), 401, "unauthorized")
    r = await raw.request("GET", "/stats", key=key, params={"namespace": "bad ns"})
    assert_error(r, 400, "invalid_namespace")


async def metrics_text(raw: RawBus, headers: dict[str, str]) -> tuple[int, str]:
    status, resp_headers, body = await raw.raw("GET", "/metrics", key=None, headers=headers)
    if status == 200:
        assert resp_headers["Content-Type"].startswith("text/plain")
    return status, body.decode()


async def test_metrics_need_a_bearer_token_or_a_key(bus: BusProcess, raw: RawBus) -> None:
    tenant, _ = await raw.new_key()
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": bus.admin_secret},  # no "Bearer "
        {"Authorization": "Bearer tk_revoked_or_never_issued"},
    ):
        r = await raw.request("GET", "/metrics", key=None, headers=headers)
        assert_error(r, 401, "unauthorized", "Bearer")
    r = await raw.request("GET", "/metrics", key=None, headers={"X-API-KEY": "tk_nobody"})
    assert_error(r, 401, "unauthorized")
    for headers in (
        {"Authorization": f"Bearer {bus.admin_secret}"},
        {"X-Admin-Token": bus.admin_secret},
        {"Authorization": f"Bearer {tenant}"},  # a tenant's own view
    ):
        status, _ = await metrics_text(raw, headers)
        assert status == 200, headers
    # X-API-KEY goes through the protocol's checks (signed here by RawBus).
    r = await raw.request("GET", "/metrics", key=tenant)
    assert r.status == 200


async def test_a_tenant_sees_only_what_it_could_claim(bus: BusProcess, raw: RawBus) -> None:
    alice, _ = await raw.new_key("alice")
    bob, _ = await raw.new_key("bob")
    await raw.publish(alice, {"goal": "alice-payroll", "payload": {}})  # private by default
    await raw.publish(alice, {"goal": "shared", "payload": {}, "visibility": "public"})
    await raw.publish(bob, {"goal": "bob-secret", "payload": {}})
    await raw.publish(bob, {"goal": "bob-secret", "payload": {}})

    seen = sorted(counts(e) for e in await raw.stats(bob))
    assert seen == [("default", "bob-secret", 2, 0, 0, 0), ("default", "shared", 1, 0, 0, 0)]
    # Asking for another tenant's goal by name answers what any empty goal answers.
    [probe] = await raw.stats(bob, goal="alice-payroll")
    assert counts(probe) == ("default", "alice-payroll", 0, 0, 0, 0)

    status, text = await metrics_text(raw, {"Authorization": f"Bearer {bob}"})
    assert status == 200
    assert "alice-payroll" not in text
    assert_samples(
        text,
        'intent_bus_backlog{namespace="default",goal="bob-secret",state="ready"} 2',
        'intent_bus_backlog{namespace="default",goal="shared",state="ready"} 1',
        'intent_bus_intents_total{status="open",namespace="default"} 3',
        'intent_bus_intents{status="open",namespace="default"} 3',
    )
    # Nothing about the process or others' traffic in a tenant's view.
    for family in ("intent_bus_commits_total", "intent_bus_responses_total", "kv_entries"):
        assert family not in text
    assert "process_resident_memory_bytes" not in text
    status, everything = await metrics_text(raw, {"Authorization": f"Bearer {bus.admin_secret}"})
    assert_samples(
        everything,
        'intent_bus_backlog{namespace="default",goal="alice-payroll",state="ready"} 1',
        'intent_bus_intents_total{status="open",namespace="default"} 4',
    )
    assert "process_resident_memory_bytes" in everything


async def test_metrics_report_backlog_per_goal(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    await scripted_backlog(raw, key)
    await raw.publish(key, {"goal": 'quote " and \\ back', "payload": {}})
    status, text = await metrics_text(raw, {"Authorization": f"Bearer {key}"})
    assert status == 200
    assert_samples(
        text,
        'intent_bus_backlog{namespace="default",goal="g",state="ready"} 3',
        'intent_bus_backlog{namespace="default",goal="g",state="delayed"} 2',
        'intent_bus_backlog{namespace="default",goal="g",state="claimed"} 1',
        'intent_bus_backlog{namespace="default",goal="h",state="ready"} 1',
        'intent_bus_backlog{namespace="other",goal="g",state="ready"} 1',
        'intent_bus_backlog{namespace="default",goal="quote \\" and \\\\ back",state="ready"} 1',
        'intent_bus_intents_total{status="open",namespace="default"} 7',
        'intent_bus_intents_total{status="claimed",namespace="default"} 1',
        'intent_bus_intents_total{status="fulfilled",namespace="default"} 1',
        'intent_bus_intents_total{status="dead",namespace="default"} 1',
        'intent_bus_intents_total{status="open",namespace="other"} 1',
        "intent_bus_dead_letters_total 1",
        "intent_bus_dead_letters 1",
        "intent_bus_claims_total 3",
    )
    lines = text.splitlines()
    assert "# TYPE intent_bus_backlog gauge" in lines
    assert "# TYPE intent_bus_intents gauge" in lines
    # The reference server's names stay, untyped: a gauge must not be named like a counter.
    assert "# TYPE intent_bus_intents_total untyped" in lines
    assert "# TYPE intent_bus_claims_total counter" in lines


async def test_metrics_token_file_and_public_metrics(start: StartBus, tmp_path: Path) -> None:
    token_file = tmp_path / "metrics-token"
    token_file.write_text("scrape-me\n")
    bus = start("--metrics-token-file", str(token_file))
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        status, text = await metrics_text(raw, {"Authorization": "Bearer scrape-me"})
        assert status == 200
        assert "intent_bus_uptime_seconds" in text
        status, _ = await metrics_text(raw, {"Authorization": "Bearer scrape-me-not"})
        assert status == 401
        # Non-ASCII tokens are refused, not a 500.
        status, _ = await metrics_text(raw, {"Authorization": "Bearer scrape-m\u00e9"})
        assert status == 401
    public = start("--metrics-public")
    async with RawBus(public.url, admin_secret=public.admin_secret) as raw:
        status, text = await metrics_text(raw, {})
        assert status == 200
        assert "# TYPE intent_bus_intents gauge" in text
