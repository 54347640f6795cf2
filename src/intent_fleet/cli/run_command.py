"""``intent-fleet run``: a handler, a sidecar and (unless given) a bus, on this machine.

The local, no-cluster way to use the product: start the handler command, wait
until it is ready, start an embedded bus (SQLite in a state directory) when no
``--bus-url`` is given, print how to publish, and run the sidecar. Ctrl-C
drains (in-flight work finishes and is reported), then stops every child.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from pathlib import Path

from intent_fleet.protocol import BusClient, ClientSettings
from intent_fleet.sidecar import SidecarSettings, run_sidecar

from . import loop
from .errors import UsageError
from .flags import Flag, path, register
from .local_stack import embedded_bus, start_handler, stop_handler
from .sidecar_command import FLAGS, api_key_from_args, install_drain_signals, settings_from_args

__all__ = ["RUN_FLAGS", "add_parser"]

#: The sidecar's flags, but a bus URL only when the bus is not the embedded one.
RUN_FLAGS: tuple[Flag, ...] = (
    *(f for f in FLAGS if f.name != "--bus-url"),
    Flag(
        "--bus-url",
        "INTENT_BUS_URL",
        "use this bus instead of an embedded one",
        setting="ClientSettings.base_url",
    ),
    Flag(
        "--state-dir",
        "",
        "where the embedded bus keeps its database and admin secret "
        "(default: $XDG_STATE_HOME/intent-fleet/run, else ~/.local/state/intent-fleet/run)",
        parse=path,
    ),
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="run a handler command locally with a sidecar (and an embedded bus)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="intent-fleet run --goal G --app-port P [--bus-url URL] [options] -- CMD [ARG...]",
    )
    register(p, RUN_FLAGS)
    p.add_argument("handler", nargs=argparse.REMAINDER, help="the handler command, after --")
    p.set_defaults(func=command, embedded_bus=None)


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "intent-fleet" / "run"


def command(args: argparse.Namespace) -> int:
    cmd = list(args.handler)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise UsageError("give the handler command after --, e.g. -- python handler.py")
    settings = settings_from_args(args)
    if args.state_dir is None:
        args.state_dir = _default_state_dir()
    return loop.run(_run(args, settings, cmd, embedded=args.bus_url is None))


async def _run(
    args: argparse.Namespace, settings: SidecarSettings, cmd: list[str], *, embedded: bool
) -> int:
    drain, abort = asyncio.Event(), asyncio.Event()
    install_drain_signals(drain, abort)
    async with contextlib.AsyncExitStack() as stack:
        if embedded:
            bus_url, key = await stack.enter_async_context(embedded_bus(args.state_dir))
        else:
            bus_url, key = args.bus_url, api_key_from_args(args)
        bus = await stack.enter_async_context(
            BusClient(
                settings=ClientSettings(base_url=bus_url, pool_size=settings.claim.concurrency + 8),
                api_key=key,
            )
        )
        return await _serve(
            settings,
            cmd,
            bus=bus,
            bus_url=bus_url,
            drain=drain,
            abort=abort,
            secret_file=args.state_dir / "admin-secret" if embedded else None,
        )
    raise AssertionError("unreachable")  # pragma: no cover


async def _serve(
    settings: SidecarSettings,
    cmd: list[str],
    *,
    bus: BusClient,
    bus_url: str,
    drain: asyncio.Event,
    abort: asyncio.Event,
    secret_file: Path | None,
) -> int:
    """Sidecar first (its local API URL goes to the handler), then the handler."""
    api_url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    handler: asyncio.subprocess.Process | None = None
    exit_code = 0
    async with asyncio.TaskGroup() as tasks:
        sidecar = tasks.create_task(
            run_sidecar(settings, bus=bus, drain=drain, abort=abort, on_ready=api_url.set_result)
        )
        try:
            local_api = await asyncio.wait_for(asyncio.shield(api_url), timeout=30)
            handler = await start_handler(cmd, app_port=settings.app.port, api_url=local_api)
            _print_banner(settings, bus_url=bus_url, api_url=local_api, secret_file=secret_file)
            handler_exit = tasks.create_task(handler.wait())
            await asyncio.wait({sidecar, handler_exit}, return_when=asyncio.FIRST_COMPLETED)
            if handler_exit.done():
                exit_code = handler_exit.result() or 1
                print(
                    f"intent-fleet run: the handler exited with {handler_exit.result()}; stopping",
                    file=sys.stderr,
                    flush=True,
                )
            handler_exit.cancel()
        finally:
            # The sidecar stops first (what it holds is handed back), then the handler goes.
            if not sidecar.done():
                drain.set()
                abort.set()
            await asyncio.wait({sidecar})
            if handler is not None:
                await stop_handler(handler)
    return exit_code


def _print_banner(
    settings: SidecarSettings, *, bus_url: str, api_url: str, secret_file: Path | None
) -> None:
    goal = settings.claim.goal
    where = "embedded bus" if secret_file is not None else "bus"
    print(f"intent-fleet run: {where} {bus_url}, goal {goal!r}, local API {api_url}", flush=True)
    print(
        "publish through the sidecar (no key needed on this side):\n"
        f"  curl -s -X POST {api_url}/v1/publish -H 'Content-Type: application/json' "
        f"""-d '{{"goal": "{goal}", "payload": {{"name": "you"}}}}'""",
        flush=True,
    )
    if secret_file is not None:
        print(
            "or with the CLI:\n"
            f"  INTENT_API_KEY=$(cat {secret_file}) intent-fleet publish {goal} "
            f"""'{{"name": "you"}}' --bus-url {bus_url}""",
            flush=True,
        )
