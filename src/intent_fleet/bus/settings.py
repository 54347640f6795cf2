"""The bus server's settings: one documented dataclass per concern, built once by the CLI.

Each class says what is wrong with it in ``problems()``; :class:`BusSettings` checks the
whole tree when it is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from intent_fleet.protocol import Problems, validate

__all__ = [
    "MIN_ADMIN_SECRET_CHARS",
    "QUOTAS",
    "WIRE_VERSIONS",
    "AuthSettings",
    "BusSettings",
    "DatabaseSettings",
    "LimitSettings",
    "ListenSettings",
    "QueueSettings",
    "StorageSettings",
]


@dataclass(frozen=True, slots=True)
class ListenSettings:
    """Where the HTTP server listens."""

    #: Loopback by default: exposing a bus is a decision, not an accident.
    host: str = "127.0.0.1"
    #: 0 lets the kernel pick a free port (tests read it back from the ready line).
    port: int = 8080
    #: PEM certificate chain and private key: serve HTTPS (TLS 1.2+) instead of HTTP, so
    #: keys and payloads never cross a network in clear. Both or neither.
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def problems(self) -> Problems:
        if not 0 <= self.port <= 65535:
            yield "port", f"must be 0-65535, got {self.port}"
        if (self.tls_cert is None) != (self.tls_key is None):
            yield "tls_key", "goes with a certificate (tls_cert): give both or neither"


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """Where and how intents are made durable."""

    #: SQLite database file; created with its parent directory when missing.
    path: Path = Path("intent-bus.db")
    #: Fulfilled, cancelled and dead intents are kept this long (seconds) for
    #: status/result queries and dead-letter inspection, then removed. 7 days.
    retention_seconds: float = 7 * 24 * 3600.0
    #: How often (seconds) the retention sweep runs.
    cleanup_interval_seconds: float = 300.0

    def problems(self) -> Problems:
        # Retention 0 keeps nothing past the next sweep (tests and throwaway buses use it).
        if not (math.isfinite(self.retention_seconds) and self.retention_seconds >= 0):
            yield (
                "retention_seconds",
                f"must be a number of seconds >= 0, got {self.retention_seconds}",
            )
        if not (math.isfinite(self.cleanup_interval_seconds) and self.cleanup_interval_seconds > 0):
            yield (
                "cleanup_interval_seconds",
                (f"must be a number of seconds > 0, got {self.cleanup_interval_seconds}"),
            )


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """A PostgreSQL database shared by bus replicas, instead of the SQLite file.

    Every replica pointed at the same database serves the same bus: claims, leases,
    retries, nonces, keys, KV and quotas all live in the database.
    """

    #: ``postgresql://user:password@host:port/dbname``; empty for the SQLite file. Holds a
    #: password: never logged (see :func:`~intent_fleet.protocol.redact_url`).
    url: str = ""
    #: Connections each replica keeps open (the most requests it sends the database at once).
    pool_size: int = 20
    #: Seconds to wait for a connection (to open one, or for a free one in the pool).
    connect_timeout_seconds: float = 5.0
    #: Longest a statement may run (seconds) before the database cancels it.
    statement_timeout_seconds: float = 10.0
    #: How often (seconds) a replica sweeps ended leases and wakes long-polls on intents
    #: that came due; every replica sweeps, row locks make each change happen once.
    sweep_interval_seconds: float = 0.5

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def problems(self) -> Problems:
        if self.url and not self.url.startswith(("postgresql://", "postgres://")):
            yield "url", "must start with postgresql:// (or be empty for SQLite)"
        if not 1 <= self.pool_size <= 1000:
            yield "pool_size", f"must be 1-1000, got {self.pool_size}"
        for name in ("connect_timeout_seconds", "statement_timeout_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                yield name, f"must be a number of seconds > 0, got {value}"
        if not (
            math.isfinite(self.sweep_interval_seconds) and 0 < self.sweep_interval_seconds <= 60
        ):
            yield (
                "sweep_interval_seconds",
                f"must be 0-60 seconds, got {self.sweep_interval_seconds}",
            )


#: The protocol versions the bus can answer as, the default first.
WIRE_VERSIONS = ("2.1", "1.1")

#: The per-key quotas of :class:`LimitSettings`, each with what it bounds (flags and docs use it).
QUOTAS = {
    "max_live_intents_per_key": "open and claimed intents a key may have published (429 past it)",
    "max_live_bytes_per_key": "payload bytes of those intents, kept in memory (507 past it)",
    "max_goals_per_key": "distinct namespace/goal pairs among those intents (429 past it)",
    "max_kv_entries_per_key": "unexpired KV entries of a key (429 past it)",
    "max_parked_claims_per_key": "long-poll claims of a key waiting at once (429 past it)",
}

#: Shortest admin secret a bus accepts: the admin secret is also an API key, and guessing it
#: gives everything; 24 characters of random text are out of reach of any online guessing.
MIN_ADMIN_SECRET_CHARS = 24


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Who may talk to the bus and how requests are checked."""

    #: The admin secret: sent as ``X-Admin-Token`` to admin endpoints and, like
    #: the reference server's secret, also accepted as an API key.
    admin_secret: str = field(default="", repr=False)
    #: Reject protocol requests that carry no signature headers. Off by default
    #: because unsigned ``curl`` requests are part of the protocol ("protocol first").
    require_signatures: bool = False
    #: Allowed clock skew for ``X-Timestamp`` (seconds); the protocol fixes it at 300.
    signature_window_seconds: float = 300.0
    #: Token that may read ``/metrics`` besides the admin secret; empty = admin only.
    metrics_token: str = field(default="", repr=False)
    #: Serve ``/metrics`` without a token (for a scrape inside a trusted network).
    metrics_public: bool = False

    def problems(self) -> Problems:
        # Lengths only: a secret's value is never quoted.
        if len(self.admin_secret) < MIN_ADMIN_SECRET_CHARS:
            yield (
                "admin_secret",
                (
                    f"must be at least {MIN_ADMIN_SECRET_CHARS} characters; "
                    "generate one with: openssl rand -hex 24"
                ),
            )
        elif self.admin_secret != self.admin_secret.strip():
            yield "admin_secret", "must not start or end with whitespace"


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """Bounds on what one request may carry or cost."""

    #: Largest payload (serialised JSON bytes). 256 KiB holds real documents
    #: while keeping one intent far below the memory a bus can spare.
    max_payload_bytes: int = 256 * 1024
    #: Largest fulfill result (serialised bytes); same reasoning as payloads.
    max_result_bytes: int = 256 * 1024
    #: Largest KV value (bytes of its string form).
    max_kv_value_bytes: int = 64 * 1024
    #: Deepest JSON nesting accepted in any request body; stops stack-exhaustion tricks.
    max_json_depth: int = 32
    #: Per-key request rate (requests per second; the admin key is exempt); 0 turns it off.
    #: On by default so a runaway client cannot starve the other tenants; 1000/s is about
    #: half of what this bus serves on 2 cores, and far above what a worker fleet sends.
    rate_limit_per_second: float = 1000.0
    #: Burst allowance of the per-key token bucket (requests).
    rate_limit_burst: int = 2000
    #: Per-key quotas (the admin key is exempt; 0 = no limit), see :mod:`.quotas`.
    #: Open and claimed intents one key may have published.
    max_live_intents_per_key: int = 100_000
    #: Payload bytes of those intents: the bus keeps them in memory. 128 MiB.
    max_live_bytes_per_key: int = 128 * 1024 * 1024
    #: Distinct (namespace, goal) among them: each goal costs an index of its own.
    max_goals_per_key: int = 1_000
    #: Unexpired KV entries per key.
    max_kv_entries_per_key: int = 10_000
    #: Claims one key may have parked in a long-poll at once.
    max_parked_claims_per_key: int = 256
    #: Longest long-poll wait a claim may ask for (seconds).
    max_claim_wait_seconds: float = 30.0
    #: Longest KV TTL (seconds): the store is ephemeral by contract. 7 days.
    max_kv_ttl_seconds: int = 7 * 24 * 3600

    def problems(self) -> Problems:
        for name in (
            "max_payload_bytes",
            "max_result_bytes",
            "max_kv_value_bytes",
            "max_json_depth",
            "max_kv_ttl_seconds",
        ):
            if getattr(self, name) < 1:
                yield name, f"must be >= 1, got {getattr(self, name)}"
        for name in (*QUOTAS, "rate_limit_burst"):
            if getattr(self, name) < 0:
                yield name, f"must be >= 0, got {getattr(self, name)}"
        rate = self.rate_limit_per_second
        if not (math.isfinite(rate) and rate >= 0):
            yield "rate_limit_per_second", f"must be a number >= 0, got {rate}"
        wait = self.max_claim_wait_seconds
        if not (math.isfinite(wait) and wait >= 0):
            yield "max_claim_wait_seconds", f"must be a number >= 0, got {wait}"


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """Defaults of the intent life cycle (v2.1 semantics)."""

    #: Lease granted by a claim (seconds); the protocol's default.
    claim_timeout_seconds: int = 60
    #: Claims an intent may receive before it is dead, when the publisher names none.
    default_max_attempts: int = 3
    #: Base of the exponential retry delay after ``/fail`` (seconds).
    default_backoff_base: float = 5.0
    #: Retry-After sent with an empty (204) claim; the reference server sends 1.
    empty_claim_retry_after: int = 1
    #: Lease lengths ``/extend_claim`` accepts (seconds), per the protocol.
    min_extend_seconds: int = 10
    max_extend_seconds: int = 3600

    def problems(self) -> Problems:
        if not 1 <= self.claim_timeout_seconds <= self.max_extend_seconds:
            yield (
                "claim_timeout_seconds",
                (f"must be 1-{self.max_extend_seconds}, got {self.claim_timeout_seconds}"),
            )
        if self.default_max_attempts < 1:
            yield "default_max_attempts", f"must be >= 1, got {self.default_max_attempts}"
        if not 0 < self.min_extend_seconds <= self.max_extend_seconds:
            yield "min_extend_seconds", "must be > 0 and <= max_extend_seconds"


@dataclass(frozen=True, slots=True)
class BusSettings:
    """Everything the bus server needs, passed explicitly from the CLI."""

    #: "2.1" (normal), or "1.1" to answer exactly like a v1.1 reference server
    #: (no /health, no claim tokens, no namespaces, final /fail) so clients can
    #: be tested against the older protocol with a real process.
    wire_version: str = WIRE_VERSIONS[0]

    listen: ListenSettings = field(default_factory=ListenSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    queue: QueueSettings = field(default_factory=QueueSettings)

    def problems(self) -> Problems:
        if self.wire_version not in WIRE_VERSIONS:
            yield "wire_version", f"must be one of {', '.join(WIRE_VERSIONS)}"

    def __post_init__(self) -> None:
        validate(self)
