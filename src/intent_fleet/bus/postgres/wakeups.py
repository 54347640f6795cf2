"""Waking this replica's long-polls when work lands on any replica.

A publish, a release, a retry or a lease the sweep ended runs ``NOTIFY intent_ready`` in
its own transaction, so the notification is delivered (to every replica listening) only
once the intent is committed and claimable. Each replica keeps one listening connection
and wakes its parked claims and backlog watches on that goal; they then ask the database
again, and ``SKIP LOCKED`` hands each intent to one of them.

A notification can be missed (the listening connection dropped and came back), and an
intent delayed by ``delay`` or a ``/fail`` backoff comes due without any transaction to
notify: the sweep wakes waiters on the goals of intents that came due, and every waiter
also looks again on its own after ``recheck`` seconds, so nothing waits for a wake-up that
never comes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, TypeVar

__all__ = ["CHANNEL", "Waiter", "Wakeups", "notification", "parse_notification"]

#: The channel of "an intent became claimable" notifications.
CHANNEL: Final = "intent_ready"
#: Seconds a parked waiter waits for a wake-up before it looks again by itself.
RECHECK_SECONDS: Final = 5.0

_Found = TypeVar("_Found")


def notification(namespace: str, goal: str) -> str:
    # A namespace has no '/', so the first one splits the two.
    return f"{namespace}/{goal}"


def parse_notification(payload: str) -> tuple[str, str] | None:
    namespace, sep, goal = payload.partition("/")
    return (namespace, goal) if sep else None


@dataclass(eq=False, slots=True)
class Waiter:
    """One parked claim (on ``pairs``, or on any goal of ``namespace``) or backlog watch."""

    pairs: frozenset[tuple[str, str]] = frozenset()
    namespace: str | None = None
    #: The key and ``X-Claim-Session`` of a claim, so its owner can interrupt it.
    key_id: str | None = None
    session: str | None = None
    is_claim: bool = False
    event: asyncio.Event = field(default_factory=asyncio.Event)
    interrupted: bool = False

    def wants(self, namespace: str, goal: str) -> bool:
        if self.namespace is not None:
            return namespace == self.namespace and (
                not self.pairs or (namespace, goal) in self.pairs
            )
        return (namespace, goal) in self.pairs


class Wakeups:
    """This replica's waiters, and what wakes them."""

    def __init__(self) -> None:
        self._waiters: list[Waiter] = []

    def __len__(self) -> int:
        return len(self._waiters)

    def claims(self) -> int:
        return sum(1 for w in self._waiters if w.is_claim)

    def watches(self) -> int:
        return sum(1 for w in self._waiters if not w.is_claim)

    def count_of(self, key_id: str, *, claims: bool) -> int:
        return sum(1 for w in self._waiters if w.key_id == key_id and w.is_claim == claims)

    async def park(
        self, waiter: Waiter, wait: float, look: Callable[[], Awaitable[_Found]]
    ) -> _Found | None:
        """Wait up to ``wait`` seconds for what ``look`` finds (anything truthy): it looks
        again at each wake-up, and every :data:`RECHECK_SECONDS` in case one was missed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        self.add(waiter)
        try:
            while not waiter.interrupted:
                left = deadline - loop.time()
                if left <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(left, RECHECK_SECONDS)):
                        await waiter.event.wait()
                waiter.event.clear()
                if waiter.interrupted:
                    return None
                if found := await look():
                    return found
            return None
        finally:
            self.remove(waiter)

    def add(self, waiter: Waiter) -> None:
        self._waiters.append(waiter)

    def remove(self, waiter: Waiter) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def ready(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Work became claimable on these goals: wake whoever waits on one of them."""
        pairs = set(pairs)
        for waiter in self._waiters:
            if any(waiter.wants(ns, goal) for ns, goal in pairs):
                waiter.event.set()

    def wake_all(self) -> None:
        """Everyone looks again (the listening connection came back: some news was lost)."""
        for waiter in self._waiters:
            waiter.event.set()

    def interrupt(self, key_id: str, session: str) -> int:
        hit = [
            w for w in self._waiters if w.is_claim and (w.key_id, w.session) == (key_id, session)
        ]
        for waiter in hit:
            waiter.interrupted = True
            waiter.event.set()
        return len(hit)

    def release_all(self) -> None:
        for waiter in self._waiters:
            waiter.interrupted = True
            waiter.event.set()
