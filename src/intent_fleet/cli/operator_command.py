"""``intent-fleet operator``: watch IntentWorkers and run an autoscaled Deployment for each.

Needs the ``operator`` extra (kopf); it is imported only when this command runs, so the other
commands work without it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal

from intent_fleet.operator.egress import parse_allow_list
from intent_fleet.operator.render import RenderSettings
from intent_fleet.operator.settings import CredentialSettings, LeaderSettings, OperatorSettings
from intent_fleet.operator.status import StatusSettings

from . import loop
from .errors import CliError, UsageError
from .flags import LOG_LEVEL, Flag, build, comma_list, path, register

__all__ = ["FLAGS", "add_parser"]

_OPERATOR, _LEADER, _RENDER = OperatorSettings(), LeaderSettings(), RenderSettings()

FLAGS: tuple[Flag, ...] = (
    Flag(
        "--namespaces",
        "INTENT_OPERATOR_NAMESPACES",
        "comma list of namespaces to watch; empty = cluster-wide",
        parse=comma_list,
        default=(),
    ),
    Flag(
        "--listen",
        "INTENT_OPERATOR_LISTEN",
        "HOST:PORT for /healthz, /readyz, /metrics and the fleet page (/)",
        default=_OPERATOR.listen,
        setting="OperatorSettings.listen",
    ),
    Flag(
        "--sidecar-image",
        "INTENT_OPERATOR_SIDECAR_IMAGE",
        "sidecar image for IntentWorkers that name none",
        default=_RENDER.sidecar_image,
        setting="RenderSettings.sidecar_image",
    ),
    Flag(
        "--default-bus-url",
        "INTENT_OPERATOR_DEFAULT_BUS_URL",
        "bus URL for IntentWorkers whose spec.bus names none (the chart sets its own bus's); "
        "empty = spec.bus.url is required",
        default="",
        setting="RenderSettings.default_bus_url",
    ),
    Flag(
        "--leader-election",
        "INTENT_OPERATOR_LEADER_ELECTION",
        "compete for a Lease so only one replica acts",
        switch=True,
        default=_LEADER.enabled,
    ),
    Flag(
        "--lease-namespace",
        "POD_NAMESPACE",
        "the operator's own namespace, where the leader Lease lives",
        default=_LEADER.lease_namespace,
        setting="LeaderSettings.lease_namespace",
    ),
    Flag(
        "--lease-name",
        "INTENT_OPERATOR_LEASE",
        "name of the leader Lease",
        default=_LEADER.lease_name,
        setting="LeaderSettings.lease_name",
    ),
    Flag(
        "--identity",
        "POD_NAME",
        "this replica's name in the Lease (default: the host name)",
        setting="LeaderSettings.identity",
    ),
    Flag(
        "--watch-timeout",
        "INTENT_OPERATOR_WATCH_TIMEOUT",
        "seconds before a watch is re-opened",
        parse=float,
        default=_OPERATOR.watch_server_timeout,
        setting="OperatorSettings.watch_server_timeout",
    ),
    Flag(
        "--status-refresh-seconds",
        "INTENT_OPERATOR_STATUS_REFRESH_SECONDS",
        "an IntentWorker's status is written when something shown in it changes; the "
        "autoscaler's timestamps in it (backlogObservedTime, lastActiveTime, scaling) may "
        "fall this far behind before they are written on their own",
        parse=float,
        default=StatusSettings().refresh_seconds,
        setting="StatusSettings.refresh_seconds",
    ),
    Flag(
        "--credentials-opt-in",
        "INTENT_OPERATOR_CREDENTIALS_OPT_IN",
        "use only Secrets and ServiceAccounts labelled intentbus.io/credentials=true; "
        "--no-credentials-opt-in lets any IntentWorker author use every Secret the operator "
        "can read in their namespace",
        switch=True,
        default=CredentialSettings().require_opt_in,
    ),
    Flag(
        "--backlog-allow",
        "INTENT_OPERATOR_BACKLOG_ALLOW",
        "comma list of CIDRs and host names that backlog reads may reach; empty = any "
        "address but link-local, cloud metadata and loopback, which only an entry at least "
        "as narrow admits (e.g. 127.0.0.1/32 for a bus on this host)",
        parse=comma_list,
        default=(),
    ),
    Flag(
        "--bus-ca-file",
        "INTENT_OPERATOR_BUS_CA_FILE",
        "PEM CA certificates the https:// bus and Prometheus URLs of IntentWorkers are "
        "verified against (default: the system's)",
        parse=path,
        setting="OperatorSettings.bus_ca_file",
    ),
    LOG_LEVEL,
)


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
    register(p, FLAGS)
    p.add_argument(
        "--print-rbac",
        action="store_true",
        help="print the RBAC this operator needs (for --namespaces, or cluster-wide), with "
        "its namespace and service account in --lease-namespace, and exit",
    )
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    try:
        from intent_fleet.operator.backlog_reader import reader_factory  # noqa: PLC0415
        from intent_fleet.operator.runner import run_operator  # noqa: PLC0415
    except ImportError as missing:
        raise CliError(
            f"the operator needs its extra: pip install 'intent_fleet[operator]' ({missing})"
        ) from missing
    if args.print_rbac:
        from intent_fleet.operator.rbac import render_yaml  # noqa: PLC0415

        print(
            render_yaml(namespaces=args.namespaces, operator_namespace=args.lease_namespace),
            end="",
        )
        return 0
    try:
        egress = parse_allow_list(args.backlog_allow)
    except ValueError as bad:
        raise UsageError(f"--backlog-allow: {bad}") from bad
    settings = build(
        FLAGS,
        lambda: OperatorSettings(
            namespaces=args.namespaces,
            listen=args.listen,
            watch_server_timeout=args.watch_timeout,
            watch_client_timeout=args.watch_timeout + 30,
            render=dataclasses.replace(
                _RENDER, sidecar_image=args.sidecar_image, default_bus_url=args.default_bus_url
            ),
            leader=LeaderSettings(
                enabled=args.leader_election,
                lease_name=args.lease_name,
                lease_namespace=args.lease_namespace,
                identity=args.identity or _LEADER.identity,
            ),
            credentials=CredentialSettings(require_opt_in=args.credentials_opt_in),
            status=StatusSettings(refresh_seconds=args.status_refresh_seconds),
            egress=egress,
            bus_ca_file=str(args.bus_ca_file) if args.bus_ca_file else None,
        ),
    )

    async def main() -> int:
        stop = asyncio.Event()
        running = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            running.add_signal_handler(sig, stop.set)
        return await run_operator(settings, reader_factory, stop)

    return loop.run(main())
