"""``intent-fleet sidecar``: claim for one goal and forward each intent to a local handler.

Every setting is a flag with a matching environment variable, declared once in
``FLAGS``; the README's table is rendered from the same declaration (a test
fails when they drift).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intent_fleet.protocol import (
    BusClient,
    ClientSettings,
    IntentBusAuthError,
    read_key_file,
    resolve_api_key,
)
from intent_fleet.sidecar import (
    DRAIN_HEADER,
    AppSettings,
    ClaimSettings,
    LocalApiSettings,
    OpsSettings,
    SidecarSettings,
    run_sidecar,
)

from . import loop
from .errors import UsageError

__all__ = ["FLAGS", "add_parser", "flag_table", "parse_listen", "settings_from_args"]

#: Shortest drain token accepted: it guards a pod-IP port that can stop a worker claiming.
MIN_DRAIN_TOKEN = 16


@dataclass(frozen=True)
class Flag:
    name: str
    env: str
    kind: Callable[[str], Any]
    default: Any
    help: str


_APP, _CLAIM, _API = AppSettings(), ClaimSettings(), LocalApiSettings()

FLAGS: tuple[Flag, ...] = (
    Flag("--goal", "INTENT_GOAL", str, None, "goal to claim (required)"),
    Flag("--namespace", "INTENT_NAMESPACE", str, _CLAIM.namespace, "bus namespace"),
    Flag("--bus-url", "INTENT_BUS_URL", str, "http://127.0.0.1:8080", "bus base URL"),
    Flag(
        "--api-key-file",
        "INTENT_API_KEY_FILE",
        Path,
        None,
        "file with the API key (a mounted Secret); else INTENT_API_KEY",
    ),
    Flag(
        "--ca-file",
        "INTENT_CA_FILE",
        Path,
        None,
        "PEM CA certificates an https:// bus is verified against (default: the system's)",
    ),
    Flag("--app-port", "INTENT_APP_PORT", int, _APP.port, "handler port on 127.0.0.1"),
    Flag("--app-path", "INTENT_APP_PATH", str, _APP.path, "path intents are POSTed to"),
    Flag(
        "--app-health-path",
        "INTENT_APP_HEALTH_PATH",
        str,
        _APP.health_path,
        "path answering 200 when the handler is ready (empty: port open = ready)",
    ),
    Flag(
        "--concurrency", "INTENT_CONCURRENCY", int, _CLAIM.concurrency, "intents in flight at once"
    ),
    Flag(
        "--handler-timeout",
        "INTENT_HANDLER_TIMEOUT",
        float,
        _APP.timeout_seconds,
        "seconds the handler gets per intent",
    ),
    Flag(
        "--api-port",
        "INTENT_API_PORT",
        int,
        _API.port,
        "local API port on 127.0.0.1 (0: any free port)",
    ),
    Flag(
        "--worker-id",
        "INTENT_WORKER_ID",
        str,
        None,
        "sent as X-Worker-ID (default: POD_NAME, else the host name)",
    ),
    Flag(
        "--capabilities",
        "INTENT_CAPABILITIES",
        str,
        "",
        "comma list sent as X-Worker-Capabilities",
    ),
    Flag(
        "--drain-timeout",
        "INTENT_DRAIN_TIMEOUT",
        float,
        _CLAIM.drain_timeout_seconds,
        "seconds in-flight work gets after SIGTERM or /v1/drain",
    ),
    Flag(
        "--ops-listen",
        "INTENT_OPS_LISTEN",
        str,
        "",
        "HOST:PORT of the ops listener for the kubelet, the operator and Prometheus "
        "(e.g. 0.0.0.0:9090): probes, /v1/state, /metrics and a token-guarded /v1/drain, "
        "never publish, KV or intents (empty: off)",
    ),
    Flag(
        "--drain-token",
        "INTENT_DRAIN_TOKEN",
        str,
        None,
        f"token that /v1/drain on the ops listener requires in the {DRAIN_HEADER} "
        f"header ({MIN_DRAIN_TOKEN}+ characters; unset: drain refused there). Whoever reads "
        "the pod spec sees it in the preStop hook anyway, so the env var is fine; prefer it "
        "to the flag, which ps shows",
    ),
    Flag("--log-level", "INTENT_LOG_LEVEL", str, "info", "debug, info, warning or error"),
)


def _dest(flag: Flag) -> str:
    return flag.name.removeprefix("--").replace("-", "_")


def add_flags(p: argparse.ArgumentParser, *, skip: tuple[str, ...] = ()) -> None:
    for flag in FLAGS:
        if flag.name in skip:
            continue
        env_value = os.environ.get(flag.env)
        default = flag.kind(env_value) if env_value not in (None, "") else flag.default
        p.add_argument(
            flag.name,
            dest=_dest(flag),
            type=flag.kind,
            default=default,
            help=f"{flag.help} [env {flag.env}]",
        )


def flag_table() -> str:
    """The Markdown table of flags, environment variables and defaults."""
    rows = ["| Flag | Environment | Default | Meaning |", "|---|---|---|---|"]
    for f in FLAGS:
        default = "" if f.default in (None, "") else f"`{f.default}`"
        rows.append(f"| `{f.name}` | `{f.env}` | {default} | {f.help} |")
    return "\n".join(rows)


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
    add_flags(p)
    p.set_defaults(func=command)


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


def _ops_settings(args: argparse.Namespace, problems: list[str]) -> OpsSettings:
    token = (args.drain_token or "").strip()
    if token and len(token) < MIN_DRAIN_TOKEN:
        # The value itself is never echoed: it may be nearly right.
        problems.append(f"--drain-token must be at least {MIN_DRAIN_TOKEN} characters")
    if not args.ops_listen:
        return OpsSettings(drain_token=token)
    try:
        host, port = parse_listen(args.ops_listen)
    except ValueError as exc:
        problems.append(f"--ops-listen: {exc}")
        return OpsSettings(drain_token=token)
    if port == args.api_port:
        problems.append(f"--ops-listen must use another port than --api-port ({port})")
    return OpsSettings(host=host, port=port, drain_token=token)


def settings_from_args(args: argparse.Namespace) -> SidecarSettings:
    problems: list[str] = []
    ops = _ops_settings(args, problems)
    if not args.goal:
        problems.append("--goal (or INTENT_GOAL) is required")
    if args.concurrency < 1:
        problems.append(f"--concurrency must be >= 1, got {args.concurrency}")
    if args.handler_timeout <= 0:
        problems.append(f"--handler-timeout must be > 0, got {args.handler_timeout}")
    for name in ("app_port", "api_port"):
        if not 0 <= getattr(args, name) <= 65535:
            problems.append(f"--{name.replace('_', '-')} must be 0-65535")
    if not args.app_path.startswith("/"):
        problems.append("--app-path must start with '/'")
    if args.app_health_path and not args.app_health_path.startswith("/"):
        problems.append("--app-health-path must start with '/'")
    if problems:
        raise UsageError("; ".join(problems))
    worker_id = args.worker_id or os.environ.get("POD_NAME") or socket.gethostname()
    capabilities = tuple(c.strip() for c in args.capabilities.split(",") if c.strip())
    return SidecarSettings(
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
            worker_id=worker_id,
            capabilities=capabilities,
            drain_timeout_seconds=args.drain_timeout,
        ),
        api=LocalApiSettings(port=args.api_port),
        ops=ops,
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
    try:
        return ClientSettings(
            base_url=args.bus_url,
            pool_size=pool_size,
            ca_file=str(args.ca_file) if args.ca_file else None,
        )
    except ValueError as bad:
        raise UsageError(str(bad)) from bad


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
