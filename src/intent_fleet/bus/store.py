"""Durable storage of the bus in SQLite, with group commit.

One writer thread owns the write connection. Requests hand it batches of
statements and await a future; the thread takes everything queued, runs it in
one transaction, commits (WAL + ``synchronous=FULL``: the WAL is fsynced at
every commit) and only then resolves the futures. Concurrent requests share a
commit, so durability costs one fsync per batch rather than per request.

A write that fails fails only its own request: when a statement of a batch
fails, the batch is run again with each request inside a savepoint, so the
failed request's savepoint alone is rolled back and the rest of the group
commit goes on (the common case, where nothing fails, pays for no savepoints).
A commit that fails (a full disk, an I/O error) fails every request of that
commit and nothing else: the bus goes on
serving, and the next commit is tried afresh, so it recovers by itself when
space returns. :attr:`Store.health` says how the last commit went.

Reads that need the database (terminal intents, idempotency look-ups, dead
letters) use a second, read-only connection on the event loop thread; WAL lets
them run while the writer commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import operator
import os
import queue
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from .errors import DurabilityError, StartupError, StorageFullError
from .records import STATE_FIELDS, ApiKey, Intent, Status, TerminalRow, Visibility

__all__ = [
    "INTENT_FIELDS",
    "OWNER_SQL",
    "TERMINAL_FIELDS",
    "LoadedState",
    "Op",
    "Store",
    "intent_from_row",
]

log = logging.getLogger(__name__)

#: A statement and its parameters, or a function run on the write connection
#: inside the batch's transaction (its return value resolves the future).
Op = tuple[str, Sequence[Any]] | Callable[[sqlite3.Connection], Any]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS intents (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    namespace TEXT NOT NULL,
    goal TEXT NOT NULL,
    publisher TEXT NOT NULL,
    visibility TEXT NOT NULL,
    payload BLOB NOT NULL,
    priority INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    backoff_base REAL NOT NULL,
    target_worker TEXT,
    required_capability TEXT,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    run_at REAL NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    claim_token TEXT,
    lease_until REAL,
    claimer TEXT,
    worker_id TEXT,
    last_error TEXT,
    idempotency_key TEXT,
    body_hash BLOB,
    result BLOB,
    result_type TEXT,
    completed_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS intents_idempotency
    ON intents (publisher, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS intents_status ON intents (status, updated_at);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS kv (
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (owner, key)
);
"""

#: Whose an intent is for a tenant's view (claim_index.owner_of): '' for public intents.
OWNER_SQL = "CASE WHEN visibility='public' THEN '' ELSE publisher END"

#: The intents columns an :class:`Intent` is stored in and read from, by name: the one list
#: the INSERT, the SELECTs and the row mapping are all built from.
INTENT_FIELDS: Final = (
    "id",
    "seq",
    "namespace",
    "goal",
    "publisher",
    "visibility",
    "payload",
    "priority",
    "max_attempts",
    "backoff_base",
    "target_worker",
    "required_capability",
    "created_at",
    *STATE_FIELDS,
    "idempotency_key",
    "body_hash",
)
_INTENT_COLUMNS: Final = ", ".join(INTENT_FIELDS)
_intent_attributes: Final = operator.attrgetter(*INTENT_FIELDS)
_VISIBILITY: Final = INTENT_FIELDS.index("visibility")
_STATUS: Final = INTENT_FIELDS.index("status")


def _intent_values(i: Intent) -> list[Any]:
    """An intent's column values in :data:`INTENT_FIELDS` order. Its enums go in as plain
    text: sqlite3 binds a str subclass through its slower adapter path (measured here: a
    four-column insert with two enums 2.3 us, with their text 1.5 us), in the writer thread
    that holds the GIL."""
    values = list(_intent_attributes(i))
    values[_VISIBILITY] = i.visibility.value
    values[_STATUS] = i.status.value
    return values


_KEY_FIELDS: Final = ("id", "name", "secret_hash", "created_at", "revoked_at")


#: The columns a :class:`TerminalRow` is read from: its own fields, by name.
TERMINAL_FIELDS: Final = tuple(f.name for f in dataclasses.fields(TerminalRow))
_TERMINAL_COLUMNS: Final = ", ".join(TERMINAL_FIELDS)


@dataclass(slots=True)
class LoadedState:
    """Everything the engine rebuilds its memory from at start."""

    intents: list[Intent] = field(default_factory=list)
    keys: list[ApiKey] = field(default_factory=list)
    kv: list[tuple[str, str, str, float]] = field(default_factory=list)
    #: (namespace, goal, status, owner) -> count, for terminal states.
    terminal_counts: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    max_seq: int = 0


_STOP = object()


class Store:
    """The SQLite database and its writer thread."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: sqlite3.Connection | None = None
        #: Number of commits and of ops committed, for /metrics.
        self.commits = 0
        self.ops_committed = 0
        #: Requests whose writes failed, by cause ("full", "io", "rejected"), for /metrics.
        self.failed_writes: dict[str, int] = {}
        #: "ok", or the cause of the last failed commit until one succeeds again.
        self.health = "ok"

    # -- life cycle -------------------------------------------------------
    def _create_private(self) -> None:
        """The database (and so its -wal and -shm, which SQLite creates with the same mode)
        readable by this user only: it holds every payload and the key hashes."""
        self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            mode = stat.S_IMODE(os.fstat(fd).st_mode)
            if mode & 0o077:
                os.fchmod(fd, 0o600)
                log.warning(
                    "database was readable by others; made it private",
                    extra={"db": str(self._path), "mode": oct(mode)},
                )
        finally:
            os.close(fd)
        for suffix in ("-wal", "-shm"):
            companion = self._path.with_name(self._path.name + suffix)
            if companion.exists() and stat.S_IMODE(companion.stat().st_mode) & 0o077:
                companion.chmod(0o600)

    def open(self, *, now: float) -> LoadedState:
        """Create or migrate the schema and load the live state."""
        try:
            self._create_private()
            conn = self._connect()
            conn.executescript(_SCHEMA)
            row = conn.execute("SELECT v FROM meta WHERE k='schema'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise StartupError(
                    f"database {self._path} has schema {row[0]}, newer than this bus "
                    f"understands ({SCHEMA_VERSION}); upgrade intent-fleet"
                )
            state = self._load(conn, now=now)
            conn.close()
            self._reader = sqlite3.connect(
                self._path, isolation_level=None, check_same_thread=False
            )
            self._reader.execute("PRAGMA query_only=ON")
        except (sqlite3.Error, OSError) as exc:
            raise StartupError(f"cannot open database {self._path}: {exc}") from exc
        return state

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="bus-writer", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        """Commit what is queued, then stop the writer and close the connections."""
        if self._thread is not None:
            self._queue.put(_STOP)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # -- writes -----------------------------------------------------------
    def submit(
        self,
        ops: Sequence[Op],
        *,
        on_durable: Callable[[], None] | None = None,
        on_failed: Callable[[], None] | None = None,
    ) -> asyncio.Future[list[Any]]:
        """Queue ops for the next commit; the future resolves once they are on disk.

        ``on_durable`` / ``on_failed`` run when the outcome is known, whether or not the
        request that caused the write is still waiting: a client that hangs up must not
        leave memory and disk disagreeing.
        """
        assert self._loop is not None, "Store.start() was not called"
        fut: asyncio.Future[list[Any]] = self._loop.create_future()
        if on_durable is not None or on_failed is not None:

            def settled(f: asyncio.Future[list[Any]]) -> None:
                if f.cancelled() or f.exception() is not None:
                    if on_failed is not None:
                        on_failed()
                elif on_durable is not None:
                    on_durable()

            fut.add_done_callback(settled)
        self._queue.put((ops, fut))
        return fut

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    def _run(self) -> None:
        conn = self._connect()
        try:
            while True:
                first = self._queue.get()
                batch = [] if first is _STOP else [first]
                stopping = first is _STOP
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stopping = True
                    else:
                        batch.append(item)
                if batch:
                    self._commit(conn, batch)
                if stopping:
                    return
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[Any]) -> None:
        outcomes: list[list[Any] | BaseException] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                # The common case, at full speed: every request's ops, no savepoints.
                outcomes = [self._run_ops(conn, ops) for ops, _fut in batch]
            except Exception:
                if not conn.in_transaction:
                    raise  # SQLite rolled it all back (a full disk, I/O): all fail
                # One request failed: undo the batch and run it again, each request alone.
                conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                outcomes = [self._run_request(conn, ops) for ops, _fut in batch]
            conn.execute("COMMIT")
            self.commits += 1
            self.ops_committed += sum(
                len(ops)
                for (ops, _), out in zip(batch, outcomes, strict=False)
                if isinstance(out, list)
            )
        except Exception as exc:  # the transaction itself failed: none of it is on disk
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            outcomes = [exc] * len(batch)
        loop = self._loop
        assert loop is not None
        futs = [fut for _ops, fut in batch]
        loop.call_soon_threadsafe(self._resolve, futs, outcomes)

    @staticmethod
    def _run_ops(conn: sqlite3.Connection, ops: Sequence[Op]) -> list[Any]:
        out: list[Any] = []
        for op in ops:
            if callable(op):
                out.append(op(conn))
            else:
                conn.execute(op[0], op[1])
                out.append(None)
        return out

    @classmethod
    def _run_request(cls, conn: sqlite3.Connection, ops: Sequence[Op]) -> list[Any] | BaseException:
        """One request's ops inside a savepoint: a failure undoes this request alone."""
        conn.execute("SAVEPOINT request")
        try:
            out = cls._run_ops(conn, ops)
        except Exception as exc:
            if not conn.in_transaction:
                raise  # SQLite rolled the whole transaction back (a full disk, I/O): all fail
            conn.execute("ROLLBACK TO request")
            conn.execute("RELEASE request")
            return exc
        conn.execute("RELEASE request")
        return out

    def _resolve(
        self, futs: list[asyncio.Future[list[Any]]], outcomes: list[list[Any] | BaseException]
    ) -> None:
        committed = False
        for fut, out in zip(futs, outcomes, strict=True):
            if isinstance(out, BaseException):
                error = _durability_error(out)
                cause = error.cause
                self.failed_writes[cause] = self.failed_writes.get(cause, 0) + 1
                if cause != "rejected":
                    self.health = cause
                log.error("write failed", extra={"cause": cause, "error": str(out)})
                if not fut.done():
                    fut.set_exception(error)
            else:
                committed = True
                if not fut.done():
                    fut.set_result(out)
        if committed:
            self.health = "ok"

    # -- reads (event loop thread) ---------------------------------------
    def _read(self) -> sqlite3.Connection:
        assert self._reader is not None, "Store.open() was not called"
        return self._reader

    def read_terminal(self, intent_id: str) -> TerminalRow | None:
        row = (
            self._read()
            .execute(
                f"SELECT {_TERMINAL_COLUMNS} FROM intents WHERE id=?",
                (intent_id,),
            )
            .fetchone()
        )
        return _terminal_from_row(row) if row is not None else None

    def read_intent(self, intent_id: str) -> Intent | None:
        """A whole intent (payload included), e.g. a dead one an admin retries."""
        row = (
            self._read()
            .execute(f"SELECT {_INTENT_COLUMNS} FROM intents WHERE id=?", (intent_id,))
            .fetchone()
        )
        return intent_from_row(row) if row is not None else None

    def find_idempotent(self, publisher: str, key: str) -> tuple[str, str, bytes | None] | None:
        """(id, namespace, body hash) of the intent published with this key, if any."""
        row = (
            self._read()
            .execute(
                "SELECT id, namespace, body_hash FROM intents"
                " WHERE publisher=? AND idempotency_key=?",
                (publisher, key),
            )
            .fetchone()
        )
        return (row[0], row[1], row[2]) if row is not None else None

    def dead_letters(
        self, *, namespace: str | None, goal: str | None, limit: int, offset: int
    ) -> list[TerminalRow]:
        sql = f"SELECT {_TERMINAL_COLUMNS} FROM intents WHERE status='dead'"
        params: list[Any] = []
        if namespace is not None:
            sql += " AND namespace=?"
            params.append(namespace)
        if goal is not None:
            sql += " AND goal=?"
            params.append(goal)
        sql += " ORDER BY updated_at DESC LIMIT ? OFFSET ?"
        params += [limit, offset]
        return [_terminal_from_row(r) for r in self._read().execute(sql, params).fetchall()]

    # -- loading ----------------------------------------------------------
    def _load(self, conn: sqlite3.Connection, *, now: float) -> LoadedState:
        state = LoadedState()
        rows = conn.execute(
            f"SELECT {_INTENT_COLUMNS} FROM intents WHERE status IN ('open','claimed') ORDER BY seq"
        ).fetchall()
        state.intents = [intent_from_row(r) for r in rows]
        state.keys = [
            ApiKey(**dict(zip(_KEY_FIELDS, r, strict=True)))
            for r in conn.execute(f"SELECT {', '.join(_KEY_FIELDS)} FROM api_keys")
        ]
        state.kv = [
            (r[0], r[1], r[2], r[3])
            for r in conn.execute(
                "SELECT owner, key, value, expires_at FROM kv WHERE expires_at > ?", (now,)
            )
        ]
        for ns, goal, status, owner, count in conn.execute(
            f"SELECT namespace, goal, status, {OWNER_SQL} AS owner, count(*) FROM intents"
            " WHERE status NOT IN ('open','claimed') GROUP BY namespace, goal, status, owner"
        ):
            state.terminal_counts[(ns, goal, status, owner)] = count
        state.max_seq = conn.execute("SELECT coalesce(max(seq), 0) FROM intents").fetchone()[0]
        return state


def _durability_error(exc: BaseException) -> DurabilityError:
    """What a failed write means for its request: a full disk, an I/O failure, or a write
    the database refused (this request's own fault, or a bug; never the others')."""
    if isinstance(exc, sqlite3.OperationalError):
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(exc):
            return StorageFullError(f"the disk is full: {exc}", cause="full")
        return DurabilityError(f"the database failed: {exc}", cause="io")
    return DurabilityError(f"the database refused the write: {exc}", cause="rejected")


def intent_from_row(row: Iterable[Any]) -> Intent:
    values = dict(zip(INTENT_FIELDS, row, strict=True))
    values["visibility"] = Visibility(values["visibility"])
    values["status"] = Status(values["status"])
    values["payload"] = bytes(values["payload"])
    return Intent(**values)


def _terminal_from_row(row: Sequence[Any]) -> TerminalRow:
    return TerminalRow(*row)  # selected in the dataclass's own field order


def insert_intent_op(i: Intent) -> Op:
    return (
        f"INSERT INTO intents ({_INTENT_COLUMNS}) VALUES ({', '.join('?' * len(INTENT_FIELDS))})",
        _intent_values(i),
    )


assert STATE_FIELDS[0] == "status"  # bound as its text, see _intent_values
_UPDATE_STATE: Final = f"UPDATE intents SET {'=?, '.join(STATE_FIELDS)}=? WHERE id=?"
_state_but_status: Final = operator.attrgetter(*STATE_FIELDS[1:], "id")


def update_state_op(i: Intent) -> Op:
    """Persist the life-cycle fields of an intent (:data:`~.records.STATE_FIELDS`)."""
    return (_UPDATE_STATE, (i.status.value, *_state_but_status(i)))


def fulfill_op(i: Intent, *, now: float) -> Op:
    """Persist a fulfilment, with the result the engine put on the intent."""
    return (
        "UPDATE intents SET status=?, attempts=?, updated_at=?, claim_token=NULL,"
        " lease_until=NULL, claimer=?, worker_id=?, result=?, result_type=?, completed_at=?"
        " WHERE id=?",
        (
            i.status.value,
            i.attempts,
            now,
            i.claimer,
            i.worker_id,
            i.result,
            i.result_type,
            now,
            i.id,
        ),
    )


def sweep_terminal_op(cutoff: float) -> Op:
    """Delete terminal intents last changed before ``cutoff``; returns (ns, goal, status,
    owner) of each row removed."""

    def sweep(conn: sqlite3.Connection) -> list[tuple[str, str, str, str]]:
        return conn.execute(
            "DELETE FROM intents WHERE status IN ('fulfilled','dead','cancelled')"
            f" AND updated_at < ? RETURNING namespace, goal, status, {OWNER_SQL}",
            (cutoff,),
        ).fetchall()

    return sweep


def purge_op(namespace: str | None) -> Op:
    """Delete every intent (of one namespace); returns how many rows went."""

    def purge(conn: sqlite3.Connection) -> int:
        if namespace is None:
            return conn.execute("DELETE FROM intents").rowcount
        return conn.execute("DELETE FROM intents WHERE namespace=?", (namespace,)).rowcount

    return purge


def insert_key_op(key: ApiKey) -> Op:
    return (
        "INSERT INTO api_keys (id, name, secret_hash, created_at) VALUES (?,?,?,?)",
        (key.id, key.name, key.secret_hash, key.created_at),
    )


def revoke_key_op(key_id: str, *, now: float) -> Op:
    return ("UPDATE api_keys SET revoked_at=? WHERE id=?", (now, key_id))


def kv_set_op(owner: str, key: str, value: str, *, expires_at: float) -> Op:
    return (
        "INSERT OR REPLACE INTO kv (owner, key, value, expires_at) VALUES (?,?,?,?)",
        (owner, key, value, expires_at),
    )


def kv_sweep_op(*, now: float) -> Op:
    return ("DELETE FROM kv WHERE expires_at <= ?", (now,))


def kv_purge_op() -> Op:
    return ("DELETE FROM kv", ())


__all__ += ["insert_key_op", "kv_purge_op", "kv_set_op", "kv_sweep_op", "revoke_key_op"]
__all__ += ["fulfill_op", "insert_intent_op", "purge_op", "sweep_terminal_op", "update_state_op"]
