"""In-memory records of the bus: intents and API keys.

The engine keeps every non-terminal intent in memory (the payload as the raw
JSON bytes it arrived as, so a claim never re-serialises it); terminal intents
live only in the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = [
    "STATE_FIELDS",
    "TRANSITION_FIELDS",
    "ApiKey",
    "Caller",
    "Intent",
    "Status",
    "TerminalRow",
    "Visibility",
]


class Status(StrEnum):
    """Life-cycle states (v2.1 names; v1.1 called ``dead`` ``failed``)."""

    OPEN = "open"
    CLAIMED = "claimed"
    FULFILLED = "fulfilled"
    DEAD = "dead"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({Status.FULFILLED, Status.DEAD, Status.CANCELLED})


class Visibility(StrEnum):
    PRIVATE = "private"
    PUBLIC = "public"


@dataclass(slots=True, eq=False)
class Intent:
    """One intent. Mutated only by the engine, on the event loop thread."""

    id: str
    namespace: str
    goal: str
    publisher: str
    visibility: Visibility
    payload: bytes
    priority: int
    max_attempts: int
    backoff_base: float
    target_worker: str | None
    required_capability: str | None
    status: Status
    attempts: int
    run_at: float
    created_at: float
    updated_at: float
    #: Monotonic insertion order; breaks ties in claim order ("oldest first").
    seq: int
    claim_token: str | None = None
    lease_until: float | None = None
    claimer: str | None = None
    worker_id: str | None = None
    last_error: str | None = None
    idempotency_key: str | None = None
    body_hash: bytes | None = None
    #: Bumped on every state change so stale heap entries can be recognised.
    generation: int = 0
    #: Which backlog counter the intent is in: "ready", "delayed", "claimed" or "".
    place: str = ""
    #: A fulfilled intent's result while its write is on the way to the disk (it stays in
    #: memory until then, and /result must not show it fulfilled without its result).
    result: bytes | None = None
    result_type: str | None = None

    def sort_key(self) -> tuple[int, float, int, int]:
        """Claim order: highest priority, then earliest run_at, fewest attempts, oldest."""
        return (-self.priority, self.run_at, self.attempts, self.seq)


#: The :class:`Intent` fields its life cycle changes after the publish (status first): what
#: a transition's write stores, the one list the store's update is built from.
STATE_FIELDS: Final = (
    "status",
    "attempts",
    "run_at",
    "updated_at",
    "claim_token",
    "lease_until",
    "claimer",
    "worker_id",
    "last_error",
)
#: What a transition may change in memory: its state, and a fulfilment's result until the
#: write carrying it is durable. What an undo puts back.
TRANSITION_FIELDS: Final = (*STATE_FIELDS, "result", "result_type")


@dataclass(slots=True, eq=False)
class ApiKey:
    """A tenant key. Only the SHA-256 of the secret is ever stored."""

    id: str
    name: str
    secret_hash: str
    created_at: float
    revoked_at: float | None = None
    admin: bool = False


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated key behind a request."""

    key_id: str
    admin: bool = False


@dataclass(frozen=True, slots=True)
class TerminalRow:
    """What status/result queries need of an intent that is no longer in memory."""

    id: str
    namespace: str
    goal: str
    publisher: str
    claimer: str | None
    status: str
    attempts: int
    run_at: float
    created_at: float
    updated_at: float
    last_error: str | None
    result: bytes | None
    result_type: str | None
    completed_at: float | None
    priority: int
    visibility: str
    target_worker: str | None
    required_capability: str | None
    max_attempts: int
