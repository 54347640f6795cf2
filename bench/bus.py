"""Benchmark the bus server: publishes/s, claim+fulfill cycles/s, claim and long-poll latency.

Starts a real ``intent-fleet bus`` (signatures required, so every request is
HMAC-checked) on 127.0.0.1 in a temporary directory and drives it with signed
clients from this process, as a tenant key (a fresh one per run), so every
per-key check a worker fleet meets is on the measured path. The per-key rate
limit is a policy, not a cost: it is off here (``--rate-limit 0``), so the
figures are the bus's capacity. Prints a table, then one JSON line for machines.

With a PostgreSQL database (``--db postgresql://...``, or ``--postgres`` for a throwaway
server on loopback, started and stopped here) the same figures are taken for one and for
two bus replicas sharing it, with SQLite in the same run for comparison. With two
replicas, clients alternate between them, and the long-poll pickup is measured with the
claim waiting on one replica and the publish sent to the other.

    .venv/bin/python bench/bus.py              # or: make bench
    .venv/bin/python bench/bus.py --postgres   # SQLite, PostgreSQL x1, PostgreSQL x2
    .venv/bin/python bench/bus.py --quick      # smaller counts, for a smoke run

Client, servers and database share the machine's cores, as they would on a small node;
figures are medians of --repeat runs, the setups taking turns (SQLite, x1, x2, SQLite, ...)
so that a noisy spell of the machine does not favour one of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.busproc import BusProcess, start_bus
from tests.support.postgres import PostgresServer, postgres_bin

from intent_fleet.protocol.signing import canonical_body, canonical_path, sign_request


class SignedClient:
    """The thinnest signed client: what a tuned worker does per request."""

    def __init__(self, session: aiohttp.ClientSession, base: str, key: str) -> None:
        self._session = session
        self._base = base
        self._key = key

    async def call(
        self,
        method: str,
        path: str,
        doc: Any = None,
        timeout: float = 60.0,
        admin_token: str | None = None,
    ) -> tuple[int, bytes]:
        body = canonical_body(doc)
        headers = sign_request(
            api_key=self._key, method=method, path=path, body=body, now=time.time()
        ).as_dict()
        headers["Content-Type"] = "application/json"
        if admin_token is not None:
            headers["X-Admin-Token"] = admin_token
        async with self._session.request(
            method,
            self._base + path,
            data=body or None,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            return resp.status, await resp.read()


def pct(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_workers(count: int, worker: Callable[[], Awaitable[None]]) -> float:
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(count)))
    return time.perf_counter() - start


class Replicas:
    """Signed clients of each bus replica; worker ``n`` sends every request to one of them."""

    def __init__(self, clients: list[SignedClient]) -> None:
        self.clients = clients
        self._next = 0

    def pick(self) -> SignedClient:
        self._next += 1
        return self.clients[self._next % len(self.clients)]


async def publish_rate(replicas: Replicas, *, goal: str, total: int, concurrency: int) -> float:
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        client = replicas.pick()
        while remaining > 0:
            remaining -= 1
            status, body = await client.call(
                "POST", "/intent", {"goal": goal, "payload": {"n": remaining, "pad": "x" * 64}}
            )
            assert status == 201, (status, body)

    return total / await run_workers(concurrency, worker)


async def cycle_rate(
    replicas: Replicas, *, goal: str, total: int, concurrency: int
) -> tuple[float, list[float]]:
    """Pre-publish ``total`` intents, then claim+fulfill them all; returns cycles/s, claim ms."""
    await publish_rate(replicas, goal=goal, total=total, concurrency=32)
    claim_path = canonical_path("/claim", {"goal": goal})
    latencies: list[float] = []
    done = 0

    async def worker() -> None:
        nonlocal done
        client = replicas.pick()
        while True:
            t0 = time.perf_counter()
            status, body = await client.call("POST", claim_path)
            latencies.append((time.perf_counter() - t0) * 1000)
            if status == 204:
                return
            assert status == 200, (status, body)
            intent = orjson.loads(body)
            status, body = await client.call(
                "POST", f"/fulfill/{intent['id']}", {"claim_token": intent["claim_token"]}
            )
            assert status == 200, (status, body)
            done += 1

    elapsed = await run_workers(concurrency, worker)
    assert done == total, f"fulfilled {done} of {total}"
    return done / elapsed, latencies


async def pickup_latency(replicas: Replicas, *, goal: str, rounds: int) -> list[float]:
    """Publish while a long-poll claim waits (on another replica, when there are two); ms
    from publish sent to claim answered."""
    path = canonical_path("/claim", {"goal": goal, "wait": 30})
    client, publisher = replicas.clients[-1], replicas.clients[0]
    samples: list[float] = []
    for _ in range(rounds):
        waiter = asyncio.create_task(client.call("POST", path))
        await asyncio.sleep(0.005)  # let the claim reach the bus and start waiting
        t0 = time.perf_counter()
        status, _ = await publisher.call("POST", "/intent", {"goal": goal, "payload": {}})
        assert status == 201
        status, body = await waiter
        samples.append((time.perf_counter() - t0) * 1000)
        assert status == 200, status
        intent = orjson.loads(body)
        await client.call(
            "POST", f"/fulfill/{intent['id']}", {"claim_token": intent["claim_token"]}
        )
    return samples


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def one_run(buses: list[BusProcess], args: argparse.Namespace, run: str) -> dict[str, float]:
    """One round of every figure; ``run`` names its goals and key, apart from other runs'."""
    out: dict[str, float] = {}
    first = buses[0]
    connector = aiohttp.TCPConnector(limit=128)
    async with aiohttp.ClientSession(connector=connector) as session:
        admin = SignedClient(session, first.url, first.admin_secret)
        status, body = await admin.call(
            "POST",
            "/admin/generate_key",
            {"owner": f"bench-{run}"},
            admin_token=first.admin_secret,
        )
        assert status == 201, (status, body)
        key = orjson.loads(body)["api_key"]
        replicas = Replicas([SignedClient(session, bus.url, key) for bus in buses])
        for conc in (1, 8, 32):
            total = args.publishes // 4 if conc == 1 else args.publishes
            out[f"publish_per_s_c{conc}"] = await publish_rate(
                replicas, goal=f"pub-{run}-{conc}", total=total, concurrency=conc
            )
        for conc in (1, 8, 32):
            total = args.cycles // 4 if conc == 1 else args.cycles
            rate, lat = await cycle_rate(
                replicas, goal=f"cyc-{run}-{conc}", total=total, concurrency=conc
            )
            out[f"cycles_per_s_c{conc}"] = rate
            out[f"claim_p50_ms_c{conc}"] = pct(lat, 0.50)
            out[f"claim_p99_ms_c{conc}"] = pct(lat, 0.99)
        pickup = await pickup_latency(replicas, goal=f"lp-{run}", rounds=args.pickups)
        out["pickup_p50_ms"] = pct(pickup, 0.50)
        out["pickup_p99_ms"] = pct(pickup, 0.99)
    out["bus_rss_mib"] = max(rss_mib(bus.proc.pid) for bus in buses)
    return out


BUS_ARGS = ["--require-signatures", "--rate-limit", "0"]


@dataclass
class Setup:
    """One configuration measured: its buses, and the figures of each run."""

    name: str
    buses: list[BusProcess]
    #: The PostgreSQL database's URL; None for SQLite.
    db: str | None = None
    runs: list[dict[str, float]] = field(default_factory=list)

    def result(self) -> dict[str, Any]:
        median = {k: statistics.median(r[k] for r in self.runs) for k in self.runs[0]}
        return {
            "name": self.name,
            "replicas": len(self.buses),
            "medians": median,
            "runs": self.runs,
        }


def start_setup(name: str, tmp: Path, *, db: str | None, replicas: int) -> Setup:
    """``replicas`` buses on ``db`` (None: one on a SQLite file)."""
    setup = Setup(name, [], db)
    try:
        for n in range(replicas):
            setup.buses.append(
                start_bus(
                    tmp / f"{name}-{n}",
                    db=db,
                    admin_secret=setup.buses[0].admin_secret if setup.buses else None,
                    extra_args=BUS_ARGS,
                )
            )
    except BaseException:
        stop_setup(setup)
        raise
    return setup


def stop_setup(setup: Setup) -> None:
    for bus in setup.buses:
        bus.stop()


def measure(setups: list[Setup], args: argparse.Namespace) -> None:
    """Run each setup in turn, ``--repeat`` times round (A B C A B C ...), so a slow spell
    of a shared machine falls on every setup alike rather than on whichever ran then; a
    PostgreSQL setup's database is vacuumed after each of its runs."""
    for run in range(args.repeat):
        for setup in setups:
            tag = f"{setup.name.replace(' ', '')}-{run}"
            setup.runs.append(asyncio.run(one_run(setup.buses, args, tag)))
            if setup.db is not None:
                asyncio.run(vacuum(setup.db))


async def vacuum(url: str) -> None:
    """Clean up after a run, untimed, so the dead rows it left are not vacuumed by
    autovacuum during the next setup's run (on the same server) and counted against it."""
    import asyncpg  # noqa: PLC0415 - only with a PostgreSQL setup

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM (ANALYZE)")
    finally:
        await conn.close()


def print_table(result: dict[str, Any]) -> None:
    median = result["medians"]
    print(f"  {result['name']}")
    print(
        f"    publishes/s      c1 {median['publish_per_s_c1']:7.0f}   "
        f"c8 {median['publish_per_s_c8']:7.0f}   c32 {median['publish_per_s_c32']:7.0f}"
    )
    for conc in (1, 8, 32):
        print(
            f"    claim+fulfill/s  c{conc:<3} {median[f'cycles_per_s_c{conc}']:7.0f}   "
            f"claim p50 {median[f'claim_p50_ms_c{conc}']:6.2f} ms   "
            f"p99 {median[f'claim_p99_ms_c{conc}']:6.2f} ms"
        )
    print(
        f"    long-poll pickup p50 {median['pickup_p50_ms']:6.2f} ms   "
        f"p99 {median['pickup_p99_ms']:6.2f} ms"
        + ("   (claim on one replica, publish on the other)" if result["replicas"] > 1 else "")
    )
    print(f"    bus RSS          {median['bus_rss_mib']:.1f} MiB (largest replica)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publishes", type=int, default=6000)
    parser.add_argument("--cycles", type=int, default=6000)
    parser.add_argument("--pickups", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small counts, one run")
    parser.add_argument(
        "--db", default="", help="a postgresql:// URL: also measure one and two replicas on it"
    )
    parser.add_argument(
        "--postgres", action="store_true", help="the same on a throwaway PostgreSQL started here"
    )
    args = parser.parse_args()
    if args.quick:
        args.publishes, args.cycles, args.pickups, args.repeat = 1000, 1000, 30, 1
    server: PostgresServer | None = None
    setups: list[Setup] = []
    with tempfile.TemporaryDirectory(prefix="intent-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        try:
            setups.append(start_setup("SQLite", tmp, db=None, replicas=1))
            url = args.db
            if args.postgres and not url:
                bindir = postgres_bin()
                assert bindir is not None, "PostgreSQL is not installed: run `make setup`"
                server = PostgresServer.create(bindir)
            for replicas in (1, 2) if (url or server) else ():
                # With --postgres each setup has its own database; with --db they share it
                # (each run uses its own key and goals).
                db = server.new_database() if server is not None else url
                name = f"PostgreSQL x{replicas}"
                setups.append(start_setup(name, tmp, db=db, replicas=replicas))
            measure(setups, args)
        finally:
            for setup in setups:
                stop_setup(setup)
            if server is not None:
                server.close()
    results = [setup.result() for setup in setups]
    print(f"bus benchmark: signatures required, a tenant key, {args.repeat} run(s), medians")
    for result in results:
        print_table(result)
    print(json.dumps({"bench": "bus", "medians": results[0]["medians"], "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
