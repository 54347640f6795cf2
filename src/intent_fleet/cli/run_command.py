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
import logging
import os
import secrets
import signal
import sys
from pathlib import Path

from intent_fleet.bus import AuthSettings, BusSettings, ListenSettings, StorageSettings, serve
from intent_fleet.protocol import BusClient, ClientSettings
from intent_fleet.sidecar import SidecarSettings, run_sidecar

from . import loop
from .errors import UsageError
from .sidecar_command import add_flags, api_key_from_args, install_drain_signals, settings_from_args

__all__ = ["add_parser", "handler_environment"]

log = logging.getLogger(__name__)

#: Variables the handler must never see: they would hand it the bus.
SECRET_VARIABLES = ("INTENT_API_KEY", "INTENT_API_KEY_FILE", "INTENT_BUS_ADMIN_SECRET")
#: Seconds the handler gets to exit after SIGTERM before SIGKILL.
HANDLER_STOP_GRACE = 10.0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="run a handler command locally with a sidecar (and an embedded bus)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="intent-fleet run --goal G --app-port P [--bus-url URL] [options] -- CMD [ARG...]",
    )
    add_flags(p, skip=("--bus-url",))
    p.add_argument(
        "--bus-url",
        default=os.environ.get("INTENT_BUS_URL") or None,
        help="use this bus instead of an embedded one [env INTENT_BUS_URL]",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=_default_state_dir(),
        help="where the embedded bus keeps its database and admin secret",
    )
    p.add_argument("handler", nargs=argparse.REMAINDER, help="the handler command, after --")
    p.set_defaults(func=command, embedded_bus=None)


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "intent-fleet" / "run"


def handler_environment(environ: dict[str, str], *, app_port: int, api_url: str) -> dict[str, str]:
    """The handler's environment: ours minus every secret, plus where to listen and call."""
    env = {k: v for k, v in environ.items() if k not in SECRET_VARIABLES}
    env["PORT"] = str(app_port)
    env["INTENT_SIDECAR_URL"] = api_url
    return env


def _admin_secret(state: Path) -> str:
    """The embedded bus's admin secret, kept (0600) so restarts keep working."""
    path = state / "admin-secret"
    if path.exists():
        return path.read_text().strip()
    state.mkdir(parents=True, exist_ok=True)
    secret = "local_" + secrets.token_hex(20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret


def command(args: argparse.Namespace) -> int:
    cmd = list(args.handler)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise UsageError("give the handler command after --, e.g. -- python handler.py")
    settings = settings_from_args(args)
    return loop.run(_run(args, settings, cmd, embedded=args.bus_url is None))


async def _run(
    args: argparse.Namespace, settings: SidecarSettings, cmd: list[str], *, embedded: bool
) -> int:
    drain, abort = asyncio.Event(), asyncio.Event()
    install_drain_signals(drain, abort)
    bus_stop = asyncio.Event()
    bus_task: asyncio.Task[None] | None = None
    if embedded:
        secret = _admin_secret(args.state_dir)
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        bus_settings = BusSettings(
            listen=ListenSettings(host="127.0.0.1", port=0),
            storage=StorageSettings(path=args.state_dir / "intent-bus.db"),
            auth=AuthSettings(admin_secret=secret),
        )
        bus_task = asyncio.create_task(
            serve(bus_settings, stop=bus_stop, on_ready=ready.set_result)
        )
        bus_url = await asyncio.wait_for(asyncio.shield(ready), timeout=30)
        key = secret
    else:
        bus_url = args.bus_url
        key = api_key_from_args(args)

    api_url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    handler: asyncio.subprocess.Process | None = None
    exit_code = 0
    try:
        async with BusClient(
            settings=ClientSettings(base_url=bus_url, pool_size=settings.claim.concurrency + 8),
            api_key=key,
        ) as bus:
            sidecar = asyncio.create_task(
                run_sidecar(
                    settings, bus=bus, drain=drain, abort=abort, on_ready=api_url.set_result
                )
            )
            local_api = await asyncio.wait_for(asyncio.shield(api_url), timeout=30)
            handler = await asyncio.create_subprocess_exec(
                *cmd,
                env=handler_environment(
                    dict(os.environ), app_port=settings.app.port, api_url=local_api
                ),
                # Its own session: Ctrl-C reaches us, and we stop it after the drain.
                start_new_session=True,
            )
            _print_banner(
                settings,
                bus_url=bus_url,
                api_url=local_api,
                secret_file=args.state_dir / "admin-secret" if embedded else None,
            )
            handler_exit = asyncio.create_task(handler.wait())
            done, _ = await asyncio.wait(
                {sidecar, handler_exit}, return_when=asyncio.FIRST_COMPLETED
            )
            if handler_exit in done:
                exit_code = handler_exit.result() or 1
                print(
                    f"intent-fleet run: the handler exited with {handler_exit.result()}; stopping",
                    file=sys.stderr,
                    flush=True,
                )
                drain.set()
                abort.set()
            await sidecar
    finally:
        if handler is not None:
            await _stop(handler)
        bus_stop.set()
        if bus_task is not None:
            await bus_task
    return exit_code


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout=HANDLER_STOP_GRACE)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


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
