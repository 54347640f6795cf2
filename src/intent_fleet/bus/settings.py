"""The bus server's settings: one documented dataclass per concern, built once by the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "MIN_ADMIN_SECRET_CHARS",
    "AuthSettings",
    "BusSettings",
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


#: Shortest admin secret a bus accepts: the admin secret is also an API key, and guessing it
#: gives everything; 24 characters of random text are out of reach of any online guessing.
MIN_ADMIN_SECRET_CHARS = 24


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Who may talk to the bus and how requests are checked."""

    #: The admin secret: sent as ``X-Admin-Token`` to admin endpoints and, like
    #: the reference server's secret, also accepted as an API key.
    admin_secret: str = ""
    #: Reject protocol requests that carry no signature headers. Off by default
    #: because unsigned ``curl`` requests are part of the protocol ("protocol first").
    require_signatures: bool = False
    #: Allowed clock skew for ``X-Timestamp`` (seconds); the protocol fixes it at 300.
    signature_window_seconds: float = 300.0
    #: Token that may read ``/metrics`` besides the admin secret; empty = admin only.
    metrics_token: str = ""
    #: Serve ``/metrics`` without a token (for a scrape inside a trusted network).
    metrics_public: bool = False


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


@dataclass(frozen=True, slots=True)
class BusSettings:
    """Everything the bus server needs, passed explicitly from the CLI."""

    #: "2.1" (normal), or "1.1" to answer exactly like a v1.1 reference server
    #: (no /health, no claim tokens, no namespaces, final /fail) so clients can
    #: be tested against the older protocol with a real process.
    wire_version: str = "2.1"

    listen: ListenSettings = field(default_factory=ListenSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    queue: QueueSettings = field(default_factory=QueueSettings)
