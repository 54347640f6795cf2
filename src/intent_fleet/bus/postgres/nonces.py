"""Nonces of signed requests, recorded where every replica sees them.

Every signed request must record its nonce before it is served, so a request replayed to
any replica is refused. They are recorded in groups (:mod:`.groups`): one statement
carries the nonces of every request that arrived while the previous one was in flight.
A nonce is kept until its request's timestamp could no longer pass the signature window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from .database import stopping
from .groups import Grouped

if TYPE_CHECKING:
    from .database import Database

__all__ = ["INSERT_NONCES", "SharedNonces", "distinct", "first_uses"]

#: Parameters: key ids, nonces, expiry times (arrays, one element per distinct nonce);
#: answers the rows that were new.
INSERT_NONCES: Final = (
    "INSERT INTO nonces (key_id, nonce, expires_at)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::float8[])"
    " ON CONFLICT DO NOTHING RETURNING key_id, nonce"
)

Row = tuple[str, str, float]


def distinct(rows: Sequence[Row]) -> list[Row]:
    """The rows to insert: each (key id, nonce) once (a statement may not insert a row
    twice), with the first request's expiry."""
    seen: dict[tuple[str, str], float] = {}
    for key_id, nonce, expires_at in rows:
        seen.setdefault((key_id, nonce), expires_at)
    return [(k, n, e) for (k, n), e in seen.items()]


def first_uses(rows: Sequence[Row], added: set[tuple[str, str]]) -> list[bool]:
    """For each request, in order: whether its nonce is new. The same nonce twice in one
    group is new the first time only."""
    fresh = set(added)
    answers = []
    for key_id, nonce, _ in rows:
        answers.append((key_id, nonce) in fresh)
        fresh.discard((key_id, nonce))
    return answers


class SharedNonces:
    """The :class:`~..auth.NonceCache` of replicas sharing a database."""

    def __init__(self, *, db: Database, window_seconds: float) -> None:
        self._db = db
        self._window = window_seconds
        self._grouped: Grouped[Row, bool] = Grouped(self._record, closed=stopping)

    async def remember(self, key_id: str, nonce: str, *, timestamp: int, now: float) -> bool:
        """Record a signed request's nonce; False when any replica saw it already."""
        return await self._grouped.submit((key_id, nonce, timestamp + self._window))

    async def _record(self, rows: Sequence[Row]) -> list[bool]:
        once = distinct(rows)
        async with self._db.conn(relaxed=True) as conn:
            added = await conn.fetch(
                INSERT_NONCES, [r[0] for r in once], [r[1] for r in once], [r[2] for r in once]
            )
        return first_uses(rows, {(r["key_id"], r["nonce"]) for r in added})

    async def forget(self, *, now: float) -> None:
        """Nonces whose timestamp can no longer pass the window cannot be replayed."""
        async with self._db.conn(relaxed=True) as conn:
            await conn.execute("DELETE FROM nonces WHERE expires_at < $1", now)

    async def aclose(self) -> None:
        await self._grouped.aclose()
