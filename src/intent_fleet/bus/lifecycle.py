"""The rules of an intent's life, written once for both storage backends.

The embedded engine (:mod:`.engine`) applies them to intents in memory; the PostgreSQL
engine (:mod:`.postgres.engine`) carries them out in SQL, with the numbers and status sets
passed in from here as statement parameters. Nothing here touches storage.

- **Who may claim what** (:class:`ClaimFilter`, :func:`owner_of`, :func:`sees`): public
  intents are open to every key, private ones to their publisher alone; a claim may narrow
  that by publisher, and an intent by target worker and required capability.
- **Leases**: a claim holds an intent for the bus's claim timeout; ``/extend_claim`` moves
  the end within the protocol's bounds (:func:`extension`); a release gives the attempt back
  (:func:`refunded`).
- **Retries**: after ``/fail`` an intent waits ``backoff_base * 2^attempts`` seconds, capped
  at a day, plus up to two seconds of jitter (:func:`retry_delay`).
- **Dead letters**: a failure, or a lease that ran out, on the last allowed attempt ends the
  intent as dead (:func:`dies`); an admin may cancel live and dead intents and retry dead
  and cancelled ones (:data:`CANCELLABLE`, :data:`RETRYABLE`).
- The refusals both backends answer with, word for word.

The per-key quotas' arithmetic is the other shared rule set, in :mod:`.quotas`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

from .errors import ApiError
from .records import Intent, Status, Visibility
from .settings import QueueSettings

__all__ = [
    "CANCELLABLE",
    "CANCELLED_BY_ADMIN",
    "LEASE_EXPIRED",
    "PUBLIC_OWNER",
    "RETRIED_BY_ADMIN",
    "RETRYABLE",
    "RETRY_DELAY_CAP_SECONDS",
    "RETRY_DOUBLINGS",
    "ClaimFilter",
    "cannot_cancel",
    "cannot_retry",
    "dies",
    "extension",
    "idempotency_conflict",
    "not_found",
    "not_leased",
    "owner_of",
    "refunded",
    "retry_delay",
    "retry_jitter",
    "sees",
]


# -- who may claim what --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClaimFilter:
    """Who is claiming and what they may take."""

    caller: str
    namespace: str
    goal: str | None
    #: Only intents of this publisher (the caller itself, or anyone for an admin).
    publisher: str | None = None
    worker_id: str | None = None
    capabilities: frozenset[str] = frozenset()
    #: ``X-Claim-Session``: lets the claimer interrupt its own parked claims.
    session: str | None = None

    def accepts(self, intent: Intent) -> bool:
        """Whether this claim may take ``intent``, visibility aside (the claim index keeps
        each key's private intents apart, so only what a key can see is ever offered)."""
        if self.publisher is not None and intent.publisher != self.publisher:
            return False
        if intent.target_worker is not None and intent.target_worker != self.worker_id:
            return False
        return intent.required_capability is None or (
            intent.required_capability in self.capabilities
        )

    def private_owner(self, *, admin: bool) -> str:
        """Whose private intents this claim sees: the caller's own, or those of the
        publisher an admin names."""
        return self.publisher if (admin and self.publisher is not None) else self.caller


#: The owner of public intents in per-owner counts; private ones are owned by their publisher.
PUBLIC_OWNER: Final = ""


def owner_of(intent: Intent) -> str:
    """Whose intents these are for a tenant's view: everyone's (public) or one key's."""
    return PUBLIC_OWNER if intent.visibility is Visibility.PUBLIC else intent.publisher


def sees(viewer: str | None, owner: str) -> bool:
    """Whether ``viewer`` (a key id; None for the whole bus) may see and claim intents of
    ``owner`` (as :func:`owner_of` names it)."""
    return viewer is None or owner in (PUBLIC_OWNER, viewer)


# -- leases -----------------------------------------------------------------------------


def extension(seconds: int, queue: QueueSettings) -> int:
    """The lease ``/extend_claim`` grants when asked for ``seconds``: within the protocol's
    bounds, so a worker can neither drop a lease at once nor hold one for a day."""
    return max(queue.min_extend_seconds, min(queue.max_extend_seconds, seconds))


def refunded(attempts: int) -> int:
    """An intent's attempts once a claim nobody worked on is given back: that claim does not
    count against ``max_attempts``."""
    return max(0, attempts - 1)


# -- retries ----------------------------------------------------------------------------

#: Retry delays double with each attempt this many times at most (2^20 x the base).
RETRY_DOUBLINGS: Final = 20
#: The longest retry delay before jitter: a day, so a retry is never lost in the far future.
RETRY_DELAY_CAP_SECONDS: Final = 24 * 3600.0
#: Up to this much random delay is added, so a batch that failed together does not come
#: back together (as the reference server does).
RETRY_JITTER_SECONDS: Final = 2.0


def retry_jitter(rng: random.Random) -> float:
    """A random share of :data:`RETRY_JITTER_SECONDS` for one retry."""
    return rng.uniform(0.0, RETRY_JITTER_SECONDS)


def retry_delay(backoff_base: float, attempts: int, *, jitter: float) -> float:
    """Seconds a failed intent waits before it is claimable again, after ``attempts``
    claims: ``backoff_base * 2^attempts``, capped, plus ``jitter``."""
    doubled: float = backoff_base * (2 ** min(attempts, RETRY_DOUBLINGS))
    return min(doubled, RETRY_DELAY_CAP_SECONDS) + jitter


# -- dead letters and the admin's changes ----------------------------------------------


def dies(attempts: int, max_attempts: int, *, final: bool = False) -> bool:
    """Whether an intent whose claim failed (or whose lease ran out) is dead rather than
    retried: its last allowed attempt, or a failure its worker called final."""
    return final or attempts >= max_attempts


#: ``last_error`` of an intent whose lease ran out on its last attempt with no error of its own.
LEASE_EXPIRED: Final = "Lease expired on the last attempt."
CANCELLED_BY_ADMIN: Final = "Cancelled by admin"
RETRIED_BY_ADMIN: Final = "Retried by admin"

#: What an admin may cancel: live intents, and dead letters (discarded, kept as cancelled).
CANCELLABLE: Final = frozenset({Status.OPEN, Status.CLAIMED, Status.DEAD})
#: What an admin may retry, with a fresh set of attempts.
RETRYABLE: Final = frozenset({Status.DEAD, Status.CANCELLED})


def cannot_cancel(status: Status) -> ApiError:
    return ApiError(
        409,
        "conflict",
        f"Intent is already {status.value}; only live or dead intents can be cancelled.",
    )


def cannot_retry(status: Status) -> ApiError:
    if not status.terminal:
        return ApiError(
            409, "conflict", "Intent is still live; only dead or cancelled ones can be retried."
        )
    return ApiError(
        409,
        "conflict",
        f"Intent is {status.value}; only dead or cancelled ones can be retried.",
    )


# -- the refusals both backends share --------------------------------------------------


def not_leased() -> ApiError:
    """A lease operation by a caller that does not hold the lease (or a stale token)."""
    return ApiError(
        404,
        "not_found",
        "Intent not found, not claimed by you, or the claim token is stale "
        "(the lease expired or the intent was claimed again).",
    )


def not_found() -> ApiError:
    return ApiError(404, "not_found", "Intent not found.")


def idempotency_conflict() -> ApiError:
    return ApiError(
        409,
        "idempotency_conflict",
        "Idempotency-Key was already used with a different request body.",
    )
