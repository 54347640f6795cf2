"""Per-key token buckets in the database, so the rate limit holds across replicas.

The same bucket as :class:`~..ratelimit.RateLimiter` (``rate`` requests per second, bursts
up to ``burst``), refilled and taken from in one upsert: the row lock orders replicas that
count the same key at once.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .database import Database

__all__ = ["SharedRateLimiter"]

_REFILLED = "least($2, b.tokens + greatest(0, $3 - b.stamp) * $4)"
_TAKE = (
    "INSERT INTO rate_buckets AS b (key_id, tokens, stamp, granted)"
    " VALUES ($1, $2 - 1, $3, true) ON CONFLICT (key_id) DO UPDATE SET"
    f" tokens = CASE WHEN {_REFILLED} >= 1 THEN {_REFILLED} - 1 ELSE {_REFILLED} END,"
    f" granted = {_REFILLED} >= 1, stamp = $3"
    " RETURNING tokens, granted"
)


class SharedRateLimiter:
    """``rate`` requests per second per key, bursts up to ``burst``; rate 0 = off."""

    def __init__(self, *, db: Database, rate: float, burst: int) -> None:
        self._db = db
        self._rate = rate
        self._burst = float(max(1, burst))

    async def acquire(self, key_id: str, *, now: float) -> int | None:
        """None when the request may go ahead, else the seconds to wait (>= 1)."""
        if self._rate <= 0:
            return None
        async with self._db.conn(relaxed=True) as conn:
            row = await conn.fetchrow(_TAKE, key_id, self._burst, now, self._rate)
        assert row is not None  # an upsert always answers its row
        if row["granted"]:
            return None
        tokens: float = row["tokens"]
        return max(1, math.ceil((1.0 - tokens) / self._rate))
