"""``intent-fleet operator``: watch IntentWorkers and run an autoscaled Deployment for each.

Needs the ``operator`` extra (kopf); it is imported only when this command runs, so the other
commands work without it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import ssl

from intent_fleet import __version__

from . import loop
from .errors import CliError, UsageError

__all__ = ["add_parser"]


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "operator",
        help="run the IntentWorker operator (needs the operator extra: kopf)",
        description=(
            "Watch IntentWorker resources; for each, server-side apply a worker Deployment "
            "(handler + native sidecar) and scale it on the goal's backlog, down to zero and "
            "back. Credentials: the pod's service account, else KUBECONFIG."
        ),
    )
    p.add_argument(
        "--namespaces",
        default=_env("INTENT_OPERATOR_NAMESPACES", ""),
        help="comma list of namespaces to watch; empty = cluster-wide "
        "[env INTENT_OPERATOR_NAMESPACES]",
    )
    p.add_argument(
        "--listen",
        default=_env("INTENT_OPERATOR_LISTEN", "127.0.0.1:8081"),
        help="host:port for /healthz and /readyz [env INTENT_OPERATOR_LISTEN]",
    )
    p.add_argument(
        "--sidecar-image",
        default=_env(
            "INTENT_OPERATOR_SIDECAR_IMAGE", f"localhost/intent-fleet/sidecar:{__version__}"
        ),
        help="sidecar image for IntentWorkers that name none [env INTENT_OPERATOR_SIDECAR_IMAGE]",
    )
    p.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=_env("INTENT_OPERATOR_LEADER_ELECTION", "true").lower() in ("1", "true", "yes"),
        help="compete for a Lease so only one replica acts [env INTENT_OPERATOR_LEADER_ELECTION]",
    )
    p.add_argument(
        "--lease-namespace",
        default=_env("POD_NAMESPACE", "intent-fleet-system"),
        help="the operator's own namespace, where the leader Lease lives [env POD_NAMESPACE]",
    )
    p.add_argument(
        "--lease-name",
        default=_env("INTENT_OPERATOR_LEASE", "intent-fleet-operator"),
        help="name of the leader Lease [env INTENT_OPERATOR_LEASE]",
    )
    p.add_argument(
        "--identity",
        default=_env("POD_NAME", socket.gethostname()),
        help="this replica's name in the Lease [env POD_NAME]",
    )
    p.add_argument(
        "--watch-timeout",
        type=float,
        default=float(_env("INTENT_OPERATOR_WATCH_TIMEOUT", "300")),
        help="seconds before a watch is re-opened [env INTENT_OPERATOR_WATCH_TIMEOUT]",
    )
    p.add_argument(
        "--credentials-opt-in",
        action=argparse.BooleanOptionalAction,
        default=_env("INTENT_OPERATOR_CREDENTIALS_OPT_IN", "true").lower() in ("1", "true", "yes"),
        help="use only Secrets and ServiceAccounts labelled intentbus.io/credentials=true; "
        "--no-credentials-opt-in lets any IntentWorker author use every Secret the operator "
        "can read in their namespace [env INTENT_OPERATOR_CREDENTIALS_OPT_IN]",
    )
    p.add_argument(
        "--backlog-allow",
        default=_env("INTENT_OPERATOR_BACKLOG_ALLOW", ""),
        help="comma list of CIDRs and host names that backlog reads may reach; empty = any "
        "address but link-local, cloud metadata and loopback, which only an entry at least "
        "as narrow admits (e.g. 127.0.0.1/32 for a bus on this host) "
        "[env INTENT_OPERATOR_BACKLOG_ALLOW]",
    )
    p.add_argument(
        "--bus-ca-file",
        default=_env("INTENT_OPERATOR_BUS_CA_FILE", "") or None,
        help="PEM CA certificates the https:// bus and Prometheus URLs of IntentWorkers are "
        "verified against (default: the system's) [env INTENT_OPERATOR_BUS_CA_FILE]",
    )
    p.add_argument(
        "--log-level",
        default=_env("INTENT_LOG_LEVEL", "info"),
        help="debug, info, warning or error [env INTENT_LOG_LEVEL]",
    )
    p.add_argument(
        "--print-rbac",
        action="store_true",
        help="print the RBAC this operator needs (for --namespaces, or cluster-wide), with "
        "its namespace and service account in --lease-namespace, and exit",
    )
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    try:
        from intent_fleet.operator.credentials import CredentialSettings  # noqa: PLC0415
        from intent_fleet.operator.egress import parse_allow_list  # noqa: PLC0415
        from intent_fleet.operator.render import RenderSettings  # noqa: PLC0415
        from intent_fleet.operator.runner import run_operator  # noqa: PLC0415
        from intent_fleet.operator.settings import (  # noqa: PLC0415
            LeaderSettings,
            OperatorSettings,
        )
        from intent_fleet.operator.sources import reader_factory  # noqa: PLC0415
    except ImportError as missing:
        raise CliError(
            f"the operator needs its extra: pip install 'intent_fleet[operator]' ({missing})"
        ) from missing
    namespaces = tuple(n.strip() for n in args.namespaces.split(",") if n.strip())
    if args.print_rbac:
        from intent_fleet.operator.rbac import render_yaml  # noqa: PLC0415

        print(render_yaml(namespaces=namespaces, operator_namespace=args.lease_namespace), end="")
        return 0
    if args.watch_timeout <= 0:
        raise UsageError(f"--watch-timeout must be > 0, got {args.watch_timeout}")
    try:
        egress = parse_allow_list(args.backlog_allow.split(","))
    except ValueError as bad:
        raise UsageError(f"--backlog-allow: {bad}") from bad
    settings = OperatorSettings(
        namespaces=namespaces,
        listen=args.listen,
        watch_server_timeout=args.watch_timeout,
        watch_client_timeout=args.watch_timeout + 30,
        render=RenderSettings(sidecar_image=args.sidecar_image)
        if args.sidecar_image
        else RenderSettings(),
        leader=LeaderSettings(
            enabled=args.leader_election,
            lease_name=args.lease_name,
            lease_namespace=args.lease_namespace,
            identity=args.identity,
        ),
        credentials=CredentialSettings(require_opt_in=args.credentials_opt_in),
        egress=egress,
        bus_ca_file=args.bus_ca_file,
    )
    try:
        settings.bus_ssl_context()
    except (OSError, ssl.SSLError) as bad:
        raise UsageError(f"--bus-ca-file {args.bus_ca_file}: {bad}") from bad

    async def main() -> int:
        stop = asyncio.Event()
        running = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            running.add_signal_handler(sig, stop.set)
        return await run_operator(settings, reader_factory, stop)

    return loop.run(main())
