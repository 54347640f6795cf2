"""Benchmark the bus dashboard: page weight, the overview it polls, and its first render.

Starts a real ``intent-fleet bus`` (SQLite) on 127.0.0.1, publishes ``--intents`` intents over
``--goals`` goals, then measures the ``/admin/dashboard/overview`` answer (what the page
fetches every second) and, in headless Chromium, the time from opening the page with a
session to the goals table showing every goal. Prints a table, then one JSON line.

    .venv/bin/python bench/dashboard.py            # 200 goals, 10,000 live intents
    .venv/bin/python bench/dashboard.py --quick    # 20 goals, 500 intents, for a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.browser import chromium
from tests.support.busproc import BusProcess, start_bus
from tests.support.rawbus import RawBus


async def fill(bus: BusProcess, *, goals: int, intents: int) -> None:
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        # As the admin: tenant quotas and rate limits are policies, not what is measured.
        key = bus.admin_secret
        queue = list(range(intents))

        async def publisher() -> None:
            while queue:
                n = queue.pop()
                await raw.publish(key, {"goal": f"goal-{n % goals:04d}", "payload": {"n": n}})

        await asyncio.gather(*(publisher() for _ in range(16)))


async def overview_ms(bus: BusProcess, rounds: int) -> list[float]:
    headers = {"X-Admin-Token": bus.admin_secret}
    samples = []
    async with aiohttp.ClientSession() as http:
        for _ in range(rounds):
            t0 = time.perf_counter()
            async with http.get(bus.url + "/admin/dashboard/overview", headers=headers) as r:
                await r.read()
                assert r.status == 200
            samples.append((time.perf_counter() - t0) * 1000)
    return samples


async def first_render_ms(bus: BusProcess, *, goals: int, rounds: int) -> tuple[list[float], int]:
    """Opening the page (a session held) to every goal's row on screen; and the page's bytes."""
    samples = []
    async with chromium() as browser:
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(bus.url + "/admin/dashboard")
        await page.fill("#password", bus.admin_secret)
        await page.click("#login-form button[type=submit]")
        await page.wait_for_selector(f"#goals tbody tr:nth-child({goals})")
        for _ in range(rounds):
            t0 = time.perf_counter()
            answer = await page.goto(bus.url + "/admin/dashboard")
            await page.wait_for_selector(f"#goals tbody tr:nth-child({goals})")
            samples.append((time.perf_counter() - t0) * 1000)
        assert answer is not None
        weight = len(await answer.body())
    return samples, weight


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goals", type=int, default=200)
    parser.add_argument("--intents", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="small counts")
    args = parser.parse_args()
    if args.quick:
        args.goals, args.intents, args.rounds = 20, 500, 5
    with tempfile.TemporaryDirectory(prefix="intent-bench-") as tmp:
        bus = start_bus(Path(tmp) / "bus")
        try:
            asyncio.run(fill(bus, goals=args.goals, intents=args.intents))
            overview = asyncio.run(overview_ms(bus, args.rounds))
            render, weight = asyncio.run(
                first_render_ms(bus, goals=args.goals, rounds=max(3, args.rounds // 4))
            )
        finally:
            bus.stop()
    medians = {
        "page_bytes": weight,
        "overview_p50_ms": statistics.median(overview),
        "overview_max_ms": max(overview),
        "first_render_p50_ms": statistics.median(render),
        "first_render_max_ms": max(render),
    }
    print(f"dashboard benchmark: {args.goals} goals, {args.intents} live intents, medians")
    print(f"  page weight        {weight / 1024:.1f} KiB")
    print(
        f"  overview answer    p50 {medians['overview_p50_ms']:.1f} ms"
        f"   max {medians['overview_max_ms']:.1f} ms"
    )
    print(
        f"  first render       p50 {medians['first_render_p50_ms']:.1f} ms"
        f"   max {medians['first_render_max_ms']:.1f} ms  (open to every goal on screen)"
    )
    print(json.dumps({"bench": "dashboard", "medians": medians}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
