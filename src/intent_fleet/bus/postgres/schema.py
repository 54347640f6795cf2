"""The PostgreSQL schema, as numbered migrations applied at start.

Every replica runs :func:`migrate` when it starts. A session advisory lock makes the
replicas take turns, so each migration runs once, in its own transaction; a bus that finds
a schema newer than the migrations it knows refuses to start rather than misread it.

Times are the bus's clock (seconds since the epoch, as in SQLite), not the database's: the
same injected clock decides leases and delays whichever backend keeps them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

from ..errors import StartupError

__all__ = ["MIGRATIONS", "migrate"]

#: pg_advisory_lock key of the migrations: "intent-b" in ASCII, any fixed number would do.
MIGRATION_LOCK: Final = 0x696E74656E742D62

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: intents, keys, KV, and the security state every replica shares.
    """
    CREATE TABLE intents (
        id text PRIMARY KEY,
        seq bigint GENERATED ALWAYS AS IDENTITY,
        namespace text NOT NULL,
        goal text NOT NULL,
        publisher text NOT NULL,
        visibility text NOT NULL,
        payload bytea NOT NULL,
        payload_size integer NOT NULL,
        priority integer NOT NULL,
        max_attempts integer NOT NULL,
        backoff_base double precision NOT NULL,
        target_worker text,
        required_capability text,
        status text NOT NULL,
        attempts integer NOT NULL,
        run_at double precision NOT NULL,
        created_at double precision NOT NULL,
        updated_at double precision NOT NULL,
        claim_token text,
        lease_until double precision,
        claimer text,
        worker_id text,
        last_error text,
        idempotency_key text,
        body_hash bytea,
        result bytea,
        result_type text,
        completed_at double precision
    );
    -- Claims scan only open rows, in claim order.
    CREATE INDEX intents_ready ON intents (namespace, goal, priority DESC, run_at, attempts, seq)
        WHERE status = 'open';
    -- The sweep finds ended leases and intents coming due.
    CREATE INDEX intents_leases ON intents (lease_until) WHERE status = 'claimed';
    CREATE INDEX intents_due ON intents (run_at) WHERE status = 'open';
    -- Quotas count a key's live intents.
    CREATE INDEX intents_live_by_publisher ON intents (publisher, namespace, goal)
        INCLUDE (payload_size) WHERE status IN ('open', 'claimed');
    CREATE INDEX intents_by_status ON intents (status, updated_at);
    CREATE UNIQUE INDEX intents_idempotency ON intents (publisher, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE TABLE api_keys (
        id text PRIMARY KEY,
        name text NOT NULL,
        secret_hash text NOT NULL UNIQUE,
        created_at double precision NOT NULL,
        revoked_at double precision
    );
    CREATE TABLE kv (
        owner text NOT NULL,
        key text NOT NULL,
        value text NOT NULL,
        expires_at double precision NOT NULL,
        PRIMARY KEY (owner, key)
    );
    CREATE TABLE nonces (
        key_id text NOT NULL,
        nonce text NOT NULL,
        expires_at double precision NOT NULL,
        PRIMARY KEY (key_id, nonce)
    );
    CREATE INDEX nonces_expiry ON nonces (expires_at);
    CREATE TABLE rate_buckets (
        key_id text PRIMARY KEY,
        tokens double precision NOT NULL,
        stamp double precision NOT NULL,
        -- Whether the last request took a token (what the one-statement update returns).
        granted boolean NOT NULL
    );
    """,
)


async def migrate(conn: PoolConnectionProxy[asyncpg.Record]) -> int:
    """Bring the schema up to date; returns its version. Raises :class:`StartupError` for a
    schema newer than this bus."""
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
        known = len(MIGRATIONS)
        if current > known:
            raise StartupError(
                f"the database has schema version {current}, newer than this bus understands "
                f"({known}); upgrade intent-fleet"
            )
        for version in range(current + 1, known + 1):
            async with conn.transaction():
                await conn.execute(MIGRATIONS[version - 1])
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
        return known
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
