"""``intent-fleet bus``: run the Intent Bus server."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from intent_fleet.bus import (
    QUOTAS,
    WIRE_VERSIONS,
    AuthSettings,
    BusSettings,
    DatabaseSettings,
    LimitSettings,
    ListenSettings,
    QueueSettings,
    StorageSettings,
    run,
)

from .errors import UsageError
from .flags import LOG_LEVEL, Flag, build, path, register, secret_file

__all__ = ["FLAGS", "add_parser", "command"]

_LISTEN, _LIMITS, _QUEUE, _STORAGE, _DATABASE = (
    ListenSettings(),
    LimitSettings(),
    QueueSettings(),
    StorageSettings(),
    DatabaseSettings(),
)
#: What --db starts with when it names a PostgreSQL database rather than a SQLite file.
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_QUOTA_GROUP = (
    "per-key quotas (what one tenant key may hold; the admin key is exempt; 0 = no limit)"
)


def _limit(field: str, parse: Callable[[str], Any], help_text: str, group: str = "") -> Flag:
    name = field.replace("_", "-")
    return Flag(
        f"--{name}",
        f"INTENT_BUS_{field.upper()}",
        help_text,
        parse=parse,
        default=getattr(_LIMITS, field),
        setting=f"LimitSettings.{field}",
        group=group,
    )


FLAGS: tuple[Flag, ...] = (
    Flag(
        "--db",
        "INTENT_BUS_DB",
        "SQLite file (created with its directory), or a postgresql:// URL shared by replicas",
        default=str(_STORAGE.path),
    ),
    Flag(
        "--db-file",
        "INTENT_BUS_DB_FILE",
        "file holding the postgresql:// URL (keeps its password out of ps and the environment)",
        parse=path,
    ),
    Flag(
        "--db-pool-size",
        "INTENT_BUS_DB_POOL_SIZE",
        "PostgreSQL connections per replica",
        parse=int,
        default=_DATABASE.pool_size,
        setting="DatabaseSettings.pool_size",
    ),
    Flag(
        "--db-connect-timeout",
        "INTENT_BUS_DB_CONNECT_TIMEOUT",
        "seconds to wait for a PostgreSQL connection",
        parse=float,
        default=_DATABASE.connect_timeout_seconds,
        setting="DatabaseSettings.connect_timeout_seconds",
    ),
    Flag(
        "--db-statement-timeout",
        "INTENT_BUS_DB_STATEMENT_TIMEOUT",
        "seconds a PostgreSQL statement may run",
        parse=float,
        default=_DATABASE.statement_timeout_seconds,
        setting="DatabaseSettings.statement_timeout_seconds",
    ),
    Flag(
        "--host",
        "INTENT_BUS_HOST",
        "address to bind",
        default=_LISTEN.host,
        setting="ListenSettings.host",
    ),
    Flag(
        "--port",
        "INTENT_BUS_PORT",
        "port (0: any free port)",
        parse=int,
        default=_LISTEN.port,
        setting="ListenSettings.port",
    ),
    Flag(
        "--tls-cert",
        "INTENT_BUS_TLS_CERT",
        "PEM certificate chain: serve HTTPS",
        parse=path,
        setting="ListenSettings.tls_cert",
    ),
    Flag(
        "--tls-key",
        "INTENT_BUS_TLS_KEY",
        "PEM private key of --tls-cert",
        parse=path,
        setting="ListenSettings.tls_key",
    ),
    Flag(
        "--admin-secret-file",
        "INTENT_BUS_ADMIN_SECRET_FILE",
        "file holding the admin secret (else INTENT_BUS_ADMIN_SECRET)",
        parse=path,
    ),
    Flag(
        "--dev",
        "",
        "generate an admin secret and print it (local use only)",
        switch=True,
        default=False,
    ),
    Flag(
        "--require-signatures",
        "INTENT_BUS_REQUIRE_SIGNATURES",
        "refuse requests without HMAC signature headers",
        switch=True,
        default=False,
    ),
    Flag(
        "--metrics-token-file",
        "INTENT_BUS_METRICS_TOKEN_FILE",
        "file holding a bearer token for /metrics (besides the admin secret)",
        parse=path,
    ),
    Flag(
        "--metrics-public",
        "INTENT_BUS_METRICS_PUBLIC",
        "serve /metrics without a token",
        switch=True,
        default=False,
    ),
    _limit("max_payload_bytes", int, "largest intent payload, bytes (413 past it)"),
    _limit("max_result_bytes", int, "largest fulfil result, bytes (413 past it)"),
    _limit("max_json_depth", int, "deepest JSON nesting of a request body"),
    Flag(
        "--rate-limit",
        "INTENT_BUS_RATE_LIMIT",
        "requests per second per key (0: unlimited; the admin key is exempt)",
        parse=float,
        default=_LIMITS.rate_limit_per_second,
        setting="LimitSettings.rate_limit_per_second",
    ),
    Flag(
        "--rate-burst",
        "INTENT_BUS_RATE_BURST",
        "burst a key may send above --rate-limit, requests",
        parse=int,
        default=_LIMITS.rate_limit_burst,
        setting="LimitSettings.rate_limit_burst",
    ),
    *(_limit(field, int, what, _QUOTA_GROUP) for field, what in QUOTAS.items()),
    Flag(
        "--claim-timeout",
        "INTENT_BUS_CLAIM_TIMEOUT",
        "lease a claim grants, seconds",
        parse=int,
        default=_QUEUE.claim_timeout_seconds,
        setting="QueueSettings.claim_timeout_seconds",
    ),
    Flag(
        "--retention",
        "INTENT_BUS_RETENTION",
        "seconds fulfilled, dead and cancelled intents are kept",
        parse=float,
        default=_STORAGE.retention_seconds,
        setting="StorageSettings.retention_seconds",
    ),
    Flag(
        "--wire-version",
        "INTENT_BUS_WIRE_VERSION",
        "1.1: answer like a v1.1 reference server (for testing older clients)",
        default=WIRE_VERSIONS[0],
        choices=WIRE_VERSIONS,
        setting="BusSettings.wire_version",
    ),
    LOG_LEVEL,
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bus",
        help="run a durable Intent Bus server (protocol v2.1, accepts v1.1 clients)",
        description=(
            "Run the Intent Bus server. The admin secret comes from INTENT_BUS_ADMIN_SECRET "
            "or --admin-secret-file; --dev generates one and prints it. The admin secret is "
            "also a valid API key."
        ),
    )
    register(p, FLAGS)
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    secret, generated = os.environ.get("INTENT_BUS_ADMIN_SECRET", "").strip(), False
    if args.admin_secret_file is not None:
        secret = secret_file(args.admin_secret_file, "admin secret")
    if not secret:
        if not args.dev:
            raise UsageError(
                "no admin secret: set INTENT_BUS_ADMIN_SECRET, pass --admin-secret-file, "
                "or use --dev to generate one for local use"
            )
        secret, generated = "dev_" + secrets.token_hex(20), True
    url = args.db if args.db.startswith(POSTGRES_SCHEMES) else ""
    if not url and "://" in args.db:
        # Not a file name anyone means: a typo'd or unsupported database would otherwise
        # become a SQLite file named after the URL.
        raise UsageError(
            f"--db {args.db.split('://', 1)[0]}://...: give a SQLite file or a postgresql:// URL"
        )
    if args.db_file is not None:
        url = secret_file(args.db_file, "database URL")
        if not url.startswith(POSTGRES_SCHEMES):
            raise UsageError(f"--db-file {args.db_file} must hold a postgresql:// URL")
    metrics_token = ""
    if args.metrics_token_file is not None:
        metrics_token = secret_file(args.metrics_token_file, "metrics token")
    settings = build(
        FLAGS,
        lambda: BusSettings(
            listen=ListenSettings(
                host=args.host, port=args.port, tls_cert=args.tls_cert, tls_key=args.tls_key
            ),
            storage=StorageSettings(
                path=Path(args.db) if not url else _STORAGE.path, retention_seconds=args.retention
            ),
            database=DatabaseSettings(
                url=url,
                pool_size=args.db_pool_size,
                connect_timeout_seconds=args.db_connect_timeout,
                statement_timeout_seconds=args.db_statement_timeout,
            ),
            auth=AuthSettings(
                admin_secret=secret,
                require_signatures=args.require_signatures,
                metrics_token=metrics_token,
                metrics_public=args.metrics_public,
            ),
            limits=LimitSettings(
                max_payload_bytes=args.max_payload_bytes,
                max_result_bytes=args.max_result_bytes,
                max_json_depth=args.max_json_depth,
                rate_limit_per_second=args.rate_limit,
                rate_limit_burst=args.rate_burst,
                **{field: getattr(args, field) for field in QUOTAS},
            ),
            queue=QueueSettings(claim_timeout_seconds=args.claim_timeout),
            wire_version=args.wire_version,
        ),
        names={"AuthSettings.admin_secret": "the admin secret"},
    )
    if generated:
        print(f"admin secret (also an API key; --dev only): {secret}", flush=True)

    def ready(url: str) -> None:
        print(f"intent-fleet bus listening on {url}", flush=True)

    sys.stdout.flush()
    return run(settings, on_ready=ready)
