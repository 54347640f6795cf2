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
    "check_publish",
    "kv_full",
    "quota_exceeded",
    "too_many_parked",
]

#: Seconds a client is told to wait after a count quota: live work drains in about that time.
RETRY_AFTER: Final = 5


def quota_exceeded(status: int, message: str) -> ApiError:
    headers = {"Retry-After": str(RETRY_AFTER)} if status == 429 else None
    return ApiError(status, "quota_exceeded", message, headers=headers)


@dataclass(slots=True)
class KeyUsage:
    """What one key holds now."""

    intents: int = 0
    payload_bytes: int = 0
    #: (namespace, goal) -> live intents of this key there.
    goals: dict[tuple[str, str], int] = field(default_factory=dict)


def check_publish(
    limits: LimitSettings, *, intents: int, payload_bytes: int, goals: int, in_goal: bool, size: int
) -> None:
    """Refuse a publish of ``size`` bytes by a key that holds ``intents`` live intents of
    ``payload_bytes`` in ``goals`` goals (``in_goal``: one of them is this intent's)."""
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
    if most_goals and not in_goal and goals >= most_goals:
        raise quota_exceeded(
            429,
            f"This key has live intents in {goals} goals, the most this bus "
            f"keeps per key ({most_goals}); finish the work of another goal first.",
        )


def too_many_parked(most: int, *, watches: bool = False) -> ApiError:
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


def kv_full(most: int) -> ApiError:
    return quota_exceeded(
        429,
        f"This key has {most} KV entries, the most this bus keeps per key; "
        "reuse a key or let entries expire.",
    )


class Quotas:
    """Live intents, bytes and goals per publishing key; checked at publish."""

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
        if usage is None:
            return
        check_publish(
            self._limits,
            intents=usage.intents,
            payload_bytes=usage.payload_bytes,
            goals=len(usage.goals),
            in_goal=(namespace, goal) in usage.goals,
            size=size,
        )

    def add(self, intent: Intent) -> None:
        """``intent`` is live from now (published, recovered, or retried)."""
        usage = self._usage.get(intent.publisher)
        if usage is None:
            usage = self._usage[intent.publisher] = KeyUsage()
        usage.intents += 1
        usage.payload_bytes += len(intent.payload)
        where = (intent.namespace, intent.goal)
        usage.goals[where] = usage.goals.get(where, 0) + 1

    def remove(self, intent: Intent) -> None:
        """``intent`` is no longer live (fulfilled, dead, cancelled, purged, or never was)."""
        usage = self._usage.get(intent.publisher)
        if usage is None:
            return
        usage.intents -= 1
        usage.payload_bytes -= len(intent.payload)
        where = (intent.namespace, intent.goal)
        left = usage.goals.get(where, 0) - 1
        if left > 0:
            usage.goals[where] = left
        else:
            usage.goals.pop(where, None)
        if usage.intents <= 0:
            del self._usage[intent.publisher]
