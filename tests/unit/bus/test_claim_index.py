"""The claim index: claim order, who sees what, filters, stale entries, timed heaps."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from intent_fleet.bus.claim_index import COMPACT_MIN, GoalQueue, ReadyIndex, TimedHeap
from intent_fleet.bus.lifecycle import ClaimFilter
from intent_fleet.bus.records import Intent, Status, Visibility

from .conftest import T0, make_intent

PRIVATE = Visibility.PRIVATE
PUBLIC = Visibility.PUBLIC


def flt(caller: str = "p1", **kw: object) -> ClaimFilter:
    kw.setdefault("namespace", "default")
    kw.setdefault("goal", "g")
    return ClaimFilter(caller=caller, **kw)  # type: ignore[arg-type]


def take(index: ReadyIndex, f: ClaimFilter, *, admin: bool = False) -> Intent | None:
    """Select and then "claim" the way the engine does: leave the index, bump the generation."""
    got = index.select(f, admin=admin)
    if got is not None:
        got.status = Status.CLAIMED
        got.generation += 1
    return got


def index_of(*intents: Intent) -> ReadyIndex:
    index = ReadyIndex()
    for i in intents:
        index.push(i)
    return index


def drain(index: ReadyIndex, f: ClaimFilter, *, admin: bool = False) -> list[str]:
    out = []
    while (got := take(index, f, admin=admin)) is not None:
        out.append(got.id)
    return out


# -- claim order -----------------------------------------------------------
def test_claim_order_is_priority_then_run_at_then_attempts_then_age() -> None:
    intents = [
        make_intent(1, id="low-priority", priority=10),
        make_intent(2, id="later-run-at", priority=500, run_at=T0 + 5),
        make_intent(3, id="more-attempts", priority=500, attempts=2),
        make_intent(5, id="fewer-attempts-newer", priority=500, attempts=1),
        make_intent(4, id="fewer-attempts-older", priority=500, attempts=1),
        make_intent(6, id="highest-priority", priority=900, run_at=T0 + 100, attempts=5),
    ]
    index = index_of(*intents)
    assert drain(index, flt()) == [
        "highest-priority",
        "fewer-attempts-older",
        "fewer-attempts-newer",
        "more-attempts",
        "later-run-at",
        "low-priority",
    ]


def test_select_does_not_remove_anything() -> None:
    a = make_intent(1)
    index = index_of(a, make_intent(2))
    assert index.select(flt(), admin=False) is a
    assert index.select(flt(), admin=False) is a
    assert index.queue("default", "g").ready == 2


# -- visibility ------------------------------------------------------------
def test_private_intent_is_only_visible_to_its_publisher() -> None:
    mine = make_intent(1, publisher="p1", visibility=PRIVATE)
    index = index_of(mine)
    assert index.select(flt("p2"), admin=False) is None
    assert index.select(flt("p1"), admin=False) is mine
    # An admin without a publisher filter sees its own private heap only.
    assert index.select(flt("admin"), admin=True) is None


def test_public_intent_is_visible_to_everyone() -> None:
    shared = make_intent(1, publisher="p1", visibility=PUBLIC)
    index = index_of(shared)
    for caller in ("p1", "p2", "stranger"):
        assert index.select(flt(caller), admin=False) is shared
    assert index.select(flt("admin"), admin=True) is shared


def test_own_private_and_public_compete_on_claim_order() -> None:
    private = make_intent(1, publisher="p1", visibility=PRIVATE, priority=50)
    public = make_intent(2, publisher="p2", visibility=PUBLIC, priority=60)
    index = index_of(private, public)
    assert drain(index, flt("p1")) == [public.id, private.id]


def test_admin_with_publisher_filter_sees_that_publishers_private_intents() -> None:
    p1_private = make_intent(1, publisher="p1", visibility=PRIVATE, priority=10)
    p2_private = make_intent(2, publisher="p2", visibility=PRIVATE, priority=999)
    p2_public = make_intent(3, publisher="p2", visibility=PUBLIC, priority=999)
    p1_public = make_intent(4, publisher="p1", visibility=PUBLIC, priority=5)
    index = index_of(p1_private, p2_private, p2_public, p1_public)
    admin_p1 = flt("admin", publisher="p1")
    # Only p1's intents, private ones included, in claim order.
    assert drain(index, admin_p1, admin=True) == [p1_private.id, p1_public.id]
    # A non-admin naming another publisher still only reaches its own private heap.
    assert index.select(flt("p3", publisher="p2"), admin=False) is p2_public


# -- filters skip but do not lose -----------------------------------------
def test_target_worker_filter_skips_without_losing() -> None:
    targeted = make_intent(1, target_worker="w1", priority=900)
    plain = make_intent(2, priority=100)
    index = index_of(targeted, plain)
    assert take(index, flt(worker_id="w2")) is plain
    assert take(index, flt(worker_id="w2")) is None
    assert take(index, flt(worker_id=None)) is None
    assert take(index, flt(worker_id="w1")) is targeted


def test_required_capability_filter_skips_without_losing() -> None:
    gpu = make_intent(1, required_capability="gpu", priority=900)
    cpu = make_intent(2, required_capability="cpu", priority=800)
    index = index_of(gpu, cpu)
    assert take(index, flt(capabilities=frozenset({"cpu", "ram"}))) is cpu
    assert take(index, flt()) is None
    assert take(index, flt(capabilities=frozenset({"gpu"}))) is gpu


def test_publisher_filter_skips_without_losing() -> None:
    from_p2 = make_intent(1, publisher="p2", priority=900)
    from_p1 = make_intent(2, publisher="p1", priority=100)
    index = index_of(from_p2, from_p1)
    assert take(index, flt("p1", publisher="p1")) is from_p1
    assert take(index, flt("p1", publisher="p1")) is None
    assert take(index, flt("p3")) is from_p2


def test_skipped_entries_keep_their_order() -> None:
    targeted = [make_intent(i, target_worker="w1", priority=100 - i) for i in range(1, 6)]
    index = index_of(*targeted, make_intent(99, priority=0))
    assert take(index, flt(worker_id="w2")) is not None
    assert drain(index, flt(worker_id="w1")) == [i.id for i in targeted]


# -- stale entries ---------------------------------------------------------
def test_stale_entries_are_skipped_and_dropped() -> None:
    moved_on = make_intent(1, priority=900)
    live = make_intent(2, priority=100)
    index = index_of(moved_on, live)
    moved_on.generation += 1  # e.g. cancelled or claimed elsewhere
    assert index.select(flt(), admin=False) is live
    assert len(index.queue("default", "g").public) == 1


def test_repushed_intent_is_ordered_by_its_new_key_only() -> None:
    a = make_intent(1, priority=900)
    b = make_intent(2, priority=500)
    index = index_of(a, b)
    # a is taken, fails, and comes back with a lower priority: its old entry must not count.
    a.generation += 1
    a.priority = 100
    index.push(a)
    assert drain(index, flt()) == ["i2", "i1"]


def test_open_status_with_old_generation_is_stale() -> None:
    a = make_intent(1)
    index = index_of(a)
    a.generation += 1  # still OPEN, but the entry describes an older state
    assert index.select(flt(), admin=False) is None


# -- goals -----------------------------------------------------------------
def test_goal_none_selects_across_goals() -> None:
    g1 = make_intent(1, goal="g1", priority=100)
    g2 = make_intent(2, goal="g2", priority=200)
    other_ns = make_intent(3, goal="g3", namespace="other", priority=999)
    index = index_of(g1, g2, other_ns)
    assert index.select(flt(goal="g1"), admin=False) is g1
    assert index.select(flt(goal="nope"), admin=False) is None
    assert drain(index, flt(goal=None)) == ["i2", "i1"]
    assert index.select(flt(goal=None, namespace="other"), admin=False) is other_ns
    assert index.select(flt(goal=None, namespace="missing"), admin=False) is None


def test_oldest_ready_run_at_skips_stale() -> None:
    q = GoalQueue()
    first, second = make_intent(1, run_at=T0), make_intent(2, run_at=T0 + 10)
    q.push(first)
    q.push(second)
    assert q.oldest_ready_run_at() == T0
    first.generation += 1
    assert q.oldest_ready_run_at() == T0 + 10
    second.status = Status.CLAIMED
    assert q.oldest_ready_run_at() is None


def test_stale_entries_are_swept_so_moved_on_intents_are_not_kept_alive() -> None:
    q = GoalQueue()
    intents = [make_intent(n, visibility=PRIVATE, publisher=f"p{n % 3}") for n in range(5000)]
    for n, intent in enumerate(intents):
        q.push(intent)
        if n % 10:  # nine in ten move on (claimed) before the next push
            intent.status = Status.CLAIMED
            intent.generation += 1
            q.left(intent)
    live = [i for i in intents if i.status is Status.OPEN]
    assert q.ready == len(live) == 500
    entries = len(q.public) + sum(len(h) for h in q.private.values())
    # Without sweeping every one of the 5000 entries would still be there.
    assert entries <= 2 * len(live) + COMPACT_MIN
    assert sum(len(h) for h in q.by_age.values()) <= 2 * len(live) + COMPACT_MIN
    # Once nothing is ready any more, nothing is kept at all.
    for intent in live:
        intent.status = Status.CLAIMED
        intent.generation += 1
        q.left(intent)
    assert q.ready == 0
    assert sum(len(h) for h in q.by_age.values()) <= COMPACT_MIN


def test_sweeping_loses_no_live_intent() -> None:
    q = GoalQueue()
    intents = [make_intent(n, visibility=PRIVATE, publisher=f"p{n % 3}") for n in range(5000)]
    for n, intent in enumerate(intents):
        q.push(intent)
        if n % 10:
            intent.status = Status.CLAIMED
            intent.generation += 1
            q.left(intent)
    live = [i for i in intents if i.status is Status.OPEN]
    # Nothing live was lost: each publisher still gets its own intents in order.
    for owner in ("p0", "p1", "p2"):
        index = ReadyIndex()
        index._queues = {"default": {"g": q}}
        mine = sorted((i for i in live if i.publisher == owner), key=lambda i: i.sort_key())
        got = index.select(flt(owner), admin=False)
        assert got is mine[0]


def test_timed_heap_sweeps_entries_of_intents_that_moved_on() -> None:
    heap = TimedHeap(lambda i: i.run_at, Status.OPEN)
    for n in range(5000):
        intent = make_intent(n)
        heap.push(intent)
        intent.status = Status.FULFILLED  # gone before its moment comes
    assert len(heap) <= COMPACT_MIN


# -- timed heaps -----------------------------------------------------------
def delayed_heap(*intents: Intent) -> TimedHeap:
    heap = TimedHeap(lambda i: i.run_at, Status.OPEN)
    for i in intents:
        heap.push(i)
    return heap


def test_timed_heap_pops_due_in_time_order() -> None:
    a, b, c = (make_intent(n, run_at=T0 + 10 * n) for n in (3, 1, 2))
    heap = delayed_heap(a, b, c)
    assert heap.next_due() == T0 + 10
    assert list(heap.pop_due(T0 + 5)) == []
    assert list(heap.pop_due(T0 + 20)) == [b, c]
    assert heap.next_due() == T0 + 30
    assert list(heap.pop_due(T0 + 30)) == [a]  # due exactly at its time
    assert heap.next_due() is None


def test_timed_heap_skips_stale_entries() -> None:
    stale_gen = make_intent(1, run_at=T0 + 1)
    wrong_status = make_intent(2, run_at=T0 + 2)
    live = make_intent(3, run_at=T0 + 3)
    heap = delayed_heap(stale_gen, wrong_status, live)
    stale_gen.generation += 1
    wrong_status.status = Status.CANCELLED
    assert heap.next_due() == T0 + 3
    assert len(heap) == 1
    assert list(heap.pop_due(T0 + 100)) == [live]


def test_timed_heap_stale_entries_are_dropped_even_before_due() -> None:
    stale = make_intent(1, run_at=T0 + 1)
    later = make_intent(2, run_at=T0 + 50)
    heap = delayed_heap(stale, later)
    stale.generation += 1
    assert list(heap.pop_due(T0)) == []
    assert len(heap) == 1


def test_lease_heap_uses_lease_until_and_claimed_status() -> None:
    leases = TimedHeap(lambda i: i.lease_until, Status.CLAIMED)
    a = make_intent(1, status=Status.CLAIMED, lease_until=T0 + 60)
    leases.push(a)
    assert leases.next_due() == T0 + 60
    a.status = Status.FULFILLED
    assert leases.next_due() is None


# -- property: select is the brute-force minimum ----------------------------
PUBLISHERS = ("p1", "p2", "p3")


@dataclass(frozen=True)
class Spec:
    priority: int
    run_at: int
    attempts: int
    visibility: Visibility
    publisher: str
    namespace: str
    goal: str
    target_worker: str | None
    capability: str | None
    fate: str  # "live", "gone" (claimed since), "moved" (re-pushed with a new key)


specs = st.builds(
    Spec,
    priority=st.integers(0, 3),
    run_at=st.integers(0, 3),
    attempts=st.integers(0, 2),
    visibility=st.sampled_from(list(Visibility)),
    publisher=st.sampled_from(PUBLISHERS),
    namespace=st.sampled_from(["default", "other"]),
    goal=st.sampled_from(["g1", "g2"]),
    target_worker=st.sampled_from([None, None, "w1"]),
    capability=st.sampled_from([None, None, "gpu"]),
    fate=st.sampled_from(["live", "live", "gone", "moved"]),
)

filters = st.builds(
    ClaimFilter,
    caller=st.sampled_from([*PUBLISHERS, "admin"]),
    namespace=st.sampled_from(["default", "other"]),
    goal=st.sampled_from([None, "g1", "g2"]),
    publisher=st.sampled_from([None, *PUBLISHERS]),
    worker_id=st.sampled_from([None, "w1", "w2"]),
    capabilities=st.sampled_from([frozenset(), frozenset({"gpu"}), frozenset({"cpu"})]),
)


def build(spec_list: list[Spec]) -> tuple[ReadyIndex, list[Intent]]:
    index = ReadyIndex()
    intents = []
    for n, s in enumerate(spec_list):
        intent = make_intent(
            n,
            priority=s.priority,
            run_at=T0 + s.run_at,
            attempts=s.attempts,
            visibility=s.visibility,
            publisher=s.publisher,
            namespace=s.namespace,
            goal=s.goal,
            target_worker=s.target_worker,
            required_capability=s.capability,
        )
        index.push(intent)
        if s.fate == "gone":
            intent.status = Status.CLAIMED
            intent.generation += 1
        elif s.fate == "moved":
            intent.generation += 1
            intent.priority = 3 - intent.priority
            intent.run_at += 1
            index.push(intent)
        intents.append(intent)
    return index, intents


def reference(intents: list[Intent], f: ClaimFilter, *, admin: bool) -> Intent | None:
    own = f.publisher if (admin and f.publisher is not None) else f.caller

    def visible(i: Intent) -> bool:
        return (
            i.status is Status.OPEN
            and i.namespace == f.namespace
            and (f.goal is None or i.goal == f.goal)
            and (i.visibility is Visibility.PUBLIC or i.publisher == own)
            and (f.publisher is None or i.publisher == f.publisher)
            and (i.target_worker is None or i.target_worker == f.worker_id)
            and (i.required_capability is None or i.required_capability in f.capabilities)
        )

    candidates = [i for i in intents if visible(i)]
    return min(candidates, key=Intent.sort_key) if candidates else None


def live_contents(index: ReadyIndex) -> dict[tuple[str, str, str], list[str]]:
    out = {}
    for ns, goal, q in index.items():
        heaps = {"public": q.public, **{f"private:{o}": h for o, h in q.private.items()}}
        for name, heap in heaps.items():
            out[(ns, goal, name)] = sorted(
                e[5].id for e in heap if e[5].status is Status.OPEN and e[5].generation == e[4]
            )
    return out


@settings(max_examples=300, deadline=None)
@given(
    spec_list=st.lists(specs, max_size=30),
    queries=st.lists(st.tuples(filters, st.booleans()), min_size=1, max_size=8),
)
def test_select_is_the_minimum_of_what_the_filter_may_see(
    spec_list: list[Spec], queries: list[tuple[ClaimFilter, bool]]
) -> None:
    index, intents = build(spec_list)
    before = live_contents(index)
    counters = [(q.ready, q.delayed, q.claimed) for _ns, _g, q in index.items()]
    states = [(i.status, i.generation, i.sort_key()) for i in intents]
    for f, is_admin in queries:
        admin = is_admin and f.caller == "admin"
        expected = reference(intents, f, admin=admin)
        assert index.select(f, admin=admin) is expected
        # Nothing changes: the same live entries remain, the intents are untouched.
        assert live_contents(index) == before
        assert [(i.status, i.generation, i.sort_key()) for i in intents] == states
        assert [(q.ready, q.delayed, q.claimed) for _ns, _g, q in index.items()] == counters
