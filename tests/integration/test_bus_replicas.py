"""Several bus replicas on one PostgreSQL database behave as one bus.

Real bus processes on 127.0.0.1 and a real PostgreSQL the tests started: publishes on one
replica wake long-polls on another, a request replayed to another replica is refused, keys
and leases are shared, a replica SIGKILLed under load loses nothing acknowledged and no
intent is ever held by two workers at once, and a PostgreSQL restart is ridden out.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.integration.conftest import StartBus
from tests.support.busproc import BusProcess, start_bus
from tests.support.postgres import PostgresServer, postgres_bin
from tests.support.procs import free_port
from tests.support.rawbus import RawBus, Reply

#: Buses from the ``start`` fixture, on fresh PostgreSQL databases.
ON_POSTGRES = pytest.mark.parametrize("backend", ["postgres"], indirect=True)

_GONE = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


def replicas(start: StartBus, *args: str) -> tuple[BusProcess, BusProcess]:
    first = start(*args)
    return first, start(*args, db=first.db)


@ON_POSTGRES
async def test_a_publish_on_one_replica_wakes_a_long_poll_on_the_other(start: StartBus) -> None:
    a, b = replicas(start)
    key = a.admin_secret
    async with RawBus(a.url, admin_secret=key) as on_a, RawBus(b.url, admin_secret=key) as on_b:
        waiting = asyncio.create_task(on_b.claim(key, goal="wake", wait=20))
        await asyncio.sleep(0.5)  # parked on b
        assert not waiting.done()
        intent_id = await on_a.publish(key, {"goal": "wake", "payload": {"n": 1}})
        claimed = await asyncio.wait_for(waiting, 10)
        assert claimed is not None and claimed["id"] == intent_id
        # A delayed intent comes due with no transaction to announce it: b's sweep wakes it.
        waiting = asyncio.create_task(on_b.claim(key, goal="later", wait=20))
        later = await on_a.publish(key, {"goal": "later", "payload": {}, "delay": 1})
        claimed = await asyncio.wait_for(waiting, 10)
        assert claimed is not None and claimed["id"] == later


@ON_POSTGRES
async def test_a_request_replayed_to_another_replica_is_refused(start: StartBus) -> None:
    a, b = replicas(start)
    key = a.admin_secret
    now, nonce = time.time(), "replayed-nonce-1"
    doc = {"goal": "r", "payload": {}}
    async with RawBus(a.url, admin_secret=key) as on_a, RawBus(b.url, admin_secret=key) as on_b:
        first = await on_a.request("POST", "/intent", key=key, doc=doc, now=now, nonce=nonce)
        assert first.status == 201, first
        again = await on_b.request("POST", "/intent", key=key, doc=doc, now=now, nonce=nonce)
        assert again.status == 403, again
        assert "Replay" in again.body["error"]["message"]
        [entry] = await on_b.stats(key, goal="r")
        assert entry["ready"] == 1  # the replay published nothing


@ON_POSTGRES
async def test_idempotency_keys_and_rate_limits_hold_across_replicas(start: StartBus) -> None:
    a, b = replicas(start, "--rate-limit", "1", "--rate-burst", "3")
    async with RawBus(a.url, admin_secret=a.admin_secret) as on_a:
        tenant, _ = await on_a.new_key("tenant")
        doc = {"goal": "i", "payload": {"n": 1}}
        async with RawBus(b.url, admin_secret=b.admin_secret) as on_b:
            headers = {"Idempotency-Key": "order-17"}
            first = await on_a.publish(tenant, doc, headers=headers)
            again = await on_b.publish(tenant, doc, headers=headers)
            assert again == first  # the same intent, whichever replica answers
            other = await on_b.request(
                "POST", "/intent", key=tenant, doc={**doc, "payload": {"n": 2}}, headers=headers
            )
            assert other.status == 409, other
            # Three requests spent the burst (one on a, two on b): the next one waits, on a too.
            limited = await on_a.request("GET", "/stats", key=tenant)
            assert limited.status == 429, limited
            assert int(limited.headers["Retry-After"]) >= 1


@ON_POSTGRES
async def test_keys_made_or_revoked_on_one_replica_hold_on_every_replica(start: StartBus) -> None:
    a, b = replicas(start)
    async with RawBus(a.url, admin_secret=a.admin_secret) as on_a:
        secret, key_id = await on_a.new_key("tenant")
        async with RawBus(b.url, admin_secret=b.admin_secret) as on_b:
            await on_b.publish(secret, {"goal": "k", "payload": {}})
            revoked = await on_a.admin("POST", "/admin/revoke_key", {"id": key_id})
            assert revoked.status == 200, revoked

            async def refused_on_b() -> bool:
                r = await on_b.request("POST", "/intent", key=secret, doc={"goal": "k"})
                return r.status == 401

            deadline = time.monotonic() + 10
            while not await refused_on_b():
                assert time.monotonic() < deadline, "b still accepts a key revoked on a"
                await asyncio.sleep(0.1)


@ON_POSTGRES
async def test_a_wrong_key_repeated_costs_the_database_one_query(start: StartBus) -> None:
    bus = start()
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        before = await _commits(raw)
        for _ in range(200):
            r = await raw.request("GET", "/stats", key="tk_made-up-" + "0" * 30, sign=False)
            assert r.status == 401, r
        # The sweep and the key refresh also count (a few a second); 200 lookups would not fit.
        assert await _commits(raw) - before < 50
        secret, _ = await raw.new_key("late")  # a key made afterwards works at once
        assert (await raw.request("GET", "/stats", key=secret)).status == 200


async def _commits(raw: RawBus) -> float:
    """The bus's database transactions so far (``intent_bus_commits_total``)."""
    _, _, body = await raw.raw(
        "GET", "/metrics", key=None, headers={"X-Admin-Token": raw.admin_secret}
    )
    [line] = [x for x in body.decode().splitlines() if x.startswith("intent_bus_commits_total")]
    return float(line.split()[-1])


@ON_POSTGRES
async def test_claims_and_fulfils_arriving_together_share_statements_and_stay_exact(
    start: StartBus,
) -> None:
    bus = start()
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        tenant, _ = await raw.new_key("grouped")
        published = [
            await raw.publish(tenant, {"goal": "g", "payload": {"n": i}}) for i in range(40)
        ]
        before = await _commits(raw)
        # 30 single claims and 6 batch claims of up to 3 at once: 48 asked for, 40 there.
        singles = [raw.claim(tenant, goal="g") for _ in range(30)]
        batches = [
            raw.request("POST", "/claim", key=tenant, params={"goal": "g", "max": 3})
            for _ in range(6)
        ]
        got = await asyncio.gather(*singles, *batches)
        held: list[dict[str, Any]] = [c for c in got[:30] if c is not None]
        for reply in got[30:]:
            assert isinstance(reply, Reply)
            if reply.status == 200:
                assert 1 <= len(reply.body["intents"]) <= 3
                held.extend(reply.body["intents"])
            else:
                assert reply.status == 204, reply
        assert sorted(c["id"] for c in held) == sorted(published)  # each once, none missing
        # Every other fulfil carries a wrong token: only the right ones hold the lease.
        fulfils = await asyncio.gather(
            *(
                raw.fulfill(
                    tenant, c["id"], {"claim_token": c["claim_token"] if n % 2 else "0" * 32}
                )
                for n, c in enumerate(held)
            )
        )
        assert [r.status for r in fulfils] == [200 if n % 2 else 404 for n in range(len(held))]
        # 36 claims and 40 fulfils, each with its nonce, are 152 transactions one by one
        # (and 2 for /metrics); requests that arrive together share them (about 90 here).
        assert await _commits(raw) - before < 130
        states = [(await raw.status(tenant, c["id"])).body["status"] for c in held]
        assert states == ["fulfilled" if n % 2 else "claimed" for n in range(len(held))]


@ON_POSTGRES
async def test_leases_end_once_whichever_replica_sweeps_them(start: StartBus) -> None:
    a, b = replicas(start, "--claim-timeout", "1")
    key = a.admin_secret
    n = 30
    async with RawBus(a.url, admin_secret=key) as on_a, RawBus(b.url, admin_secret=key) as on_b:
        ids = {
            await on_a.publish(key, {"goal": "l", "payload": {"i": i}, "max_attempts": 2})
            for i in range(n)
        }
        for round_ in (1, 2):
            claimed = set()
            deadline = time.monotonic() + 20
            while len(claimed) < n:
                assert time.monotonic() < deadline, f"round {round_}: {len(claimed)}/{n} claimed"
                got = await on_b.claim(key, goal="l", wait=1)
                if got is not None:
                    assert got["claim_attempts"] == round_, got
                    claimed.add(got["id"])
            assert claimed == ids
        # Both leases of each intent ran out: dead once, with the reason, on either replica.
        await wait_until_dead(on_a, key, n)
        dead = await on_b.admin("GET", "/admin/dead", params={"goal": "l", "limit": 100})
        assert sorted(d["intent_id"] for d in dead.body["dead"]) == sorted(ids)
        assert {d["reason"] for d in dead.body["dead"]} == {"Lease expired on the last attempt."}


async def wait_until_dead(raw: RawBus, key: str, n: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        [entry] = await raw.stats(key, goal="l")
        if entry["dead"] == n:
            assert (entry["ready"], entry["claimed"]) == (0, 0), entry
            return
        assert time.monotonic() < deadline, entry
        await asyncio.sleep(0.2)


@dataclass
class Ledger:
    """What clients were told, as they were told it."""

    published: set[str] = field(default_factory=set)
    fulfilled: set[str] = field(default_factory=set)
    #: intent id -> (when claimed, lease end) of each claim a worker received.
    claims: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


@ON_POSTGRES
async def test_killing_one_of_two_replicas_under_load_loses_nothing_and_never_doubles(
    start: StartBus,
) -> None:
    a, b = replicas(start, "--claim-timeout", "2")
    key = a.admin_secret
    ledger = Ledger()
    stop = asyncio.Event()
    async with (
        RawBus(a.url, admin_secret=key, timeout=10) as on_a,
        RawBus(b.url, admin_secret=key, timeout=10) as on_b,
    ):
        sides = [on_a, on_b]

        async def publisher(n: int) -> None:
            i = 0
            while i < 150:
                raw = sides[(n + i) % len(sides)]
                try:
                    r = await raw.request(
                        "POST", "/intent", key=key, doc={"goal": "x", "payload": {"n": n, "i": i}}
                    )
                except _GONE:
                    sides[:] = [on_b]  # a is gone: publish on the survivor
                    await asyncio.sleep(0.05)
                    continue
                if r.status != 201:
                    ledger.errors.append(f"publish answered {r}")
                    return
                ledger.published.add(r.body["id"])
                i += 1

        async def worker(n: int) -> None:
            while not stop.is_set():
                raw = sides[n % len(sides)]
                try:
                    r = await raw.request(
                        "POST", "/claim", key=key, params={"goal": "x", "wait": 0.5}
                    )
                    if r.status == 204:
                        continue
                    got = time.time()
                    assert r.status == 200, r
                    intent_id = r.body["id"]
                    ledger.claims.setdefault(intent_id, []).append(
                        (got, r.body["claim_expires_at"])
                    )
                    f = await raw.fulfill(key, intent_id, {"claim_token": r.body["claim_token"]})
                except _GONE:
                    await asyncio.sleep(0.05)
                    continue
                if f.status == 200:
                    ledger.fulfilled.add(intent_id)
                elif f.status != 404:  # 404: its lease ran out meanwhile (a slow worker)
                    ledger.errors.append(f"fulfill answered {f}")

        publishers = [asyncio.create_task(publisher(n)) for n in range(4)]
        workers = [asyncio.create_task(worker(n)) for n in range(8)]
        await asyncio.sleep(1.5)
        a.kill()  # mid-load: requests in flight on a die with it
        await asyncio.sleep(0.5)
        sides[:] = [on_b]
        await asyncio.gather(*publishers)

        async def undone() -> set[str]:
            # A fulfil a committed just before it died never reached its worker: done all
            # the same, which b can tell.
            left = ledger.published - ledger.fulfilled
            states = [(i, (await on_b.status(key, i)).body["status"]) for i in sorted(left)]
            return {i for i, status in states if status != "fulfilled"}

        deadline = time.monotonic() + 60
        while (left := await undone()) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*workers)
        assert not ledger.errors, ledger.errors[:5]
        assert ledger.published, "nothing was published"
        # Every acknowledged publish was done, intents claimed on a when it died included
        # (their leases ran out and b handed them out again).
        assert left == set()
        for intent_id in sorted(ledger.fulfilled)[:50]:
            r = await on_b.status(key, intent_id)
            assert r.body["status"] == "fulfilled", r
        # Never two workers at once: a later claim of an intent came after the earlier lease.
        for intent_id, held in ledger.claims.items():
            held.sort()
            for (_, lease_end), (next_claim, _) in itertools.pairwise(held):
                assert next_claim >= lease_end - 0.05, (intent_id, held)
    assert a.proc.returncode == -9


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test alone, to stop and start again."""
    bindir = postgres_bin()
    assert bindir is not None, "PostgreSQL is not installed: run `make setup`"
    server = PostgresServer.create(bindir)
    try:
        yield server
    finally:
        server.close()


@ON_POSTGRES
async def test_a_postgres_restart_answers_503_with_retry_after_and_recovers(
    start: StartBus, own_postgres: PostgresServer
) -> None:
    bus = start("--db-connect-timeout", "1", db=own_postgres.new_database())
    key = bus.admin_secret
    async with RawBus(bus.url, admin_secret=key) as raw:
        before = await raw.publish(key, {"goal": "p", "payload": {}})
        await asyncio.to_thread(own_postgres.stop)
        down = await raw.request("POST", "/intent", key=key, doc={"goal": "p", "payload": {}})
        assert down.status == 503, down
        assert down.headers.get("Retry-After") == "1"
        assert down.body["error"]["code"] == "storage_unavailable"
        health = await raw.request("GET", "/health", key=None)
        assert health.body["storage"] == "unreachable"
        await asyncio.to_thread(own_postgres.start)

        async def publishes() -> bool:
            r = await raw.request("POST", "/intent", key=key, doc={"goal": "p", "payload": {}})
            return r.status == 201

        deadline = time.monotonic() + 30
        while not await publishes():
            assert time.monotonic() < deadline, "the bus did not recover after PostgreSQL did"
            await asyncio.sleep(0.2)
        assert (await raw.request("GET", "/health", key=None)).body["storage"] == "ok"
        [entry] = await raw.stats(key, goal="p")
        assert entry["ready"] == 2  # the one before, the one after; the refused one is not there
        assert (await raw.status(key, before)).body["status"] == "open"
        # Long-polls are woken again once the listening connection is back.
        waiting = asyncio.create_task(raw.claim(key, goal="after", wait=20))
        await asyncio.sleep(0.5)
        await raw.publish(key, {"goal": "after", "payload": {}})
        assert (await asyncio.wait_for(waiting, 10)) is not None


@ON_POSTGRES
async def test_a_schema_newer_than_the_bus_is_refused(start: StartBus) -> None:
    bus = start()
    assert isinstance(bus.db, str)
    conn = await asyncpg.connect(bus.db)
    try:
        await conn.execute("INSERT INTO schema_migrations (version) VALUES (999)")
    finally:
        await conn.close()
    with pytest.raises(RuntimeError, match="schema version 999, newer than this bus"):
        start_bus(bus.log_path.parent / "newer", db=bus.db, timeout=20)


@ON_POSTGRES
async def test_replicas_starting_together_migrate_once(
    start: StartBus, postgres_server: PostgresServer
) -> None:
    url = postgres_server.new_database()
    started = await asyncio.gather(*(asyncio.to_thread(start, db=url) for _ in range(3)))
    assert len({b.url for b in started}) == 3
    conn = await asyncpg.connect(url)
    try:
        versions = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
    finally:
        await conn.close()
    assert [r["version"] for r in versions] == list(range(1, len(versions) + 1))


def test_the_database_url_comes_from_a_file_and_its_password_is_never_shown(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    # The test server trusts loopback, so any password connects; it must show up nowhere.
    url = postgres_server.new_database().replace("://bus@", "://bus:pw-never-shown@")
    url_file = tmp_path / "db-url"
    url_file.write_text(url + "\n")
    unused = tmp_path / "unused.db"
    bus = start_bus(tmp_path / "bus", db=unused, extra_args=["--db-file", str(url_file)])
    try:
        assert not unused.exists()  # the file's database is the one in use
        cmdline = Path(f"/proc/{bus.proc.pid}/cmdline").read_bytes()
        assert b"pw-never-shown" not in cmdline
        assert "bus:***@127.0.0.1" in bus.logs()
    finally:
        assert bus.stop() == 0
    assert "pw-never-shown" not in bus.logs()


@pytest.mark.parametrize(
    ("content", "named"),
    [("/var/lib/bus.db\n", "must hold a postgresql:// URL"), ("", "is empty")],
)
def test_a_db_file_without_a_database_url_is_a_usage_error(
    tmp_path: Path, content: str, named: str
) -> None:
    url_file = tmp_path / "db-url"
    url_file.write_text(content)
    done = subprocess.run(
        [sys.executable, "-m", "intent_fleet.cli.main", "bus", "--dev", "--db-file", str(url_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done
    assert named in done.stderr, done.stderr


@pytest.mark.parametrize("url", ["mysql://bus:pw-never-shown@db/bus", "sqlite:///var/bus.db"])
def test_a_db_url_of_another_kind_is_a_usage_error_and_makes_no_file(
    tmp_path: Path, url: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "intent_fleet.cli.main", "bus", "--dev", "--db", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done
    assert "give a SQLite file or a postgresql:// URL" in done.stderr, done.stderr
    assert "pw-never-shown" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_database_stops_the_bus_with_the_reason(tmp_path: Path) -> None:
    url = f"postgresql://bus:pw-never-shown@127.0.0.1:{free_port()}/nothing"
    done = subprocess.run(
        [
            sys.executable, "-m", "intent_fleet.cli.main", "bus", "--dev", "--port", "0",
            "--db", url, "--db-connect-timeout", "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 1, done
    assert "cannot connect to the database postgresql://bus:***@127.0.0.1" in done.stderr
    assert "pw-never-shown" not in done.stdout + done.stderr
