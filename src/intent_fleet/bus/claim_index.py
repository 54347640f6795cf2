"""Which intent a claim gets: the in-memory claim index.

Per (namespace, goal) there is one heap of public intents and one heap per
publisher of private intents, each ordered by claim order (priority, run_at,
attempts, age). A claimer sees the public heap and its own private heap, so
the common claim is O(log n) whatever the number of tenants; the counts a
tenant's ``/stats`` shows come from the same split. Entries are
removed lazily: an entry whose intent has moved on (its ``generation``
changed) is dropped when it reaches the top.

Delayed intents (``delay``, ``/fail`` backoff) wait in a time-ordered heap
until their ``run_at``; leases wait in another until they expire.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .lifecycle import PUBLIC_OWNER, ClaimFilter, owner_of
from .records import Intent, Status

__all__ = [
    "Backlog",
    "GoalQueue",
    "ReadyIndex",
    "TimedHeap",
]

_Entry = tuple[int, float, int, int, int, Intent]  # sort key..., generation, intent

#: Stale heap entries tolerated before a sweep, at the least (see GoalQueue._compact).
COMPACT_MIN = 1024

#: How many ineligible entries one claim may step over in one heap before it
#: gives up; bounds the cost of rare filters (target_worker, capability, publisher).
MAX_SKIP = 10_000


def _entry(intent: Intent) -> _Entry:
    return (-intent.priority, intent.run_at, intent.attempts, intent.seq, intent.generation, intent)


def _live(entry: _Entry) -> bool:
    intent = entry[5]
    return intent.status is Status.OPEN and intent.generation == entry[4]


_AgeEntry = tuple[float, int, int, Intent]  # run_at, seq, generation, intent


@dataclass(frozen=True, slots=True)
class Backlog:
    """Counts of one goal as one viewer sees them."""

    ready: int
    delayed: int
    claimed: int
    #: run_at of the oldest ready intent the viewer could claim, or None.
    oldest_ready_run_at: float | None


@dataclass(slots=True)
class GoalQueue:
    """Ready intents of one (namespace, goal), and its counts, whole and per tenant.

    A tenant (an API key) sees what it could claim: public intents and its own private
    ones, plus what its own workers hold. ``owners`` and ``claimed_by`` keep those
    counts; entries that fall to zero are dropped, so memory follows what is live.
    """

    public: list[_Entry] = field(default_factory=list)
    private: dict[str, list[_Entry]] = field(default_factory=dict)
    #: Per owner: heap of (run_at, seq, generation, intent), for "age of the oldest ready".
    by_age: dict[str, list[_AgeEntry]] = field(default_factory=dict)
    ready: int = 0
    delayed: int = 0
    claimed: int = 0
    #: Per owner (PUBLIC_OWNER or a publisher): [ready, delayed].
    owners: dict[str, list[int]] = field(default_factory=dict)
    #: Claimed intents per claiming key: what that key's workers hold.
    claimed_by: dict[str, int] = field(default_factory=dict)
    #: Entries left behind by intents that moved on since the last sweep.
    stale: int = 0

    @property
    def empty(self) -> bool:
        return self.ready == 0 and self.delayed == 0 and self.claimed == 0

    def _owned(self, intent: Intent, slot: int, delta: int) -> None:
        owner = owner_of(intent)
        counts = self.owners.get(owner)
        if counts is None:
            counts = self.owners[owner] = [0, 0]
        counts[slot] += delta
        if counts[0] == 0 and counts[1] == 0:
            del self.owners[owner]

    def push(self, intent: Intent) -> None:
        entry = _entry(intent)
        owner = owner_of(intent)
        if owner == PUBLIC_OWNER:
            heapq.heappush(self.public, entry)
        else:
            heapq.heappush(self.private.setdefault(owner, []), entry)
        age = (intent.run_at, intent.seq, intent.generation, intent)
        heapq.heappush(self.by_age.setdefault(owner, []), age)
        self.ready += 1
        self._owned(intent, 0, +1)

    def left(self, intent: Intent) -> None:
        """A ready intent moved on (claimed, cancelled...): its entries are now stale."""
        self.ready -= 1
        self._owned(intent, 0, -1)
        self.stale += 1
        if self.stale >= max(COMPACT_MIN, self.ready):
            self._compact()

    def delayed_by(self, intent: Intent, delta: int) -> None:
        self.delayed += delta
        self._owned(intent, 1, delta)

    def claimed_by_key(self, intent: Intent, delta: int) -> None:
        self.claimed += delta
        key = intent.claimer or ""
        held = self.claimed_by.get(key, 0) + delta
        if held:
            self.claimed_by[key] = held
        else:
            self.claimed_by.pop(key, None)

    def _compact(self) -> None:
        """Sweep out entries of intents that moved on.

        Lazy removal leaves them behind (a claimed intent's entry stays until
        it reaches the top, and ``by_age`` is only read by /stats), and each
        holds its intent and payload alive. Sweeping once the stale entries
        outnumber the live ones keeps the heaps within twice the live size
        (plus COMPACT_MIN) at an amortised O(1) per transition.
        """
        self.public = _live_entries(self.public)
        self.private = {
            owner: live for owner, heap in self.private.items() if (live := _live_entries(heap))
        }
        by_age: dict[str, list[_AgeEntry]] = {}
        for owner, ages in self.by_age.items():
            kept = [e for e in ages if e[3].status is Status.OPEN and e[3].generation == e[2]]
            if kept:
                heapq.heapify(kept)
                by_age[owner] = kept
        self.by_age = by_age
        self.stale = 0

    def heaps_for(self, flt: ClaimFilter, *, admin: bool) -> Iterator[list[_Entry]]:
        heap = self.private.get(flt.private_owner(admin=admin))
        if heap:
            yield heap
        if self.public:
            yield self.public

    def oldest_ready_run_at(self, viewer: str | None = None) -> float | None:
        """Oldest ready run_at of every owner (``viewer`` None) or of what ``viewer`` sees."""
        owners = list(self.by_age) if viewer is None else [PUBLIC_OWNER, viewer]
        found = [at for owner in owners if (at := self._oldest(owner)) is not None]
        return min(found, default=None)

    def _oldest(self, owner: str) -> float | None:
        heap = self.by_age.get(owner)
        while heap:
            run_at, _seq, gen, intent = heap[0]
            if intent.status is Status.OPEN and intent.generation == gen:
                return run_at
            heapq.heappop(heap)
        return None

    def visible_to(self, viewer: str) -> bool:
        return PUBLIC_OWNER in self.owners or viewer in self.owners or viewer in self.claimed_by

    def counts(self, viewer: str | None = None) -> tuple[int, int, int]:
        """(ready, delayed, claimed) as ``viewer`` sees them; None is the whole goal."""
        if viewer is None:
            return self.ready, self.delayed, self.claimed
        public = self.owners.get(PUBLIC_OWNER, (0, 0))
        own = self.owners.get(viewer, (0, 0))
        return public[0] + own[0], public[1] + own[1], self.claimed_by.get(viewer, 0)

    def backlog(self, viewer: str | None = None) -> Backlog:
        """:meth:`counts` and the oldest ready intent, as ``viewer`` sees them."""
        ready, delayed, claimed = self.counts(viewer)
        return Backlog(ready, delayed, claimed, self.oldest_ready_run_at(viewer))


def _live_entries(heap: list[_Entry]) -> list[_Entry]:
    live = [e for e in heap if _live(e)]
    heapq.heapify(live)
    return live


def _best_in(heap: list[_Entry], flt: ClaimFilter) -> _Entry | None:
    """The best live entry of ``heap`` that ``flt`` accepts, left in place at the top."""
    skipped: list[_Entry] = []
    found: _Entry | None = None
    while heap:
        top = heap[0]
        if not _live(top):
            heapq.heappop(heap)
            continue
        if flt.accepts(top[5]):
            found = top
            break
        skipped.append(heapq.heappop(heap))
        if len(skipped) >= MAX_SKIP:
            break
    for entry in skipped:
        heapq.heappush(heap, entry)
    return found


class ReadyIndex:
    """All ready intents, by namespace and goal."""

    def __init__(self) -> None:
        self._queues: dict[str, dict[str, GoalQueue]] = {}

    def queue(self, namespace: str, goal: str) -> GoalQueue:
        goals = self._queues.setdefault(namespace, {})
        q = goals.get(goal)
        if q is None:
            q = goals[goal] = GoalQueue()
        return q

    def existing(self, namespace: str, goal: str) -> GoalQueue | None:
        return self._queues.get(namespace, {}).get(goal)

    def drop_if_empty(self, namespace: str, goal: str) -> None:
        """Forget a goal with nothing ready, delayed or claimed: memory follows what is live."""
        goals = self._queues.get(namespace)
        if goals is None:
            return
        q = goals.get(goal)
        if q is not None and q.empty:
            del goals[goal]
            if not goals:
                del self._queues[namespace]

    def __len__(self) -> int:
        return sum(len(goals) for goals in self._queues.values())

    def items(self) -> Iterator[tuple[str, str, GoalQueue]]:
        for ns, goals in self._queues.items():
            for goal, q in goals.items():
                yield ns, goal, q

    def namespaces(self) -> list[str]:
        return list(self._queues)

    def push(self, intent: Intent) -> None:
        self.queue(intent.namespace, intent.goal).push(intent)

    def select(self, flt: ClaimFilter, *, admin: bool) -> Intent | None:
        """The intent a claim with ``flt`` gets, or None. Does not change any state."""
        goals = self._queues.get(flt.namespace)
        if not goals:
            return None
        if flt.goal is not None:
            q = goals.get(flt.goal)
            candidates = [q] if q is not None and q.ready else []
        else:
            candidates = [q for q in goals.values() if q.ready]
        best: _Entry | None = None
        for q in candidates:
            for heap in q.heaps_for(flt, admin=admin):
                entry = _best_in(heap, flt)
                if entry is not None and (best is None or entry[:4] < best[:4]):
                    best = entry
        return best[5] if best is not None else None


class TimedHeap:
    """Intents waiting for a moment: delayed until run_at, or leased until lease_until."""

    def __init__(self, when: Callable[[Intent], float | None], status: Status) -> None:
        self._heap: list[tuple[float, int, int, Intent]] = []
        self._when = when
        self._status = status
        self._compact_at = COMPACT_MIN

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, intent: Intent) -> None:
        at = self._when(intent)
        assert at is not None
        heapq.heappush(self._heap, (at, intent.seq, intent.generation, intent))
        if len(self._heap) >= self._compact_at:
            # A fulfilled intent's lease entry would otherwise wait out its
            # whole lease in the heap, holding the intent and its payload.
            self._heap = [
                e for e in self._heap if e[3].status is self._status and e[3].generation == e[2]
            ]
            heapq.heapify(self._heap)
            self._compact_at = max(COMPACT_MIN, 2 * len(self._heap))

    def next_due(self) -> float | None:
        heap = self._heap
        while heap:
            at, _seq, gen, intent = heap[0]
            if intent.status is self._status and intent.generation == gen:
                return at
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> Iterator[Intent]:
        heap = self._heap
        while heap:
            at, _seq, gen, intent = heap[0]
            if not (intent.status is self._status and intent.generation == gen):
                heapq.heappop(heap)
                continue
            if at > now:
                return
            heapq.heappop(heap)
            yield intent
