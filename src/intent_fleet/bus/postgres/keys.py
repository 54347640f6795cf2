"""API keys in the database, with this replica's cache of them.

The keys live in ``api_keys``, so a key made or revoked on one replica holds on every
replica. Each replica answers from its own :class:`~..auth.KeyRing` and reloads it when
any replica announces a change (``NOTIFY ... 'keys'``) and every few seconds in case an
announcement was missed. A presented key the ring does not know is looked up once (it may
be new) and then remembered as unknown until the keys change, so a client repeating a
wrong key costs the database nothing per request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ..auth import KeyRing, hash_secret, is_utf8
from ..records import ApiKey, Caller
from .wakeups import CHANNEL

if TYPE_CHECKING:
    from .database import Conn, Database

__all__ = ["SharedKeys", "load_keys"]

#: Most unknown key hashes remembered (a flood of made-up keys only empties the set).
MAX_UNKNOWN_KEYS: Final = 10_000
#: The payload of the notification that the keys changed.
KEYS_CHANGED: Final = "keys"

_SELECT: Final = "SELECT id, name, secret_hash, created_at, revoked_at FROM api_keys"


async def load_keys(conn: Conn) -> list[ApiKey]:
    """Every key, revoked ones included."""
    return [ApiKey(*r) for r in await conn.fetch(_SELECT)]


class SharedKeys:
    """This replica's :class:`~..auth.KeyRing`, kept in step with the database."""

    def __init__(self, *, db: Database, ring: KeyRing) -> None:
        self._db = db
        self._ring = ring
        #: Hashes of presented keys the database did not know at the last reload.
        self._unknown: set[str] = set()

    async def authenticate(self, presented: str) -> Caller | None:
        found = self._ring.authenticate(presented)
        if found is not None or not is_utf8(presented):
            return found
        digest = hash_secret(presented)
        if digest in self._unknown:
            return None
        # A key made by another replica since the last reload.
        async with self._db.conn() as conn:
            row = await conn.fetchrow(
                f"{_SELECT} WHERE secret_hash = $1 AND revoked_at IS NULL", digest
            )
        if row is None:
            if len(self._unknown) >= MAX_UNKNOWN_KEYS:
                self._unknown.clear()
            self._unknown.add(digest)
            return None
        self._ring.add(ApiKey(*row))
        return self._ring.authenticate(presented)

    async def add(self, key: ApiKey) -> None:
        async with self._db.conn() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO api_keys (id, name, secret_hash, created_at) VALUES ($1, $2, $3, $4)",
                key.id,
                key.name,
                key.secret_hash,
                key.created_at,
            )
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, KEYS_CHANGED)
        self._ring.add(key)

    async def find(self, *, secret: str | None, key_id: str | None) -> ApiKey | None:
        await self.reload()
        return self._ring.find(secret=secret, key_id=key_id)

    async def revoke(self, key: ApiKey, *, now: float) -> None:
        async with self._db.conn() as conn, conn.transaction():
            await conn.execute("UPDATE api_keys SET revoked_at = $2 WHERE id = $1", key.id, now)
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, KEYS_CHANGED)
        self._ring.revoke(key, now=now)

    async def all(self) -> list[ApiKey]:
        await self.reload()
        return self._ring.all()

    async def reload(self) -> None:
        """The keys as stored now (another replica may have added or revoked some)."""
        async with self._db.conn() as conn:
            keys = await load_keys(conn)
        self._ring.replace(keys)
        self._unknown.clear()
