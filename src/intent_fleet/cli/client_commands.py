"""Client commands: publish, status, result, kv, keys, stats.

Each prints JSON on stdout (or a table for ``stats``) and exits with a code
that says what went wrong, so scripts can branch on it (see ``EXIT_CODES``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import msgspec
import orjson

from intent_fleet.protocol import (
    AdminClient,
    BusClient,
    ClientSettings,
    IntentBusAuthError,
    IntentBusConflictError,
    IntentBusError,
    IntentBusNetworkError,
    IntentBusNotFoundError,
    IntentBusProtocolError,
    IntentBusRateLimitError,
    resolve_api_key,
)

from . import loop
from .errors import BusCommandError, UsageError
from .flags import (
    BUS_URL,
    CA_FILE,
    QUIET_LOG_LEVEL,
    Flag,
    build,
    path,
    register,
    secret_file,
)

__all__ = ["EXIT_CODES", "add_parsers"]

#: Exit codes of the client commands, most specific first.
EXIT_CODES: tuple[tuple[type[IntentBusError], int, str], ...] = (
    (IntentBusNotFoundError, 3, "not found"),
    (IntentBusAuthError, 4, "authentication failed"),
    (IntentBusNetworkError, 5, "bus unreachable"),
    (IntentBusConflictError, 6, "conflict"),
    (IntentBusRateLimitError, 7, "rate limited"),
    (IntentBusProtocolError, 8, "bad answer from the bus"),
    (IntentBusError, 1, "bus error"),
)

EPILOG = (
    "exit codes: 0 ok, 1 bus error, 2 usage, 3 not found, 4 auth, 5 bus unreachable, "
    "6 conflict, 7 rate limited, 8 bad answer from the bus"
)


_TIMEOUT = Flag(
    "--timeout",
    "",
    "request timeout, seconds",
    parse=float,
    default=ClientSettings().request_timeout,
    setting="ClientSettings.request_timeout",
)

#: The options of the commands that act with an API key.
TENANT_FLAGS: tuple[Flag, ...] = (
    BUS_URL,
    Flag(
        "--api-key-file",
        "",
        "file with the API key (default: INTENT_API_KEY, INTENT_API_KEY_FILE, ~/.apikey)",
        parse=path,
    ),
    CA_FILE,
    _TIMEOUT,
    QUIET_LOG_LEVEL,
)

#: The options of the commands that act with the admin secret.
ADMIN_FLAGS: tuple[Flag, ...] = (
    BUS_URL,
    Flag(
        "--admin-secret-file",
        "",
        "file with the admin secret (default: env INTENT_BUS_ADMIN_SECRET)",
        parse=path,
    ),
    CA_FILE,
    _TIMEOUT,
    QUIET_LOG_LEVEL,
)


def _common(p: argparse.ArgumentParser, *, admin: bool = False) -> None:
    register(p, ADMIN_FLAGS if admin else TENANT_FLAGS)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("publish", help="publish an intent", epilog=EPILOG)
    p.add_argument("goal")
    p.add_argument("payload", help='JSON payload, e.g. \'{"to": "ops"}\'')
    p.add_argument("--namespace")
    p.add_argument("--priority", type=int, help="0-1000, higher first (default 100)")
    p.add_argument("--delay", type=float, help="seconds before it may be claimed")
    p.add_argument("--max-attempts", type=int, help="claims before it is dead (1-20)")
    p.add_argument("--backoff-base", type=float, help="retry delay base after a fail, seconds")
    p.add_argument("--visibility", choices=["private", "public"], default="private")
    p.add_argument("--idempotency-key", help="same key + same body = same intent")
    _common(p)
    p.set_defaults(func=_run(_publish))

    for name, what in (("status", "an intent's state"), ("result", "an intent's result")):
        p = sub.add_parser(name, help=f"show {what}", epilog=EPILOG)
        p.add_argument("intent_id")
        _common(p)
        p.set_defaults(func=_run(_status if name == "status" else _result))

    kv = sub.add_parser("kv", help="the ephemeral key-value store")
    kv_sub = kv.add_subparsers(dest="kv_command", required=True, metavar="ACTION")
    p = kv_sub.add_parser("get", help="read a value (exit 3 when missing)", epilog=EPILOG)
    p.add_argument("key")
    _common(p)
    p.set_defaults(func=_run(_kv_get))
    p = kv_sub.add_parser("set", help="write a value", epilog=EPILOG)
    p.add_argument("key")
    p.add_argument("value")
    p.add_argument("--ttl", type=int, default=600, help="seconds to keep it (1-86400)")
    _common(p)
    p.set_defaults(func=_run(_kv_set))

    keys = sub.add_parser("keys", help="tenant API keys (admin)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    p = keys_sub.add_parser("create", help="create a key; prints it once", epilog=EPILOG)
    p.add_argument("--owner", default="anonymous", help="who the key is for")
    p.add_argument(
        "--key-only", action="store_true", help="print only the key (for a script or a Secret)"
    )
    _common(p, admin=True)
    p.set_defaults(func=_run(_keys_create))
    p = keys_sub.add_parser("revoke", help="revoke a key by id or secret", epilog=EPILOG)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--id", dest="key_id", help="key id (k_...)")
    target.add_argument("--key-file", type=Path, help="file holding the key's secret")
    _common(p, admin=True)
    p.set_defaults(func=_run(_keys_revoke))
    p = keys_sub.add_parser("list", help="list keys (never their secrets)", epilog=EPILOG)
    _common(p, admin=True)
    p.set_defaults(func=_run(_keys_list))

    p = sub.add_parser("stats", help="backlog per goal", epilog=EPILOG)
    p.add_argument("--namespace")
    p.add_argument("--goal")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _common(p)
    p.set_defaults(func=_run(_stats))


Action = Callable[[argparse.Namespace], Coroutine[Any, Any, Any]]


def _run(action: Action) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        try:
            result: Any = loop.run(action(args))
        except IntentBusError as exc:
            for kind, code, label in EXIT_CODES:
                if isinstance(exc, kind):
                    raise BusCommandError(f"{label}: {exc}", code) from exc
            raise  # pragma: no cover - IntentBusError is the last entry
        if result is not None:
            _print(result)
        return 0

    return command


def _print(value: Any) -> None:
    if isinstance(value, str):
        sys.stdout.write(value if value.endswith("\n") else value + "\n")
        return
    # Wire models (structs) and tuples of them, as the JSON they came from.
    value = msgspec.to_builtins(value)
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _settings(args: argparse.Namespace) -> ClientSettings:
    return build(
        TENANT_FLAGS,
        lambda: ClientSettings(
            base_url=args.bus_url,
            request_timeout=args.timeout,
            ca_file=str(args.ca_file) if args.ca_file else None,
        ),
    )


def _client(args: argparse.Namespace) -> BusClient:
    key_file = args.api_key_file
    try:
        if key_file is not None:
            key = resolve_api_key(environ={}, key_file=key_file)
        else:
            key = resolve_api_key()
    except IntentBusAuthError as exc:
        raise UsageError(str(exc)) from exc
    return BusClient(settings=_settings(args), api_key=key)


def _admin(args: argparse.Namespace) -> AdminClient:
    if args.admin_secret_file is not None:
        secret = secret_file(args.admin_secret_file, "admin secret")
    else:
        secret = os.environ.get("INTENT_BUS_ADMIN_SECRET", "").strip()
    if not secret:
        raise UsageError("no admin secret: set INTENT_BUS_ADMIN_SECRET or pass --admin-secret-file")
    return AdminClient(settings=_settings(args), admin_secret=secret)


def _json_arg(text: str, what: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc}") from exc


async def _publish(args: argparse.Namespace) -> Any:
    payload = _json_arg(args.payload, "the payload")
    async with _client(args) as bus:
        return await bus.publish(
            args.goal,
            payload,
            namespace=args.namespace,
            visibility=args.visibility,
            priority=args.priority,
            delay=args.delay,
            max_attempts=args.max_attempts,
            backoff_base=args.backoff_base,
            idempotency_key=args.idempotency_key,
        )


async def _status(args: argparse.Namespace) -> Any:
    async with _client(args) as bus:
        return await bus.status(args.intent_id)


async def _result(args: argparse.Namespace) -> Any:
    async with _client(args) as bus:
        return await bus.result(args.intent_id)


async def _kv_get(args: argparse.Namespace) -> Any:
    async with _client(args) as bus:
        value = await bus.kv_get(args.key)
    if value is None:
        raise BusCommandError(f"not found: no value for key {args.key!r}", 3)
    return value


async def _kv_set(args: argparse.Namespace) -> Any:
    async with _client(args) as bus:
        await bus.kv_set(args.key, args.value, ttl=args.ttl)
    return {"ok": True, "key": args.key, "ttl": args.ttl}


async def _keys_create(args: argparse.Namespace) -> Any:
    async with _admin(args) as admin:
        created = await admin.generate_key(args.owner)
    return created.api_key if args.key_only else created


async def _keys_revoke(args: argparse.Namespace) -> Any:
    async with _admin(args) as admin:
        if args.key_file is not None:
            await admin.revoke_key(api_key=secret_file(args.key_file, "API key"))
        else:
            await admin.revoke_key(key_id=args.key_id)
    return {"ok": True}


async def _keys_list(args: argparse.Namespace) -> Any:
    async with _admin(args) as admin:
        return await admin.list_keys()


async def _stats(args: argparse.Namespace) -> Any:
    async with _client(args) as bus:
        stats = await bus.stats(namespace=args.namespace, goal=args.goal)
    if args.json:
        return stats
    rows = [("NAMESPACE", "GOAL", "READY", "DELAYED", "CLAIMED", "DEAD", "OLDEST")]
    rows += [
        (
            g.namespace,
            g.goal,
            str(g.ready),
            str(g.delayed),
            str(g.claimed),
            str(g.dead),
            f"{g.oldest_ready_age_seconds:.1f}s",
        )
        for g in stats.goals
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
