"""``intent-fleet demo``: a local bus with intents flowing through it, on one screen.

Starts the bus in this process (SQLite in a state directory, 127.0.0.1, a free
port), creates a tenant key, publishes sample intents, and runs a few
long-polling workers that claim, "handle" and fulfill them, one of them failing
once to show retry with backoff. A live progress line follows the backlog.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from intent_fleet.bus import AuthSettings, BusSettings, ListenSettings, StorageSettings, serve
from intent_fleet.protocol import AdminClient, BusClient, ClientSettings, IntentBusError

from . import loop

__all__ = ["add_parser"]

GOAL = "demo.greet"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="start a local bus and watch intents flow through it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--intents", type=int, default=60, help="how many to publish (default 60)")
    p.add_argument("--workers", type=int, default=4, help="concurrent workers (default 4)")
    p.add_argument(
        "--state-dir",
        type=Path,
        help="where the bus keeps its database (default: a temporary directory)",
    )
    p.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the bus up after the demo, until Ctrl-C, to try the CLI against it",
    )
    p.set_defaults(func=command)


@dataclass
class Progress:
    published: int = 0
    counts: Counter[str] = field(default_factory=Counter)

    def line(self, ready: int) -> str:
        c = self.counts
        return (
            f"published {self.published:4d} | claimed {c['claimed']:4d} | "
            f"fulfilled {c['fulfilled']:4d} | failed-and-retried {c['failed']:2d} | "
            f"ready {ready:4d}"
        )


def command(args: argparse.Namespace) -> int:
    if args.intents < 1 or args.workers < 1:
        print("intent-fleet demo: --intents and --workers must be >= 1", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        state = args.state_dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="intent-fleet-demo-"))
        )
        try:
            return loop.run(_demo(args, state))
        except KeyboardInterrupt:
            return 130
    return 0  # pragma: no cover


async def _demo(args: argparse.Namespace, state: Path) -> int:
    secret = "demo_" + secrets.token_hex(16)
    settings = BusSettings(
        listen=ListenSettings(host="127.0.0.1", port=0),
        storage=StorageSettings(path=state / "intent-bus.db"),
        auth=AuthSettings(admin_secret=secret),
    )
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    bus_task = asyncio.create_task(serve(settings, stop=stop, on_ready=ready.set_result))
    try:
        url = await asyncio.wait_for(asyncio.shield(ready), timeout=15)
        return await _drive(args, url, secret, state)
    finally:
        stop.set()
        await bus_task


async def _drive(args: argparse.Namespace, url: str, secret: str, state: Path) -> int:
    client_settings = ClientSettings(base_url=url)
    async with AdminClient(settings=client_settings, admin_secret=secret) as admin:
        key = (await admin.generate_key("demo")).api_key
    assert key is not None
    print(f"bus listening on {url} (database {state / 'intent-bus.db'})")
    print(f"tenant key created; try:  INTENT_API_KEY={key} intent-fleet stats --bus-url {url}")
    progress = Progress()
    async with BusClient(settings=client_settings, api_key=key) as bus:
        started = time.perf_counter()
        workers = [
            asyncio.create_task(_worker(bus, progress, f"worker-{n}")) for n in range(args.workers)
        ]
        ids = await _publish(bus, progress, args.intents)
        await _watch(bus, progress, total=args.intents)
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        elapsed = time.perf_counter() - started
        print(f"\nall {args.intents} intents fulfilled in {elapsed:.2f} s")
        sample = await bus.result(ids[0])
        print(f"result of {ids[0]}: {orjson.dumps(sample.result).decode()}")
        stats = await bus.stats(goal=GOAL)
        for g in stats.goals:
            print(
                f"backlog {g.namespace}/{g.goal}: ready {g.ready}, delayed {g.delayed}, "
                f"claimed {g.claimed}, dead {g.dead}"
            )
        if args.keep_running:
            print(f"bus still running on {url}; Ctrl-C to stop")
            await asyncio.Event().wait()
    return 0


async def _publish(bus: BusClient, progress: Progress, count: int) -> list[str]:
    names = ["Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret"]
    ids = []
    for n in range(count):
        payload: dict[str, Any] = {"name": names[n % len(names)], "n": n}
        if n == 3:
            payload["fail_once"] = True  # shows /fail, backoff and the retry
        receipt = await bus.publish(
            GOAL, payload, priority=200 if n % 10 == 0 else 100, backoff_base=0.2
        )
        ids.append(receipt.id)
        progress.published += 1
    return ids


async def _worker(bus: BusClient, progress: Progress, worker_id: str) -> None:
    failed_once: set[str] = set()
    while True:
        try:
            outcome = await bus.claim(GOAL, worker_id=worker_id, wait=5)
        except IntentBusError:
            await asyncio.sleep(0.2)
            continue
        intent = outcome.intent
        if intent is None:
            continue
        progress.counts["claimed"] += 1
        payload = intent.payload if isinstance(intent.payload, dict) else {}
        if payload.get("fail_once") and intent.claim_attempts == 1 and intent.id not in failed_once:
            failed_once.add(intent.id)
            await bus.fail(intent.id, claim_token=intent.claim_token, error="simulated failure")
            progress.counts["failed"] += 1
            continue
        await asyncio.sleep(0.01)  # the "work"
        greeting = f"Hello, {payload.get('name', 'world')}! (by {worker_id})"
        await bus.fulfill(intent.id, claim_token=intent.claim_token, result={"greeting": greeting})
        progress.counts["fulfilled"] += 1


async def _watch(bus: BusClient, progress: Progress, *, total: int) -> None:
    tty = sys.stdout.isatty()
    last_print = 0.0
    while True:
        stats = await bus.stats(goal=GOAL)
        ready = sum(g.ready + g.delayed for g in stats.goals)
        line = progress.line(ready)
        now = time.monotonic()
        if tty:
            print("\r" + line, end="", flush=True)
        elif now - last_print >= 1.0:
            print(line, flush=True)
            last_print = now
        if progress.counts["fulfilled"] >= total:
            if not tty:
                print(line, flush=True)
            return
        await asyncio.sleep(0.1)
