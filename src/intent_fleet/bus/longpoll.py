"""Long-polls parked until an intent becomes ready: claims, and backlog watches.

A claim with ``wait=S`` that finds nothing registers here. When an intent
becomes ready, the engine offers it to the parked claims of its (namespace,
goal), then to the namespace-wide ones (claims without a goal), oldest first,
and hands it over directly: no wake-up storm, no second round trip.

An intent no parked claim took wakes the backlog watches on its goal instead
(``POST /stats`` with ``wait``): an autoscaler whose workers are at zero learns
of new work at once rather than at its next poll. A watch wakes only for an
intent its key could claim, so it tells a tenant nothing about another's work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

from .lifecycle import ClaimFilter, sees
from .records import Intent

__all__ = ["BacklogWatch", "BacklogWatches", "ParkedClaim", "ParkedClaims"]


@dataclass(slots=True)
class ParkedClaim:
    flt: ClaimFilter
    admin: bool
    future: asyncio.Future[Intent | None]


class ParkedClaims:
    """Parked claims by (namespace, goal or None), each in arrival order."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str | None], dict[int, ParkedClaim]] = {}
        #: Parked claims per caller, for the per-key quota.
        self._per_caller: dict[str, int] = {}

    def __len__(self) -> int:
        return sum(len(p) for p in self._by_key.values())

    def count_of(self, caller: str) -> int:
        return self._per_caller.get(caller, 0)

    def park(self, claim: ParkedClaim) -> None:
        key = (claim.flt.namespace, claim.flt.goal)
        self._by_key.setdefault(key, {})[id(claim)] = claim
        caller = claim.flt.caller
        self._per_caller[caller] = self._per_caller.get(caller, 0) + 1

    def unpark(self, claim: ParkedClaim) -> None:
        key = (claim.flt.namespace, claim.flt.goal)
        parked = self._by_key.get(key)
        if parked is not None and parked.pop(id(claim), None) is not None:
            if not parked:
                del self._by_key[key]
            caller = claim.flt.caller
            left = self._per_caller.get(caller, 0) - 1
            if left > 0:
                self._per_caller[caller] = left
            else:
                self._per_caller.pop(caller, None)

    def for_intent(self, namespace: str, goal: str) -> Iterator[ParkedClaim]:
        """Claims that could take an intent of this goal, goal-specific ones first.

        Answered claims are skipped; the caller unparks the one it serves.
        """
        for key in ((namespace, goal), (namespace, None)):
            parked = self._by_key.get(key)
            if not parked:
                continue
            for claim in list(parked.values()):
                if not claim.future.done():
                    yield claim

    def interrupt(self, caller: str, session: str) -> int:
        """Answer "nothing" to the parked claims of one caller's session (it is draining).

        A claim already handed an intent is not parked any more, so it keeps it:
        nothing in flight is lost.
        """
        count = 0
        for parked in self._by_key.values():
            for claim in parked.values():
                flt = claim.flt
                if flt.caller == caller and flt.session == session and not claim.future.done():
                    claim.future.set_result(None)
                    count += 1
        return count

    def release_all(self) -> None:
        """Answer every parked claim with "nothing" (the bus is shutting down)."""
        for parked in self._by_key.values():
            for claim in parked.values():
                if not claim.future.done():
                    claim.future.set_result(None)
        self._by_key.clear()
        self._per_caller.clear()


@dataclass(slots=True, eq=False)
class BacklogWatch:
    """One ``/stats`` long-poll: done when one of its goals gets work its viewer could claim."""

    pairs: frozenset[tuple[str, str]]
    #: The key whose view this is; None for the admin, who sees every intent.
    viewer: str | None
    future: asyncio.Future[None]


class BacklogWatches:
    """Backlog watches by (namespace, goal)."""

    def __init__(self) -> None:
        self._by_goal: dict[tuple[str, str], set[BacklogWatch]] = {}
        self._per_viewer: dict[str | None, int] = {}

    def __len__(self) -> int:
        return sum(self._per_viewer.values())

    def count_of(self, viewer: str | None) -> int:
        return self._per_viewer.get(viewer, 0)

    def add(self, watch: BacklogWatch) -> None:
        for pair in watch.pairs:
            self._by_goal.setdefault(pair, set()).add(watch)
        self._per_viewer[watch.viewer] = self.count_of(watch.viewer) + 1

    def remove(self, watch: BacklogWatch) -> None:
        for pair in watch.pairs:
            watches = self._by_goal.get(pair)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._by_goal[pair]
        left = self.count_of(watch.viewer) - 1
        if left > 0:
            self._per_viewer[watch.viewer] = left
        else:
            self._per_viewer.pop(watch.viewer, None)

    def on(self, namespace: str, goal: str) -> bool:
        """Whether any watch waits on this goal (one lookup, for the publish path)."""
        return (namespace, goal) in self._by_goal

    def wake(self, namespace: str, goal: str, owner: str) -> None:
        """An intent of ``owner`` (:func:`.lifecycle.owner_of`) became ready on this goal."""
        for watch in self._by_goal.get((namespace, goal), ()):
            if watch.future.done():
                continue
            if sees(watch.viewer, owner):
                watch.future.set_result(None)

    def release_all(self) -> None:
        """Answer every watch now (the bus is shutting down)."""
        for watches in self._by_goal.values():
            for watch in watches:
                if not watch.future.done():
                    watch.future.set_result(None)
