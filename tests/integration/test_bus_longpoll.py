"""Long-poll claims (``wait=S``): hand-over, timeouts, visibility, disconnects, shutdown."""

from __future__ import annotations

import asyncio
import time

from tests.integration.conftest import StartBus
from tests.support import scrape
from tests.support.busproc import BusProcess
from tests.support.rawbus import RawBus, Reply
from tests.support.sidecar_rig import until


async def parked(raw: RawBus) -> int:
    """How many claims the bus has parked right now (from /metrics)."""
    status, _, body = await raw.raw(
        "GET", "/metrics", key=None, headers={"Authorization": f"Bearer {raw.admin_secret}"}
    )
    assert status == 200
    return int(scrape.value(body.decode(), "intent_bus_long_poll_waiting"))


async def until_parked(raw: RawBus, count: int, *, timeout: float = 10.0) -> None:
    async def parked_now() -> bool:
        return await parked(raw) == count

    await until(parked_now, timeout=timeout, every=0.02, what=f"{count} claims parked")


def long_poll(raw: RawBus, key: str, wait: float, **params: str) -> asyncio.Task[Reply]:
    return asyncio.create_task(
        raw.request("POST", "/claim", key=key, params={"wait": str(wait), **params})
    )


async def test_parked_claim_gets_an_intent_published_while_it_waits(
    bus: BusProcess, raw: RawBus
) -> None:
    key = bus.admin_secret
    started = time.monotonic()
    waiting = long_poll(raw, key, 5, goal="g")
    await until_parked(raw, 1)
    assert not waiting.done()
    intent_id = await raw.publish(key, {"goal": "g", "payload": {"hello": 1}})
    r = await waiting
    assert r.status == 200
    assert r.body["id"] == intent_id
    assert r.body["payload"] == {"hello": 1}
    assert time.monotonic() - started < 5
    assert await parked(raw) == 0
    # The handed-over intent is properly claimed: the token fulfills it.
    token = r.body["claim_token"]
    assert (await raw.fulfill(key, intent_id, {"claim_token": token})).status == 200


async def test_wait_with_nothing_to_claim_is_204_after_the_wait(
    bus: BusProcess, raw: RawBus
) -> None:
    started = time.monotonic()
    r = await raw.request("POST", "/claim", key=bus.admin_secret, params={"goal": "g", "wait": 1})
    elapsed = time.monotonic() - started
    assert r.status == 204
    assert r.headers["Retry-After"] == "1"
    assert 0.9 <= elapsed < 10
    assert await parked(raw) == 0


async def test_parked_claim_without_goal_takes_any_goal(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    waiting = long_poll(raw, key, 5)
    other_ns = long_poll(raw, key, 1, namespace="elsewhere")
    await until_parked(raw, 2)
    intent_id = await raw.publish(key, {"goal": "anything", "payload": {}})
    r = await waiting
    assert r.status == 200
    assert r.body["id"] == intent_id
    assert (await other_ns).status == 204


async def test_parked_claims_respect_visibility_and_filters(bus: BusProcess, raw: RawBus) -> None:
    alice, _ = await raw.new_key("alice")
    bob, _ = await raw.new_key("bob")
    bob_waits = long_poll(raw, bob, 1, goal="g")
    await until_parked(raw, 1)
    alice_waits = long_poll(raw, alice, 5, goal="g")
    await until_parked(raw, 2)
    # Bob parked first, but the intent is Alice's and private.
    private = await raw.publish(alice, {"goal": "g", "payload": {}})
    r = await alice_waits
    assert r.status == 200
    assert r.body["id"] == private
    assert (await bob_waits).status == 204

    gpu_waits = asyncio.create_task(
        raw.request(
            "POST",
            "/claim",
            key=bob,
            params={"goal": "g", "wait": "5"},
            headers={"X-Worker-Capabilities": "gpu"},
        )
    )
    await until_parked(raw, 1)
    plain_waits = long_poll(raw, bob, 5, goal="g")
    await until_parked(raw, 2)
    gpu_job = await raw.publish(
        alice, {"goal": "g", "payload": {}, "visibility": "public", "required_capability": "gpu"}
    )
    plain_job = await raw.publish(alice, {"goal": "g", "payload": {}, "visibility": "public"})
    # The first parked claim takes the first intent it may take.
    assert (await gpu_waits).body["id"] == gpu_job
    assert (await plain_waits).body["id"] == plain_job


async def test_many_parked_claims_each_get_a_different_intent(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    waiting = [long_poll(raw, key, 10, goal="g") for _ in range(10)]
    await until_parked(raw, 10)
    published = {await raw.publish(key, {"goal": "g", "payload": {"i": i}}) for i in range(10)}
    replies = await asyncio.gather(*waiting)
    assert {r.status for r in replies} == {200}
    assert {r.body["id"] for r in replies} == published


async def test_parked_claim_gets_a_delayed_intent_when_it_is_due(
    bus: BusProcess, raw: RawBus
) -> None:
    key = bus.admin_secret
    intent_id = await raw.publish(key, {"goal": "g", "payload": {}, "delay": 0.3})
    r = await raw.request("POST", "/claim", key=key, params={"goal": "g", "wait": "5"})
    assert r.status == 200
    assert r.body["id"] == intent_id


async def test_a_client_that_hangs_up_does_not_swallow_an_intent(
    bus: BusProcess, raw: RawBus
) -> None:
    key = bus.admin_secret
    # Hang up, let the bus notice, then publish.
    task = long_poll(raw, key, 20, goal="g")
    await until_parked(raw, 1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await until_parked(raw, 0)
    first = await raw.publish(key, {"goal": "g", "payload": {}})
    got = await raw.claim(key, goal="g")
    assert got is not None
    assert got["id"] == first
    assert got["claim_attempts"] == 1

    # Hang up and publish at once: the bus may hand the intent to the dead claim
    # before it notices; it must then put it back with its attempt refunded.
    task = long_poll(raw, key, 20, goal="g")
    await until_parked(raw, 1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    second = await raw.publish(key, {"goal": "g", "payload": {}})
    got = await until(
        lambda: raw.claim(key, goal="g"), timeout=10, what="the intent back from the vanished claim"
    )
    assert got["id"] == second
    assert got["claim_attempts"] == 1


async def test_no_intent_is_stranded_when_a_wait_ends_as_it_is_handed_over(
    bus: BusProcess,
) -> None:
    """Claims time out while intents keep arriving: each intent either reaches a
    waiting client or stays claimable. (A deadline that fired just after the
    hand-over used to drop the intent, leaving it claimed by nobody.)"""
    key = bus.admin_secret
    # One session for the waiters, whose connection pool they fill; the publisher
    # then gets a connection each time a waiter's deadline frees one, so publishes
    # land right at those deadlines.
    async with RawBus(bus.url, admin_secret=key) as raw:
        for round_ in range(3):
            goal = f"race-{round_}"
            delivered: list[str] = []
            published: list[str] = []

            async def waiter(goal: str = goal, delivered: list[str] = delivered) -> None:
                r = await raw.request("POST", "/claim", key=key, params={"goal": goal, "wait": 0.5})
                if r.status == 200:
                    delivered.append(r.body["id"])

            async def publisher(goal: str = goal, published: list[str] = published) -> None:
                await asyncio.sleep(0.3)
                end = time.monotonic() + 0.6
                while time.monotonic() < end:
                    published.append(await raw.publish(key, {"goal": goal, "payload": {}}))

            await asyncio.gather(*(waiter() for _ in range(100)), publisher())
            left: list[str] = []
            while (got := await raw.claim(key, goal=goal)) is not None:
                left.append(got["id"])
            assert len(delivered) + len(left) == len(published)
            assert set(delivered) | set(left) == set(published)


async def test_shutdown_answers_parked_claims(start: StartBus) -> None:
    bus = start()
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        task = long_poll(raw, bus.admin_secret, 25, goal="g")
        await until_parked(raw, 1)
        started = time.monotonic()
        code = await asyncio.to_thread(bus.stop)
        r = await task
        assert code == 0
        assert r.status == 204
        assert time.monotonic() - started < 15
