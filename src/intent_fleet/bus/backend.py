"""The storage interface: everything the HTTP layer asks of the bus's state.

Two backends keep that state. :class:`~.local.LocalBackend` is the embedded default: one
process owns it in memory and writes it to SQLite with group commit. The PostgreSQL backend
(:mod:`.postgres`) keeps nothing of its own between requests, so any number of bus replicas
can share one database. The routes see only these protocols: the same request gets the same
answer from either.

A :class:`Backend` is made of parts, one small protocol each (:class:`Keys`,
:class:`Nonces`, :class:`RateLimits`, :class:`Intents`, :class:`Backlogs`,
:class:`KeyValues`); a route asks the part it needs (``backend.intents.fulfill(...)``), and
each backend builds its parts side by side with the other's.

Every method that can touch storage is a coroutine, even where the local backend answers
from memory at once: a replica must ask the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from intent_fleet.protocol import GoalStats

from .lifecycle import ClaimFilter
from .records import ApiKey, Caller, Intent, Status, TerminalRow, Visibility

__all__ = [
    "Backend",
    "Backlogs",
    "Ended",
    "Figures",
    "Intents",
    "KeyValues",
    "Keys",
    "Nonces",
    "PublishOutcome",
    "PublishRequest",
    "RateLimits",
    "Result",
]


@dataclass(frozen=True, slots=True)
class PublishRequest:
    """A validated ``POST /intent`` body."""

    namespace: str
    goal: str
    payload: bytes
    visibility: Visibility
    priority: int
    delay: float
    max_attempts: int
    backoff_base: float
    target_worker: str | None
    required_capability: str | None


@dataclass(frozen=True, slots=True)
class Result:
    """A validated fulfil result: the bytes stored, and how to read them."""

    body: bytes
    #: "json" or "text".
    type: str


@dataclass(frozen=True, slots=True)
class Ended:
    """What a fulfil or a fail did: the intent's goal, and the status it has now."""

    namespace: str
    goal: str
    status: Status


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    """What ``POST /intent`` answers: the intent's id and namespace."""

    id: str
    namespace: str
    #: True when an earlier request with the same idempotency key is answered again.
    replayed: bool


@dataclass(frozen=True, slots=True)
class Figures:
    """What ``/metrics`` shows, read once per scrape; the process figures only for the
    whole bus (a tenant must not see others' traffic)."""

    #: (namespace, status) -> intents.
    status_counts: Mapping[tuple[str, str], int]
    stats: Sequence[GoalStats]
    claims_served: int = 0
    waiting_claims: int = 0
    waiting_watches: int = 0
    commits: int = 0
    ops_committed: int = 0
    failed_writes: Mapping[str, int] = field(default_factory=dict)
    #: "ok", or why the last write failed until one succeeds again.
    storage_health: str = "ok"
    unwritten_intents: int = 0
    kv_entries: int = 0
    #: Intents claimed now, by worker id (``key <key id>`` for a claim without one).
    held_by_worker: Mapping[str, int] = field(default_factory=dict)


class Keys(Protocol):
    """The API keys: who is calling, and the admin's changes."""

    async def authenticate(self, presented: str) -> Caller | None:
        """The tenant or admin behind a presented API key, or None."""
        ...

    async def add(self, key: ApiKey) -> None:
        """Store a new key; usable by every replica once this returns."""
        ...

    async def find(self, *, secret: str | None, key_id: str | None) -> ApiKey | None: ...

    async def revoke(self, key: ApiKey, *, now: float) -> None: ...

    async def all(self) -> list[ApiKey]: ...


class Nonces(Protocol):
    """The nonces of signed requests seen within the signature window."""

    async def remember(self, key_id: str, nonce: str, *, timestamp: int, now: float) -> bool:
        """Record a signed request's nonce; False when any replica saw it already."""
        ...


class RateLimits(Protocol):
    """Per-key request rates."""

    async def acquire(self, key_id: str, *, now: float) -> int | None:
        """None when the request may go ahead, else the seconds to wait."""
        ...


class Intents(Protocol):
    """The intent life cycle, by the rules of :mod:`.lifecycle`."""

    async def publish(
        self, caller: Caller, req: PublishRequest, *, idempotency_key: str | None, body: bytes
    ) -> PublishOutcome: ...

    async def claim(
        self, flt: ClaimFilter, *, admin: bool, wait: float, limit: int = 1
    ) -> list[Intent]:
        """Claim up to ``limit`` intents; with ``wait``, park until at least one is ready."""
        ...

    async def interrupt_claims(self, caller: Caller, session: str) -> int:
        """End the parked claims of one claimer session now; how many."""
        ...

    async def extend(
        self, caller: Caller, intent_id: str, token: str | None, seconds: int
    ) -> int: ...

    async def fulfill(
        self, caller: Caller, intent_id: str, token: str | None, *, result: Result | None
    ) -> Ended: ...

    async def fail(
        self, caller: Caller, intent_id: str, token: str | None, error: str, *, final: bool = False
    ) -> Ended: ...

    async def release(self, caller: Caller, intent_id: str, token: str | None) -> None: ...

    async def lookup(self, intent_id: str) -> Intent | TerminalRow | None:
        """An intent for /status and /result: live, or finished (without its payload)."""
        ...

    async def intent(self, intent_id: str) -> Intent | None:
        """A whole intent, payload included, in whatever state (admin views)."""
        ...

    async def cancel(self, intent_id: str) -> None: ...

    async def retry(self, intent_id: str) -> None: ...

    async def dead_letters(
        self, *, namespace: str | None, goal: str | None, limit: int, offset: int
    ) -> list[TerminalRow]: ...


class Backlogs(Protocol):
    """Backlog figures per (namespace, goal), as one viewer (None: the whole bus) sees them."""

    async def stats(
        self, namespace: str | None = None, goal: str | None = None, *, viewer: str | None = None
    ) -> list[GoalStats]:
        """Every goal with something in it that ``viewer`` sees, optionally filtered."""
        ...

    async def stats_of(
        self, pairs: Sequence[tuple[str, str]], *, viewer: str | None = None
    ) -> list[GoalStats]:
        """The backlog of each (namespace, goal), in the order asked (zeros when empty)."""
        ...

    async def watch(
        self, pairs: Sequence[tuple[str, str]], *, viewer: str | None, wait: float
    ) -> None:
        """Return once one of ``pairs`` has work ``viewer`` could claim, or after ``wait`` s."""
        ...


class KeyValues(Protocol):
    """The ephemeral KV store, one namespace per key."""

    async def get(self, owner: str, key: str, *, now: float) -> str | None: ...

    async def set(self, owner: str, key: str, value: str, *, expires_at: float, most: int) -> None:
        """Store a value; refuses (429) a new key past ``most`` entries (0 = no limit)."""
        ...


class Backend(Protocol):
    """The bus's state, wherever it lives: a part for each concern, and what spans them."""

    @property
    def keys(self) -> Keys: ...

    @property
    def nonces(self) -> Nonces: ...

    @property
    def rate_limits(self) -> RateLimits: ...

    @property
    def intents(self) -> Intents: ...

    @property
    def backlogs(self) -> Backlogs: ...

    @property
    def kv(self) -> KeyValues: ...

    @property
    def health(self) -> str:
        """ "ok", or why storage is failing ("full", "io", "unreachable")."""
        ...

    async def start(self, loop: asyncio.AbstractEventLoop) -> None: ...

    def release_waiters(self) -> None:
        """Answer every parked long-poll claim and backlog watch now (shutting down)."""
        ...

    async def close(self) -> None: ...

    async def figures(self, *, viewer: str | None) -> Figures:
        """What one ``/metrics`` scrape shows."""
        ...

    async def purge(self, namespace: str | None) -> int:
        """Delete every intent (of one namespace; all KV too when None): rows deleted."""
        ...

    async def cleanup(self) -> dict[str, int]:
        """Remove terminal intents past retention and expired KV entries."""
        ...
