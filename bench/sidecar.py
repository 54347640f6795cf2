"""Benchmark the sidecar: jobs/s through bus + sidecar + no-op handler, overhead, pickup, RSS.

Starts a real bus and a real ``intent-fleet sidecar`` process; the no-op
handler is an aiohttp server inside this process that records when each
request arrives. For each concurrency it pre-publishes intents and times how
long the sidecar takes to get them all fulfilled.

    .venv/bin/python bench/sidecar.py            # or: make bench
    .venv/bin/python bench/sidecar.py --quick

The added overhead comes from the sidecar's own histogram
``intent_sidecar_overhead_seconds`` (claim answer -> handler request, and
handler answer -> report sent), read as quantiles the way Prometheus does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.busproc import BusProcess, start_bus

from bench.bus import SignedClient, pct, rss_mib

GOAL = "bench.noop"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class NoopHandler:
    """Answers every intent at once with a tiny JSON result; notes arrival times."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}

    async def handle(self, request: web.Request) -> web.Response:
        self.arrivals[request.headers["Intent-Id"]] = time.perf_counter()
        await request.read()
        return web.json_response({"ok": True})

    async def start(self, port: int) -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner


def start_sidecar(
    bus: BusProcess, *, app_port: int, api_port: int, concurrency: int, log: Path
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "INTENT_API_KEY": bus.admin_secret}
    args = [
        sys.executable,
        "-m",
        "intent_fleet.cli",
        "sidecar",
        "--goal",
        GOAL,
        "--bus-url",
        bus.url,
        "--app-port",
        str(app_port),
        "--api-port",
        str(api_port),
        "--concurrency",
        str(concurrency),
        "--log-level",
        "warning",
    ]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"))


async def wait_ready(api: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            try:
                async with s.get(f"{api}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("sidecar did not become ready")


def histogram_quantile(text: str, name: str, phase: str, q: float) -> float:
    """Prometheus-style quantile from cumulative buckets, linear within a bucket."""
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket") and f'phase="{phase}"' in line:
            le = line.split('le="')[1].split('"')[0]
            buckets.append(
                (float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1]))
            )
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    rank = q * buckets[-1][1]
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return prev_bound
            share = (rank - prev_count) / max(1e-12, count - prev_count)
            return prev_bound + (bound - prev_bound) * share
        prev_bound, prev_count = bound, count
    return prev_bound


async def fulfilled_count(session: aiohttp.ClientSession, api: str) -> float:
    async with session.get(f"{api}/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith("intent_sidecar_intents_fulfilled_total"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def run_concurrency(
    bus: BusProcess, tmp: Path, *, concurrency: int, jobs: int, pickups: int
) -> dict[str, float]:
    handler = NoopHandler()
    app_port = free_port()
    runner = await handler.start(app_port)
    out: dict[str, float] = {}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
            client = SignedClient(session, bus.url, bus.admin_secret)
            # 1. Idle pickup: the sidecar is parked on a long-poll claim when we publish.
            api_port = free_port()
            api = f"http://127.0.0.1:{api_port}"
            sidecar = start_sidecar(
                bus,
                app_port=app_port,
                api_port=api_port,
                concurrency=concurrency,
                log=tmp / f"sidecar-{concurrency}-idle.log",
            )
            try:
                await wait_ready(api)
                samples = []
                for _ in range(pickups):
                    await asyncio.sleep(0.02)
                    t0 = time.perf_counter()
                    status, body = await client.call(
                        "POST", "/intent", {"goal": GOAL, "payload": {}}
                    )
                    assert status == 201, body
                    intent_id = json.loads(body)["id"]
                    while intent_id not in handler.arrivals:
                        await asyncio.sleep(0.0005)
                    samples.append((handler.arrivals[intent_id] - t0) * 1000)
                out["pickup_p50_ms"] = pct(samples, 0.5)
                out["pickup_p99_ms"] = pct(samples, 0.99)
            finally:
                stop(sidecar)
            # 2. Throughput: a backlog of `jobs` intents, then a fresh sidecar works it
            # off; timed from the first delivery to the last fulfill.
            sem = asyncio.Semaphore(32)

            async def publish(n: int) -> None:
                async with sem:
                    status, body = await client.call(
                        "POST", "/intent", {"goal": GOAL, "payload": {"n": n}}
                    )
                    assert status == 201, body

            await asyncio.gather(*(publish(n) for n in range(jobs)))
            handler.arrivals.clear()
            api_port = free_port()
            api = f"http://127.0.0.1:{api_port}"
            sidecar = start_sidecar(
                bus,
                app_port=app_port,
                api_port=api_port,
                concurrency=concurrency,
                log=tmp / f"sidecar-{concurrency}.log",
            )
            try:
                await wait_ready(api)
                # Watch the deliveries here, not /metrics: a scrape every few milliseconds
                # would cost the sidecar more than the work it measures (a real scrape comes
                # every 15-30 s). Only the last reports are awaited through /metrics.
                while len(handler.arrivals) < jobs:
                    await asyncio.sleep(0.001)
                while await fulfilled_count(session, api) < jobs:
                    await asyncio.sleep(0.002)
                t_end = time.perf_counter()
                t_first = min(handler.arrivals.values())
                out["jobs_per_s"] = jobs / (t_end - t_first)
                async with session.get(f"{api}/metrics") as r:
                    text = await r.text()
                for phase in ("dispatch", "report"):
                    for q in (0.5, 0.99):
                        out[f"overhead_{phase}_p{int(q * 100)}_ms"] = 1000 * histogram_quantile(
                            text, "intent_sidecar_overhead_seconds", phase, q
                        )
                out["sidecar_rss_mib"] = rss_mib(sidecar.pid)
            finally:
                stop(sidecar)
    finally:
        await runner.cleanup()
    return out


def stop(sidecar: subprocess.Popen[bytes]) -> None:
    sidecar.send_signal(signal.SIGTERM)
    try:
        sidecar.wait(timeout=30)
    except subprocess.TimeoutExpired:
        sidecar.kill()
        sidecar.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4000)
    parser.add_argument("--pickups", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.pickups, args.repeat = 600, 10, 1
    results: dict[int, list[dict[str, float]]] = {1: [], 8: [], 32: []}
    with tempfile.TemporaryDirectory(prefix="intent-bench-sidecar-") as tmp_name:
        tmp = Path(tmp_name)
        bus = start_bus(tmp / "bus")
        try:
            for _ in range(args.repeat):
                for conc in results:
                    jobs = args.jobs // 4 if conc == 1 else args.jobs
                    results[conc].append(
                        asyncio.run(
                            run_concurrency(
                                bus, tmp, concurrency=conc, jobs=jobs, pickups=args.pickups
                            )
                        )
                    )
        finally:
            bus.stop()
    medians = {
        conc: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for conc, runs in results.items()
    }
    print(f"sidecar benchmark: bus + sidecar + no-op handler, {args.repeat} run(s), medians")
    for conc, m in medians.items():
        print(
            f"  concurrency {conc:>2}: {m['jobs_per_s']:7.0f} jobs/s   overhead dispatch p50 "
            f"{m['overhead_dispatch_p50_ms']:.3f} ms p99 {m['overhead_dispatch_p99_ms']:.3f} ms, "
            f"report p50 {m['overhead_report_p50_ms']:.3f} ms "
            f"p99 {m['overhead_report_p99_ms']:.3f} ms   "
            f"pickup p50 {m['pickup_p50_ms']:.2f} ms   RSS {m['sidecar_rss_mib']:.1f} MiB"
        )
    print(json.dumps({"bench": "sidecar", "medians": {str(k): v for k, v in medians.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
