"""``intent-fleet sidecar``: claim for one goal and forward each intent to a local handler.

Every setting is a flag with a matching environment variable, declared once in ``FLAGS``
(see :mod:`.flags`); the README's table is rendered from the same declaration (a test
fails when they drift), and the settings types check the values.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket

from intent_fleet.protocol import (
    BusClient,
    ClientSettings,
    IntentBusAuthError,
    read_key_file,
    resolve_api_key,
)
from intent_fleet.sidecar import (
    DRAIN_HEADER,
    MIN_DRAIN_TOKEN,
    AppSettings,
    ClaimSettings,
    LocalApiSettings,
    OpsSettings,
    SidecarSettings,
    run_sidecar,
)

from . import loop
from .errors import UsageError
from .flags import BUS_URL, CA_FILE, LOG_LEVEL, Flag, build, comma_list, path, register

__all__ = [
    "BUS_FLAGS",
    "FLAGS",
    "add_parser",
    "parse_listen",
    "settings_from_args",
]

_APP, _CLAIM, _API = AppSettings(), ClaimSettings(), LocalApiSettings()


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[ADDR]:PORT`` for IPv6) as (host, port); ValueError says what is wrong."""
    host, sep, port_text = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"put an IPv6 address in brackets, e.g. [::]:9090, got {value!r}")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT, e.g. 0.0.0.0:9090, got {value!r}")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port must be 1-65535, got {value!r}")
    return host, int(port_text)


#: How the sidecar (and ``run``) reach the bus.
BUS_FLAGS: tuple[Flag, ...] = (
    BUS_URL,
    Flag(
        "--api-key-file",
        "INTENT_API_KEY_FILE",
        "file with the API key (a mounted Secret); else INTENT_API_KEY",
        parse=path,
    ),
    CA_FILE,
)

FLAGS: tuple[Flag, ...] = (
    Flag("--goal", "INTENT_GOAL", "goal to claim", required=True, setting="ClaimSettings.goal"),
    Flag(
        "--namespace",
        "INTENT_NAMESPACE",
        "bus namespace",
        default=_CLAIM.namespace,
        setting="ClaimSettings.namespace",
    ),
    *BUS_FLAGS,
    Flag(
        "--app-port",
        "INTENT_APP_PORT",
        "handler port on 127.0.0.1",
        parse=int,
        default=_APP.port,
        setting="AppSettings.port",
    ),
    Flag(
        "--app-path",
        "INTENT_APP_PATH",
        "path intents are POSTed to",
        default=_APP.path,
        setting="AppSettings.path",
    ),
    Flag(
        "--app-health-path",
        "INTENT_APP_HEALTH_PATH",
        "path answering 200 when the handler is ready (empty: port open = ready)",
        default=_APP.health_path,
        setting="AppSettings.health_path",
    ),
    Flag(
        "--concurrency",
        "INTENT_CONCURRENCY",
        "intents in flight at once",
        parse=int,
        default=_CLAIM.concurrency,
        setting="ClaimSettings.concurrency",
    ),
    Flag(
        "--handler-timeout",
        "INTENT_HANDLER_TIMEOUT",
        "seconds the handler gets per intent",
        parse=float,
        default=_APP.timeout_seconds,
        setting="AppSettings.timeout_seconds",
    ),
    Flag(
        "--api-port",
        "INTENT_API_PORT",
        "local API port on 127.0.0.1 (0: any free port)",
        parse=int,
        default=_API.port,
        setting="LocalApiSettings.port",
    ),
    Flag(
        "--worker-id",
        "INTENT_WORKER_ID",
        "sent as X-Worker-ID (default: POD_NAME, else the host name)",
        setting="ClaimSettings.worker_id",
    ),
    Flag(
        "--capabilities",
        "INTENT_CAPABILITIES",
        "comma list sent as X-Worker-Capabilities",
        parse=comma_list,
        default=(),
        setting="ClaimSettings.capabilities",
    ),
    Flag(
        "--drain-timeout",
        "INTENT_DRAIN_TIMEOUT",
        "seconds in-flight work gets after SIGTERM or /v1/drain",
        parse=float,
        default=_CLAIM.drain_timeout_seconds,
        setting="ClaimSettings.drain_timeout_seconds",
    ),
    Flag(
        "--ops-listen",
        "INTENT_OPS_LISTEN",
        "HOST:PORT of the ops listener for the kubelet, the operator and Prometheus "
        "(e.g. 0.0.0.0:9090): probes, /v1/state, /metrics and a token-guarded /v1/drain, "
        "never publish, KV or intents (empty: off)",
        parse=parse_listen,
        setting="SidecarSettings.ops",
    ),
    Flag(
        "--drain-token",
        "INTENT_DRAIN_TOKEN",
        f"token that /v1/drain on the ops listener requires in the {DRAIN_HEADER} "
        f"header ({MIN_DRAIN_TOKEN}+ characters; unset: drain refused there). Whoever reads "
        "the pod spec sees it in the preStop hook anyway, so the env var is fine; prefer it "
        "to the flag, which ps shows",
        parse=str.strip,
        default="",
        setting="OpsSettings.drain_token",
        secret=True,
    ),
    LOG_LEVEL,
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sidecar",
        help="claim intents for one goal and forward them to a local handler",
        description=(
            "Claim intents for one goal, forward each to the handler on 127.0.0.1, keep "
            "leases alive, report outcomes, and serve the handler's local API. SIGTERM "
            "drains: stop claiming, finish in-flight work, exit 0; a second SIGTERM hands "
            "unfinished intents back at once."
        ),
    )
    register(p, FLAGS)
    p.set_defaults(func=command)


def settings_from_args(args: argparse.Namespace) -> SidecarSettings:
    """The sidecar's settings from resolved flags; problems are usage errors naming the flag."""
    host, port = args.ops_listen or ("", OpsSettings().port)
    return build(
        FLAGS,
        lambda: SidecarSettings(
            app=AppSettings(
                port=args.app_port,
                path=args.app_path,
                health_path=args.app_health_path,
                timeout_seconds=args.handler_timeout,
            ),
            claim=ClaimSettings(
                goal=args.goal,
                namespace=args.namespace,
                concurrency=args.concurrency,
                worker_id=args.worker_id or os.environ.get("POD_NAME") or socket.gethostname(),
                capabilities=args.capabilities,
                drain_timeout_seconds=args.drain_timeout,
            ),
            api=LocalApiSettings(port=args.api_port),
            ops=OpsSettings(host=host, port=port, drain_token=args.drain_token),
        ),
    )


def api_key_from_args(args: argparse.Namespace) -> str:
    try:
        if args.api_key_file is not None:
            # A mounted Secret: the kubelet links each key to a root-owned file,
            # so the user-key-file checks (no symlink, own uid) do not apply.
            return read_key_file(args.api_key_file, uid=None, allow_symlinks=True)
        return resolve_api_key()
    except IntentBusAuthError as exc:
        raise UsageError(str(exc)) from exc


def install_drain_signals(drain: asyncio.Event, abort: asyncio.Event) -> None:
    """First SIGTERM/SIGINT drains; the second hands unfinished work back at once."""
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if drain.is_set():
            abort.set()
        drain.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal)


def client_settings_from_args(args: argparse.Namespace, *, pool_size: int) -> ClientSettings:
    return build(
        BUS_FLAGS,
        lambda: ClientSettings(
            base_url=args.bus_url,
            pool_size=pool_size,
            ca_file=str(args.ca_file) if args.ca_file else None,
        ),
    )


def command(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    client_settings_from_args(args, pool_size=1)  # a bad --bus-url or --ca-file: exit 2 now
    key = api_key_from_args(args)

    async def main() -> None:
        drain, abort = asyncio.Event(), asyncio.Event()
        install_drain_signals(drain, abort)
        client_settings = client_settings_from_args(args, pool_size=settings.claim.concurrency + 8)
        async with BusClient(settings=client_settings, api_key=key) as bus:
            await run_sidecar(
                settings,
                bus=bus,
                drain=drain,
                abort=abort,
                on_ready=lambda url: print(f"intent-fleet sidecar API on {url}", flush=True),
            )

    loop.run(main())
    return 0
