"""``intent-fleet bus``: run the Intent Bus server."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

from intent_fleet.bus import (
    MIN_ADMIN_SECRET_CHARS,
    AuthSettings,
    BusSettings,
    LimitSettings,
    ListenSettings,
    QueueSettings,
    StorageSettings,
    run,
)

from .errors import UsageError

__all__ = ["add_parser", "command"]

_LIMITS, _QUEUE, _STORAGE = LimitSettings(), QueueSettings(), StorageSettings()

#: The per-key quotas: each a LimitSettings field and the flag of the same name.
QUOTAS = (
    ("max_live_intents_per_key", "open and claimed intents a key may have published (429 past it)"),
    ("max_live_bytes_per_key", "payload bytes of those intents, kept in memory (507 past it)"),
    ("max_goals_per_key", "distinct namespace/goal pairs among those intents (429 past it)"),
    ("max_kv_entries_per_key", "unexpired KV entries of a key (429 past it)"),
    ("max_parked_claims_per_key", "long-poll claims of a key waiting at once (429 past it)"),
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
    p.add_argument("--log-level", default="info", help="debug, info, warning or error")
    p.add_argument("--db", type=Path, default=Path("intent-bus.db"), help="SQLite file (created)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (0 = any free port)")
    p.add_argument("--tls-cert", type=Path, help="PEM certificate chain: serve HTTPS")
    p.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    p.add_argument("--admin-secret-file", type=Path, help="file holding the admin secret")
    p.add_argument("--dev", action="store_true", help="generate and print an admin secret")
    p.add_argument(
        "--require-signatures", action="store_true", help="refuse requests without HMAC headers"
    )
    p.add_argument("--metrics-token-file", type=Path, help="file holding a /metrics bearer token")
    p.add_argument("--metrics-public", action="store_true", help="serve /metrics without a token")
    p.add_argument("--max-payload-bytes", type=int, default=_LIMITS.max_payload_bytes)
    p.add_argument("--max-result-bytes", type=int, default=_LIMITS.max_result_bytes)
    p.add_argument("--max-json-depth", type=int, default=_LIMITS.max_json_depth)
    p.add_argument(
        "--rate-limit",
        type=float,
        default=_LIMITS.rate_limit_per_second,
        help="requests per second per key (0 = unlimited; the admin key is exempt)",
    )
    p.add_argument("--rate-burst", type=int, default=_LIMITS.rate_limit_burst)
    quotas = p.add_argument_group(
        "per-key quotas", "what one tenant key may hold (the admin key is exempt; 0 = no limit)"
    )
    for field, what in QUOTAS:
        quotas.add_argument(
            "--" + field.replace("_", "-"), type=int, default=getattr(_LIMITS, field), help=what
        )
    p.add_argument(
        "--claim-timeout",
        type=int,
        default=_QUEUE.claim_timeout_seconds,
        help="lease granted by a claim, seconds",
    )
    p.add_argument(
        "--retention",
        type=float,
        default=_STORAGE.retention_seconds,
        help="seconds to keep fulfilled/dead/cancelled intents",
    )
    p.add_argument(
        "--wire-version",
        choices=["2.1", "1.1"],
        default="2.1",
        help="1.1: answer like a v1.1 reference server (for testing older clients)",
    )
    p.set_defaults(func=command)


def _read_secret(path: Path, what: str) -> str:
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise UsageError(f"cannot read {what} from {path}: {exc.strerror}") from exc
    if not value:
        raise UsageError(f"{what} file {path} is empty")
    return value


def command(args: argparse.Namespace) -> int:
    secret = os.environ.get("INTENT_BUS_ADMIN_SECRET", "").strip()
    if args.admin_secret_file is not None:
        secret = _read_secret(args.admin_secret_file, "admin secret")
    if not secret:
        if not args.dev:
            raise UsageError(
                "no admin secret: set INTENT_BUS_ADMIN_SECRET, pass --admin-secret-file, "
                "or use --dev to generate one for local use"
            )
        secret = "dev_" + secrets.token_hex(20)
        print(f"admin secret (also an API key; --dev only): {secret}", flush=True)
    if len(secret) < MIN_ADMIN_SECRET_CHARS:
        raise UsageError(
            f"the admin secret is shorter than {MIN_ADMIN_SECRET_CHARS} characters; "
            "generate one with: openssl rand -hex 24"
        )
    metrics_token = ""
    if args.metrics_token_file is not None:
        metrics_token = _read_secret(args.metrics_token_file, "metrics token")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0-65535, got {args.port}")
    for flag in (*(field for field, _ in QUOTAS), "rate_burst"):
        if getattr(args, flag) < 0:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 0")
    if args.rate_limit < 0:
        raise UsageError("--rate-limit must be >= 0")
    settings = BusSettings(
        listen=ListenSettings(
            host=args.host, port=args.port, tls_cert=args.tls_cert, tls_key=args.tls_key
        ),
        storage=StorageSettings(path=args.db, retention_seconds=args.retention),
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
            **{field: getattr(args, field) for field, _ in QUOTAS},
        ),
        queue=QueueSettings(claim_timeout_seconds=args.claim_timeout),
        wire_version=args.wire_version,
    )

    def ready(url: str) -> None:
        print(f"intent-fleet bus listening on {url}", flush=True)

    sys.stdout.flush()
    return run(settings, on_ready=ready)
