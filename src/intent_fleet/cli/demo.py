"""``intent-fleet demo -- CMD...``: a local worker fleet of one, with intents flowing through it.

Starts an embedded bus (SQLite in a state directory), the handler command and
a sidecar in front of it (exactly what ``intent-fleet run`` does), publishes
sample intents, and follows them to the end on a live progress line: some
make the handler answer "busy" first, one makes it fail until it is dead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from intent_fleet.protocol import BusClient, ClientSettings
from intent_fleet.sidecar import (
    AppSettings,
    ClaimSettings,
    LocalApiSettings,
    SidecarMetrics,
    SidecarSettings,
    run_sidecar,
)

from . import loop
from .errors import UsageError
from .flags import QUIET_LOG_LEVEL, register
from .local_stack import embedded_bus, start_handler, stop_handler

__all__ = ["add_parser"]

GOAL = "demo.greet"
NAMES = ("Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Edsger", "Frances")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="run a handler with a sidecar and an embedded bus, and watch intents flow",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="intent-fleet demo [--intents N] [--concurrency C] -- CMD [ARG...]",
    )
    p.add_argument("--intents", type=int, default=40, help="how many to publish (default 40)")
    p.add_argument("--concurrency", type=int, default=4, help="intents in flight (default 4)")
    p.add_argument(
        "--state-dir",
        type=Path,
        help="where the bus keeps its database (default: a temporary directory)",
    )
    register(p, (QUIET_LOG_LEVEL,))
    p.add_argument("handler", nargs=argparse.REMAINDER, help="the handler command, after --")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    cmd = list(args.handler)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise UsageError(
            "give the handler command after --, e.g. -- python examples/handlers/python/handler.py"
        )
    if args.intents < 2 or args.concurrency < 1:
        raise UsageError("--intents must be >= 2 and --concurrency >= 1")
    with contextlib.ExitStack() as stack:
        state = args.state_dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="intent-fleet-demo-"))
        )
        try:
            return loop.run(_demo(args, cmd, state))
        except KeyboardInterrupt:
            return 130
    return 0  # pragma: no cover


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _demo(args: argparse.Namespace, cmd: list[str], state: Path) -> int:
    settings = SidecarSettings(
        app=AppSettings(port=_free_port(), timeout_seconds=30),
        claim=ClaimSettings(goal=GOAL, concurrency=args.concurrency, worker_id="demo"),
        api=LocalApiSettings(port=0),
    )
    metrics = SidecarMetrics()
    drain, abort = asyncio.Event(), asyncio.Event()
    async with embedded_bus(state) as (bus_url, secret):
        print(f"bus      {bus_url}  (database {state / 'intent-bus.db'})", flush=True)
        print(
            f"dashboard {bus_url}/admin/dashboard  (password: the admin secret in"
            f" {state / 'admin-secret'})",
            flush=True,
        )
        async with BusClient(settings=ClientSettings(base_url=bus_url), api_key=secret) as bus:
            api_url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            # A sidecar that fails cancels the demo at once instead of leaving it waiting.
            async with asyncio.TaskGroup() as tasks:
                sidecar = tasks.create_task(
                    run_sidecar(
                        settings,
                        bus=bus,
                        drain=drain,
                        abort=abort,
                        on_ready=api_url.set_result,
                        metrics=metrics,
                    )
                )
                handler = None
                try:
                    local_api = await asyncio.wait_for(asyncio.shield(api_url), timeout=30)
                    handler = await start_handler(
                        cmd,
                        app_port=settings.app.port,
                        api_url=local_api,
                        log=state / "handler.log",
                    )
                    where = f"127.0.0.1:{settings.app.port}"
                    print(f"sidecar  {local_api}  -> handler on {where}: {' '.join(cmd)}")
                    print(f"handler log {state / 'handler.log'}", flush=True)
                    started = time.perf_counter()
                    ids = await _publish(bus, args.intents)
                    print(f"published {len(ids)} intents to {GOAL!r}", flush=True)
                    await _follow(bus, metrics, total=len(ids), handler=handler)
                    elapsed = time.perf_counter() - started
                    await _summary(bus, ids, elapsed)
                finally:
                    drain.set()
                    await asyncio.wait({sidecar})
                    if handler is not None:
                        await stop_handler(handler)
    return 0


async def _publish(bus: BusClient, count: int) -> list[str]:
    ids = []
    for n in range(count):
        payload: dict[str, Any] = {"name": NAMES[n % len(NAMES)]}
        if n % 7 == 3:
            payload["busy_first"] = True  # answered 503 once: retried, no attempt burned
        if n == count - 1:
            payload["fail"] = "this one always fails"  # three attempts, then a dead letter
        receipt = await bus.publish(GOAL, payload, backoff_base=0.2, max_attempts=3)
        ids.append(receipt.id)
    return ids


async def _follow(
    bus: BusClient, metrics: SidecarMetrics, *, total: int, handler: asyncio.subprocess.Process
) -> None:
    tty = sys.stdout.isatty()
    last_print = 0.0
    while True:
        stats = await bus.stats(goal=GOAL)
        dead = sum(g.dead for g in stats.goals)
        waiting = sum(g.ready + g.delayed for g in stats.goals)
        fulfilled = int(metrics.value("intent_sidecar_intents_fulfilled_total"))
        busy = int(metrics.value("intent_sidecar_handler_busy_total"))
        failures = int(metrics.total("intent_sidecar_intents_failed_total"))
        line = (
            f"fulfilled {fulfilled:4d}/{total} | waiting {waiting:4d} | "
            f"handler busy answers {busy:3d} | failures {failures:2d} | dead {dead}"
        )
        now = time.monotonic()
        finished = fulfilled + dead >= total
        if tty:
            print("\r" + line, end="\n" if finished else "", flush=True)
        elif finished or now - last_print >= 1.0:
            print(line, flush=True)
            last_print = now
        if finished:
            return
        if handler.returncode is not None:
            raise UsageError(f"the handler exited with {handler.returncode} during the demo")
        await asyncio.sleep(0.1)


async def _summary(bus: BusClient, ids: list[str], elapsed: float) -> None:
    print(f"done in {elapsed:.2f} s")
    first = await bus.result(ids[0])
    print(f"result of {ids[0]}: {orjson.dumps(first.result).decode()}")
    last = await bus.status(ids[-1])
    attempts = f"{last.claim_attempts} attempts"
    print(f"status of {ids[-1]}: {last.status} after {attempts} ({last.last_error})")
    for g in (await bus.stats(goal=GOAL)).goals:
        print(
            f"backlog {g.namespace}/{g.goal}: ready {g.ready}, delayed {g.delayed}, "
            f"claimed {g.claimed}, dead {g.dead}"
        )
