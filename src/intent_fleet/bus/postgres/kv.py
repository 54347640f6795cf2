"""The ephemeral key-value store in the database, shared by every replica.

Entries are scoped by their owner's key id and end at ``expires_at``; an expired entry is
never answered, and :meth:`SharedKV.sweep` deletes it later. The per-key quota counts
unexpired entries (:func:`~..quotas.check_kv_set`); writers of one owner take turns, so
two replicas cannot both take the owner's last slot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from intent_fleet.protocol import Now

from ..quotas import check_kv_set

if TYPE_CHECKING:
    from .database import Database

__all__ = ["SharedKV"]


class SharedKV:
    """Values of every key's KV namespace, in the ``kv`` table."""

    def __init__(self, *, db: Database, clock: Now) -> None:
        self._db = db
        self._clock = clock

    async def get(self, owner: str, key: str, *, now: float) -> str | None:
        async with self._db.conn() as conn:
            value: str | None = await conn.fetchval(
                "SELECT value FROM kv WHERE owner = $1 AND key = $2 AND expires_at > $3",
                owner,
                key,
                now,
            )
        return value

    async def set(self, owner: str, key: str, value: str, *, expires_at: float, most: int) -> None:
        """Store a value; refuses (429) a new key past ``most`` entries (0 = no limit)."""
        async with self._db.conn() as conn, conn.transaction():
            if most:
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('kv:' || $1))", owner)
                held = await conn.fetchrow(
                    "SELECT count(*) AS n, count(*) FILTER (WHERE key = $3) > 0 AS has"
                    " FROM kv WHERE owner = $1 AND expires_at > $2",
                    owner,
                    self._clock(),
                    key,
                )
                assert held is not None  # an aggregate always answers a row
                check_kv_set(most, held=held["n"], exists=held["has"])
            await conn.execute(
                "INSERT INTO kv (owner, key, value, expires_at) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (owner, key) DO UPDATE SET value = $3, expires_at = $4",
                owner,
                key,
                value,
                expires_at,
            )

    async def count(self, *, now: float) -> int:
        """Unexpired entries of every key."""
        async with self._db.conn() as conn:
            n: int = await conn.fetchval("SELECT count(*) FROM kv WHERE expires_at > $1", now)
        return n

    async def sweep(self, *, now: float) -> int:
        """Delete expired entries; returns how many."""
        async with self._db.conn() as conn:
            done = await conn.execute("DELETE FROM kv WHERE expires_at <= $1", now)
        return int(done.split()[-1])

    async def purge(self) -> None:
        """Delete every entry of every key."""
        async with self._db.conn() as conn:
            await conn.execute("DELETE FROM kv")
