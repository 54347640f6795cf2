"""The database a replica talks to: two connection pools, and what a failure means.

Writes that must survive a crash (publish, fulfil, fail, extend, admin changes) commit
with the database's default synchronous commit, on the ``durable`` pool. Claims, nonces,
rate buckets and the sweep commit asynchronously, on the ``relaxed`` pool (its sessions
set ``synchronous_commit = off``), as the embedded backend answers a claim before its
write is on disk: losing the last few to a database crash can only hand an intent out
again (delivery is at-least-once anyway), let a request signed moments before the crash
be replayed, or let a key run a moment past its rate. Each replica opens up to
``pool_size`` connections in each pool.

A failure of the database becomes the bus's own :class:`~..errors.DurabilityError` here,
once, and is counted for ``/metrics``; :attr:`Database.health` says whether the last
request reached it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from intent_fleet.protocol import redact_url

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

from ..errors import ApiError, DurabilityError, StartupError
from ..settings import DatabaseSettings
from .schema import migrate

__all__ = ["Conn", "Database", "open_database", "stopping"]

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # the stubs' generic; the runtime class is not subscriptable
    Conn: TypeAlias = PoolConnectionProxy[asyncpg.Record]

#: What connecting or talking to the database can raise, besides the bus's own errors.
_FAILURES = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def stopping() -> DurabilityError:
    """The error of a request still waiting on the database when the bus stops."""
    return DurabilityError("the bus is stopping", cause="io")


def _db_error(exc: BaseException) -> DurabilityError:
    if isinstance(exc, asyncpg.PostgresError) and not isinstance(
        exc, asyncpg.PostgresConnectionError | asyncpg.CannotConnectNowError
    ):
        return DurabilityError(f"the database refused the request: {exc}", cause="rejected")
    return DurabilityError(f"the database is unreachable: {type(exc).__name__}", cause="io")


class Database:
    """The two pools of one replica, and how its requests to them went."""

    def __init__(self, *, durable: asyncpg.Pool, relaxed: asyncpg.Pool) -> None:
        self._durable = durable
        self._relaxed = relaxed
        #: "ok", or "unreachable" until a request reaches the database again.
        self.health = "ok"
        #: Requests the database failed, by cause ("io", "rejected"), for /metrics.
        self.failed: dict[str, int] = {}
        #: Connections used and given back without a failure.
        self.transactions = 0

    @contextlib.asynccontextmanager
    async def conn(self, *, relaxed: bool = False) -> AsyncIterator[Conn]:
        """A pooled connection (``relaxed``: one whose commits do not wait for the disk); a
        failure of the database becomes the bus's own error."""
        try:
            async with (self._relaxed if relaxed else self._durable).acquire() as conn:
                yield conn
        except (ApiError, asyncio.CancelledError):
            raise
        except _FAILURES as exc:
            error = _db_error(exc)
            self.failed[error.cause] = self.failed.get(error.cause, 0) + 1
            if error.cause != "rejected":
                self.health = "unreachable"
            log.error("database request failed", extra={"cause": error.cause, "error": str(exc)})
            raise error from None
        else:
            self.health = "ok"
            self.transactions += 1

    async def close(self) -> None:
        await self._durable.close()
        await self._relaxed.close()


async def _keep_session(_conn: object) -> None:
    """What a connection goes back to its pool with: nothing to undo. The backend leaves no
    session state behind (settings are the pool's own, locks and LISTEN live on their own
    connections), so asyncpg's default reset (``RESET ALL; UNLISTEN *; ...``) would only cost
    a round trip per request."""


async def open_database(settings: DatabaseSettings) -> Database:
    """Connect both pools and bring the schema up to date. Raises :class:`StartupError`
    when the database cannot be reached or is too new."""
    shown = redact_url(settings.url)
    statement_ms = str(int(settings.statement_timeout_seconds * 1000))

    def pool(**session: str) -> Any:
        return asyncpg.create_pool(
            settings.url,
            min_size=1,
            max_size=settings.pool_size,
            reset=_keep_session,
            timeout=settings.connect_timeout_seconds,
            command_timeout=settings.statement_timeout_seconds + 1,
            server_settings={
                "statement_timeout": statement_ms,
                "application_name": "intent-bus",
                **session,
            },
        )

    try:
        durable = await pool()
    except _FAILURES as exc:
        raise StartupError(f"cannot connect to the database {shown}: {exc}") from None
    try:
        async with durable.acquire() as conn:
            await migrate(conn)
        relaxed = await pool(synchronous_commit="off")
    except StartupError:
        await durable.close()
        raise
    except _FAILURES as exc:
        await durable.close()
        raise StartupError(f"cannot prepare the database {shown}: {exc}") from None
    return Database(durable=durable, relaxed=relaxed)
