"""Per-key quotas counted from the database, so they hold across replicas.

A key's live intents are a scan of its rows (an index on publisher, live rows only), so
each replica counts a key at most once a :data:`USAGE_REFRESH_SECONDS` and adds what it
accepts in between. A publish that would be refused is checked against a fresh count
first, so intents finished meanwhile (on any replica) count as finished. Replicas
accepting at the same moment can pass a count quota by what the others accepted since
their last count. The arithmetic and the refusals are :mod:`..quotas`'s, as for the
embedded backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from intent_fleet.protocol import Now

from ..errors import ApiError
from ..quotas import KeyUsage, check_publish
from ..records import Caller
from ..settings import LimitSettings
from .sql import LIVE

if TYPE_CHECKING:
    from ..backend import PublishRequest
    from .database import Conn

__all__ = ["SharedQuotas"]

#: Seconds a replica trusts its count of a key's live intents.
USAGE_REFRESH_SECONDS: Final = 1.0


class SharedQuotas:
    """This replica's recent counts of what each key holds."""

    def __init__(self, *, limits: LimitSettings, clock: Now) -> None:
        self._limits = limits
        self._clock = clock
        self._on = bool(
            limits.max_live_intents_per_key
            or limits.max_live_bytes_per_key
            or limits.max_goals_per_key
        )
        #: key id -> (when counted, what it held then plus what this replica accepted since).
        self._usage: dict[str, tuple[float, KeyUsage]] = {}

    async def check(self, conn: Conn, caller: Caller, req: PublishRequest) -> None:
        """Refuse a publish past the key's quotas (raises the quota's :class:`ApiError`)."""
        if caller.admin or not self._on:
            return
        counted = self._usage.get(caller.key_id)
        if counted is None or self._clock() - counted[0] >= USAGE_REFRESH_SECONDS:
            self._check(await self._count(conn, caller.key_id), req)
            return
        try:
            self._check(counted[1], req)
        except ApiError:
            self._check(await self._count(conn, caller.key_id), req)

    def accepted(self, caller: Caller, req: PublishRequest) -> None:
        """``req`` was published: count it until the next count."""
        counted = self._usage.get(caller.key_id)
        if counted is not None:
            counted[1].add(req.namespace, req.goal, len(req.payload))

    def _check(self, usage: KeyUsage, req: PublishRequest) -> None:
        check_publish(
            self._limits, usage, namespace=req.namespace, goal=req.goal, size=len(req.payload)
        )

    async def _count(self, conn: Conn, key_id: str) -> KeyUsage:
        rows = await conn.fetch(
            "SELECT namespace, goal, count(*) AS n, sum(payload_size) AS bytes FROM intents"
            f" WHERE publisher = $1 AND status IN {LIVE} GROUP BY namespace, goal",
            key_id,
        )
        usage = KeyUsage(
            intents=sum(r["n"] for r in rows),
            payload_bytes=sum(r["bytes"] for r in rows),
            goals={(r["namespace"], r["goal"]): r["n"] for r in rows},
        )
        self._usage[key_id] = (self._clock(), usage)
        return usage
