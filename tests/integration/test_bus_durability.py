"""Durability: SIGKILL the bus under load; whatever it acknowledged must be there after a restart.

Publishers and workers run against the real process; every 201 and every
fulfill 200 is recorded as it arrives. The bus is then killed without warning,
restarted on the same database, and every acknowledged publish must exist and
every acknowledged fulfill must be fulfilled. Nothing acknowledged may be lost,
and at-least-once delivery means every acknowledged publish is eventually
fulfilled once leases from before the crash run out.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp

from tests.integration.conftest import StartBus
from tests.support.busproc import BusProcess
from tests.support.rawbus import RawBus

#: Short leases so intents claimed when the bus died come back quickly after it restarts.
CLAIM_TIMEOUT = "2"
#: Upper bound on publishes per round, so a fast machine does not make the test slow.
MAX_PUBLISHES = 1000


@dataclass
class Acks:
    published: set[str] = field(default_factory=set)
    fulfilled: set[str] = field(default_factory=set)
    errors: list[BaseException] = field(default_factory=list)


_GONE = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


async def load_then_kill(
    bus: BusProcess, acks: Acks, *, seconds: float, graceful: bool = False
) -> None:
    """Run 8 publishers and 8 workers against ``bus``; SIGKILL it after ``seconds``
    (or SIGTERM it, when ``graceful``, and expect a clean exit)."""
    key = bus.admin_secret
    stop = asyncio.Event()
    round_published: list[str] = []

    async with RawBus(bus.url, admin_secret=key, timeout=10) as raw:

        async def publisher(n: int) -> None:
            i = 0
            while not stop.is_set() and len(round_published) < MAX_PUBLISHES:
                try:
                    r = await raw.request(
                        "POST", "/intent", key=key, doc={"goal": "d", "payload": {"p": n, "i": i}}
                    )
                except _GONE:
                    return
                if r.status != 201:  # the bus must never refuse well-formed work
                    acks.errors.append(AssertionError(f"publish answered {r}"))
                    return
                acks.published.add(r.body["id"])
                round_published.append(r.body["id"])
                i += 1

        async def worker() -> None:
            while not stop.is_set():
                try:
                    r = await raw.request("POST", "/claim", key=key, params={"goal": "d"})
                    if r.status == 204:
                        await asyncio.sleep(0.01)
                        continue
                    assert r.status == 200, r
                    intent_id = r.body["id"]
                    f = await raw.request(
                        "POST",
                        f"/fulfill/{intent_id}",
                        key=key,
                        doc={"claim_token": r.body["claim_token"], "result": {"done": intent_id}},
                    )
                except _GONE:
                    return
                if f.status == 200:
                    acks.fulfilled.add(intent_id)
                else:
                    acks.errors.append(AssertionError(f"fulfill answered {f}"))
                    return

        tasks = [asyncio.create_task(publisher(n)) for n in range(8)]
        tasks += [asyncio.create_task(worker()) for _ in range(8)]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and len(round_published) < MAX_PUBLISHES:
            await asyncio.sleep(0.05)
        # Mid-load: requests are in flight while the process dies.
        if graceful:
            code = await asyncio.to_thread(bus.stop)
            assert code == 0, bus.logs()
        else:
            bus.kill()
        stop.set()
        done, pending = await asyncio.wait(tasks, timeout=30)
        assert not pending, "clients hung after the bus died"
        for task in done:
            task.result()
    assert not acks.errors, acks.errors
    assert round_published, "nothing was published before the kill"


async def check_acknowledged(raw: RawBus, key: str, acks: Acks) -> dict[str, int]:
    """Every acknowledged publish exists; every acknowledged fulfill is fulfilled."""
    sem = asyncio.Semaphore(16)
    states: dict[str, int] = {}

    async def check(intent_id: str) -> None:
        async with sem:
            r = await raw.status(key, intent_id)
        assert r.status == 200, f"acknowledged intent {intent_id} is gone: {r}"
        status = r.body["status"]
        states[status] = states.get(status, 0) + 1
        if intent_id in acks.fulfilled:
            assert status == "fulfilled", f"acknowledged fulfill {intent_id} is {status}"
        else:
            assert status in ("open", "claimed", "fulfilled"), (intent_id, status)

    await asyncio.gather(*(check(i) for i in acks.published))
    return states


async def drain(raw: RawBus, key: str, acks: Acks) -> None:
    """Claim and fulfill (8 workers) until nothing is ready, delayed or claimed (leases
    from before a crash expire after CLAIM_TIMEOUT s); then every acknowledged publish
    must be fulfilled: at-least-once delivery lost none of them."""
    deadline = time.monotonic() + 30

    async def worker() -> None:
        while True:
            assert time.monotonic() < deadline, "the backlog never emptied"
            r = await raw.request("POST", "/claim", key=key, params={"goal": "d", "wait": 0.5})
            if r.status == 200:
                f = await raw.fulfill(key, r.body["id"], {"claim_token": r.body["claim_token"]})
                assert f.status == 200, f
                continue
            assert r.status == 204, r
            [entry] = await raw.stats(key, goal="d")
            if (entry["ready"], entry["delayed"], entry["claimed"]) == (0, 0, 0):
                return

    await asyncio.gather(*(worker() for _ in range(8)))
    states = await check_acknowledged(raw, key, acks)
    assert states == {"fulfilled": len(acks.published)}, states


async def test_acknowledged_work_survives_sigkill_under_load(start: StartBus) -> None:
    acks = Acks()
    bus = start("--claim-timeout", CLAIM_TIMEOUT)
    key = bus.admin_secret
    for _round in range(2):
        await load_then_kill(bus, acks, seconds=1.2)
        assert bus.proc.returncode == -9
        bus = start("--claim-timeout", CLAIM_TIMEOUT, db=bus.db)
        async with RawBus(bus.url, admin_secret=key) as raw:
            states = await check_acknowledged(raw, key, acks)
            assert sum(states.values()) == len(acks.published)
    assert acks.fulfilled, "no fulfill was acknowledged before the kills"

    async with RawBus(bus.url, admin_secret=key) as raw:
        await drain(raw, key, acks)
        # Fulfills acknowledged before the kills kept their results.
        for intent_id in sorted(acks.fulfilled)[:20]:
            res = await raw.request("GET", f"/result/{intent_id}", key=key)
            assert res.body["status"] == "fulfilled"
            assert res.body["result"] == {"done": intent_id}


async def test_acknowledged_work_survives_sigterm_under_load(start: StartBus) -> None:
    acks = Acks()
    bus = start("--claim-timeout", CLAIM_TIMEOUT)
    await load_then_kill(bus, acks, seconds=1.0, graceful=True)
    bus = start("--claim-timeout", CLAIM_TIMEOUT, db=bus.db)
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        states = await check_acknowledged(raw, bus.admin_secret, acks)
        assert sum(states.values()) == len(acks.published)
        await drain(raw, bus.admin_secret, acks)
