"""Per-key quotas: what one tenant may hold, so no tenant can exhaust the bus for the others.

The bus keeps every live intent and its payload in memory, every KV entry too, and a parked
long-poll costs a future and a connection. Each is bounded per key (the admin key is the bus's
owner and is not), and each refusal is checked at the door, before anything is accepted, so a
refused request loses nothing and changes nothing:

==========================  ===  ===========================================================
quota                       ans  counted
==========================  ===  ===========================================================
live intents                429  open and claimed intents the key published
live payload bytes          507  the payload bytes of those intents
goals                       429  distinct (namespace, goal) among those intents
KV entries                  429  the key's unexpired KV entries (ttl bounds them anyway)
parked long-polls           429  the key's claims waiting with ``wait=S``
==========================  ===  ===========================================================

Counts follow the engine's transitions: an intent counts from its publish until it is
fulfilled, dead or cancelled; a goal stops counting with the key's last live intent in it.

The arithmetic is here once for both backends: the embedded engine keeps each key's
:class:`KeyUsage` in memory (:class:`Quotas`); the PostgreSQL backend counts it from the
database (:mod:`.postgres.quotas`); both refuse with the same checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from .errors import ApiError
from .records import Caller, Intent
from .settings import LimitSettings

__all__ = [
    "KeyUsage",
    "Quotas",
    "check_kv_set",
    "check_parked",
    "check_publish",
    "quota_exceeded",
]

#: Seconds a client is told to wait after a count quota: live work drains in about that time.
RETRY_AFTER: Final = 5


def quota_exceeded(status: int, message: str) -> ApiError:
    headers = {"Retry-After": str(RETRY_AFTER)} if status == 429 else None
    return ApiError(status, "quota_exceeded", message, headers=headers)


@dataclass(slots=True)
class KeyUsage:
    """What one key holds now: its live intents, their payload bytes, and where they are."""

    intents: int = 0
    payload_bytes: int = 0
    #: (namespace, goal) -> live intents of this key there.
    goals: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, namespace: str, goal: str, size: int) -> None:
        """One more live intent of ``size`` payload bytes in (namespace, goal)."""
        self.intents += 1
        self.payload_bytes += size
        where = (namespace, goal)
        self.goals[where] = self.goals.get(where, 0) + 1

    def remove(self, namespace: str, goal: str, size: int) -> None:
        """One live intent fewer; a goal stops counting with the key's last intent in it."""
        self.intents -= 1
        self.payload_bytes -= size
        where = (namespace, goal)
        left = self.goals.get(where, 0) - 1
        if left > 0:
            self.goals[where] = left
        else:
            self.goals.pop(where, None)


def check_publish(
    limits: LimitSettings, usage: KeyUsage, *, namespace: str, goal: str, size: int
) -> None:
    """Refuse a publish of ``size`` payload bytes to (namespace, goal) by a key that holds
    ``usage``: raises the quota's :class:`ApiError`."""
    intents, payload_bytes, goals = usage.intents, usage.payload_bytes, len(usage.goals)
    if limits.max_live_intents_per_key and intents >= limits.max_live_intents_per_key:
        raise quota_exceeded(
            429,
            f"This key has {intents} live intents, the most this bus keeps per key "
            f"({limits.max_live_intents_per_key}); publish again once some are done.",
        )
    most = limits.max_live_bytes_per_key
    if most and payload_bytes + size > most:
        raise quota_exceeded(
            507,
            f"This key's live payloads take {payload_bytes} bytes and this one "
            f"{size}; this bus keeps at most {most} bytes per key.",
        )
    most_goals = limits.max_goals_per_key
    if most_goals and (namespace, goal) not in usage.goals and goals >= most_goals:
        raise quota_exceeded(
            429,
            f"This key has live intents in {goals} goals, the most this bus "
            f"keeps per key ({most_goals}); finish the work of another goal first.",
        )


def check_parked(limits: LimitSettings, parked: int, *, watches: bool = False) -> None:
    """Refuse one more long-poll claim (or, with ``watches``, backlog watch) of a key that
    has ``parked`` of them waiting already: raises the quota's :class:`ApiError`. The
    caller exempts the admin."""
    most = limits.max_parked_claims_per_key
    if most and parked >= most:
        raise _too_many_parked(most, watches=watches)


def _too_many_parked(most: int, *, watches: bool) -> ApiError:
    """The 429 for a key with ``most`` long-polls (claims, or backlog watches) parked."""
    if watches:
        return quota_exceeded(
            429,
            f"This key has {most} backlog watches waiting already, the most this bus "
            "parks per key; watch many goals in one request instead.",
        )
    return quota_exceeded(
        429,
        f"This key has {most} claims waiting already, the most this bus parks per key; "
        "claim with fewer concurrent long-polls.",
    )


def check_kv_set(most: int, *, held: int, exists: bool) -> None:
    """Refuse a KV write by a key that holds ``held`` unexpired entries when it may hold
    ``most`` (0: no limit), unless it replaces one of them (``exists``): raises the quota's
    :class:`ApiError`."""
    if most and not exists and held >= most:
        raise quota_exceeded(
            429,
            f"This key has {most} KV entries, the most this bus keeps per key; "
            "reuse a key or let entries expire.",
        )


class Quotas:
    """Live intents, bytes and goals per publishing key, in memory; checked at publish."""

    def __init__(self, limits: LimitSettings) -> None:
        self._limits = limits
        self._usage: dict[str, KeyUsage] = {}

    def usage(self, key_id: str) -> KeyUsage:
        return self._usage.get(key_id) or KeyUsage()

    def check_publish(self, caller: Caller, *, namespace: str, goal: str, size: int) -> None:
        """Refuse a publish that would take ``caller`` past a quota."""
        if caller.admin:
            return
        usage = self._usage.get(caller.key_id)
        if usage is not None:
            check_publish(self._limits, usage, namespace=namespace, goal=goal, size=size)

    def add(self, intent: Intent) -> None:
        """``intent`` is live from now (published, recovered, or retried)."""
        usage = self._usage.get(intent.publisher)
        if usage is None:
            usage = self._usage[intent.publisher] = KeyUsage()
        usage.add(intent.namespace, intent.goal, len(intent.payload))

    def remove(self, intent: Intent) -> None:
        """``intent`` is no longer live (fulfilled, dead, cancelled, purged, or never was)."""
        usage = self._usage.get(intent.publisher)
        if usage is None:
            return
        usage.remove(intent.namespace, intent.goal, len(intent.payload))
        if usage.intents <= 0:
            del self._usage[intent.publisher]
