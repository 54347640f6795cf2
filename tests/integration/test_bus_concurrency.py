"""Concurrency: many claimers never get the same intent twice, and nothing is left behind.

The claim timeout is the default 60 s, so no lease can expire during a test:
any intent handed out twice would be a real double delivery, not a retry.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from tests.support.busproc import BusProcess
from tests.support.rawbus import RawBus

TOTAL = 2000
CLAIMERS = 16


async def publish_many(raw: RawBus, key: str, *, goal: str, total: int, workers: int) -> set[str]:
    ids: set[str] = set()
    counter = iter(range(total))

    async def publisher() -> None:
        for i in counter:
            ids.add(await raw.publish(key, {"goal": goal, "payload": {"i": i}}))

    await asyncio.gather(*(publisher() for _ in range(workers)))
    assert len(ids) == total
    return ids


async def test_concurrent_claimers_each_intent_exactly_once(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    published = await publish_many(raw, key, goal="c", total=TOTAL, workers=16)
    handed_out: list[str] = []
    fulfilled: set[str] = set()

    async def claimer() -> None:
        while True:
            r = await raw.request("POST", "/claim", key=key, params={"goal": "c"})
            if r.status == 204:
                return
            assert r.status == 200, r
            intent_id = r.body["id"]
            assert r.body["claim_attempts"] == 1
            handed_out.append(intent_id)
            f = await raw.fulfill(key, intent_id, {"claim_token": r.body["claim_token"]})
            assert f.status == 200, f
            fulfilled.add(intent_id)

    await asyncio.gather(*(claimer() for _ in range(CLAIMERS)))
    duplicates = [i for i, n in Counter(handed_out).items() if n > 1]
    assert not duplicates, f"handed out more than once: {duplicates[:5]}"
    assert fulfilled == published
    [entry] = await raw.stats(key, goal="c")
    assert (entry["ready"], entry["delayed"], entry["claimed"], entry["dead"]) == (0, 0, 0, 0)
    for intent_id in list(published)[:10]:
        assert (await raw.status(key, intent_id)).body["status"] == "fulfilled"


async def test_long_poll_claimers_racing_publishers(bus: BusProcess, raw: RawBus) -> None:
    """Claimers park (wait=1) while publishers run: hand-overs and ordinary claims
    interleave, and still every intent goes to exactly one claimer."""
    key = bus.admin_secret
    total = 600
    handed_out: list[str] = []
    publishing = asyncio.create_task(publish_many(raw, key, goal="lp", total=total, workers=4))

    async def claimer() -> None:
        while True:
            r = await raw.request("POST", "/claim", key=key, params={"goal": "lp", "wait": 1})
            if r.status == 204:
                if publishing.done():
                    return
                continue
            assert r.status == 200, r
            handed_out.append(r.body["id"])
            f = await raw.fulfill(key, r.body["id"], {"claim_token": r.body["claim_token"]})
            assert f.status == 200, f

    await asyncio.gather(*(claimer() for _ in range(CLAIMERS)))
    published = await publishing
    # A claimer may give up just as the last publish lands: sweep up after them.
    while (got := await raw.claim(key, goal="lp")) is not None:
        handed_out.append(got["id"])
    assert sorted(handed_out) == sorted(published)
    [entry] = await raw.stats(key, goal="lp")
    assert (entry["ready"], entry["claimed"]) == (0, 0)


async def test_racing_lease_calls_settle_once(bus: BusProcess, raw: RawBus) -> None:
    """Concurrent fulfill/fail/release with one token: exactly one of them wins."""
    key = bus.admin_secret
    for round_ in range(20):
        intent_id = await raw.publish(key, {"goal": f"race-{round_}", "payload": {}})
        got = await raw.claim(key, goal=f"race-{round_}")
        assert got is not None
        token = {"claim_token": got["claim_token"]}
        calls = [
            raw.request("POST", f"/fulfill/{intent_id}", key=key, doc=token),
            raw.request("POST", f"/fail/{intent_id}", key=key, doc=token),
            raw.request("POST", f"/release/{intent_id}", key=key, doc=token),
            raw.request("POST", f"/fulfill/{intent_id}", key=key, doc=token),
        ]
        replies = await asyncio.gather(*calls)
        assert sorted(r.status for r in replies) == [200, 404, 404, 404], replies
