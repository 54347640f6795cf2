"""The intent life cycle: publish, claim, extend, fulfill, fail, expire, retry, cancel.

The engine is the single owner of the bus's live state. Every operation
changes memory synchronously on the event loop thread (so no two requests can
interleave inside a transition) and queues the matching database write.
Publish, fulfill, fail and admin changes await that commit before the caller
answers. A claim is answered at once: losing it in a crash only hands the
intent out again, which at-least-once delivery allows.

A write that fails (a full disk, an I/O error) fails its own request and puts
memory back as it was before that request (:class:`_Before`), unless the
intent has moved on since; a background write that fails (a claim, a lease
that ran out) marks its intents dirty, and they are written again, as they are
by then, until the disk takes them.

Longer than the house's usual module on purpose: every transition (publish,
claim, lease expiry, fail, retry, cancel, purge) must go through the same
bookkeeping (backlog counters, heap generations, timers, parked claims), and
keeping them in one class is what makes that checkable. Claim selection
(``claim_index``), long-poll parking (``longpoll``) and backlog figures
(``backlog``) live in their own modules.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import operator
import random
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from intent_fleet.protocol import GoalStats, Now

from .backend import Ended, PublishOutcome, PublishRequest, Result
from .backlog import TerminalCounts, goal_stats, stats_of, status_counts
from .claim_index import GoalQueue, ReadyIndex, TimedHeap
from .lifecycle import (
    CANCELLABLE,
    CANCELLED_BY_ADMIN,
    LEASE_EXPIRED,
    RETRIED_BY_ADMIN,
    RETRYABLE,
    ClaimFilter,
    cannot_cancel,
    cannot_retry,
    dies,
    extension,
    idempotency_conflict,
    not_found,
    not_leased,
    owner_of,
    refunded,
    retry_delay,
    retry_jitter,
)
from .longpoll import BacklogWatch, BacklogWatches, ParkedClaim, ParkedClaims
from .quotas import KeyUsage, Quotas, check_parked
from .records import TRANSITION_FIELDS, Caller, Intent, Status, TerminalRow
from .settings import BusSettings
from .store import (
    LoadedState,
    Op,
    Store,
    fulfill_op,
    insert_intent_op,
    purge_op,
    sweep_terminal_op,
    update_state_op,
)

__all__ = ["Engine"]

log = logging.getLogger(__name__)


_transition_values = operator.attrgetter(*TRANSITION_FIELDS)


@dataclass(frozen=True, slots=True)
class _Before:
    """An intent's life-cycle fields before a transition, to undo it if its write fails."""

    status: Status
    #: In :data:`~.records.TRANSITION_FIELDS` order.
    values: tuple[object, ...]

    @classmethod
    def of(cls, i: Intent) -> _Before:
        return cls(i.status, _transition_values(i))

    def restore(self, i: Intent) -> None:
        for name, value in zip(TRANSITION_FIELDS, self.values, strict=True):
            setattr(i, name, value)


#: Seconds an emptied goal's queue is kept in case work comes back at once.
EMPTY_GOAL_SECONDS = 1.0
#: Seconds between tries to write dirty intents again: doubling, up to the cap.
DIRTY_RETRY_FIRST = 0.5
DIRTY_RETRY_CAP = 30.0


class Engine:
    """Live state of the bus plus the rules that change it."""

    def __init__(
        self,
        *,
        store: Store,
        settings: BusSettings,
        clock: Now,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._queue_settings = settings.queue
        self._clock = clock
        self._rng = rng or random.Random()  # jitter only; never security relevant
        self._intents: dict[str, Intent] = {}
        self._index = ReadyIndex()
        self._delayed = TimedHeap(lambda i: i.run_at, Status.OPEN)
        self._leases = TimedHeap(lambda i: i.lease_until, Status.CLAIMED)
        self._parked = ParkedClaims()
        self._watches = BacklogWatches()
        self._quotas = Quotas(settings.limits)
        self._pending_idempotency: dict[
            tuple[str, str], tuple[Intent, asyncio.Future[list[object]]]
        ] = {}
        #: (namespace, goal, terminal status, owner) -> count, for /metrics and /stats.
        self._terminal: TerminalCounts = {}
        self._seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        #: Goals that emptied, to be forgotten if still empty (see _forget_if_still_empty).
        self._maybe_empty: set[tuple[str, str]] = set()
        self._empty_sweep: asyncio.TimerHandle | None = None
        #: Intents whose background write failed, to be written again as they are by then.
        self._dirty: dict[str, Intent] = {}
        self._dirty_timer: asyncio.TimerHandle | None = None
        self._dirty_delay = DIRTY_RETRY_FIRST
        self.claims_served = 0
        self.long_poll_handoffs = 0

    # -- life cycle -------------------------------------------------------
    def load(self, state: LoadedState) -> None:
        now = self._clock()
        self._seq = state.max_seq
        self._terminal = dict(state.terminal_counts)
        for intent in state.intents:
            self._intents[intent.id] = intent
            self._quotas.add(intent)
            if intent.status is Status.CLAIMED:
                # A lease that ran out while the bus was down expires at the first
                # tick like any other: open again, or dead if it was the last attempt.
                assert intent.lease_until is not None
                self._enter(intent, "claimed")
                self._leases.push(intent)
                continue
            self._make_open(intent, now)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._reschedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._dirty_timer is not None:
            self._dirty_timer.cancel()
            self._dirty_timer = None
        if self._empty_sweep is not None:
            self._empty_sweep.cancel()
            self._empty_sweep = None
        self.release_waiters()

    def release_waiters(self) -> None:
        """Answer every long-polling claim and backlog watch (used when shutting down)."""
        self._parked.release_all()
        self._watches.release_all()

    # -- bookkeeping ------------------------------------------------------
    def _queue_of(self, intent: Intent) -> GoalQueue:
        return self._index.queue(intent.namespace, intent.goal)

    def _enter(self, intent: Intent, place: str) -> None:
        q = self._queue_of(intent)
        if place == "ready":
            q.push(intent)  # counts itself
        elif place == "delayed":
            q.delayed_by(intent, +1)
        elif place == "claimed":
            q.claimed_by_key(intent, +1)
        intent.place = place

    def _leave(self, intent: Intent) -> None:
        place = intent.place
        if place:
            q = self._queue_of(intent)
            if place == "ready":
                q.left(intent)
            elif place == "delayed":
                q.delayed_by(intent, -1)
            elif place == "claimed":
                q.claimed_by_key(intent, -1)
            if q.empty:
                self._forget_if_still_empty(intent.namespace, intent.goal)
        intent.place = ""
        intent.generation += 1

    def _forget_if_still_empty(self, namespace: str, goal: str) -> None:
        """Drop an empty goal's queue a moment later, unless work came back meanwhile: a claim
        or a fulfil empties its goal for an instant, and dropping it at once would rebuild the
        queue twice per intent."""
        self._maybe_empty.add((namespace, goal))
        if self._empty_sweep is None and self._loop is not None:
            self._empty_sweep = self._loop.call_later(EMPTY_GOAL_SECONDS, self.forget_empty_goals)

    def forget_empty_goals(self) -> None:
        """Drop the queues of goals with nothing ready, delayed or claimed."""
        self._empty_sweep = None
        for namespace, goal in self._maybe_empty:
            self._index.drop_if_empty(namespace, goal)
        self._maybe_empty.clear()

    def _make_open(self, intent: Intent, now: float) -> None:
        """Put an open intent where it belongs: ready now, or delayed until run_at."""
        intent.status = Status.OPEN
        if intent.run_at > now:
            self._enter(intent, "delayed")
            self._delayed.push(intent)
            self._reschedule(intent.run_at)
        else:
            self._enter(intent, "ready")
            self._serve_waiters(intent)

    def _terminal_count(self, intent: Intent, status: Status, delta: int) -> None:
        # Becoming terminal ends an intent's life in its publisher's quota; a retry starts it.
        if delta > 0:
            self._quotas.remove(intent)
        else:
            self._quotas.add(intent)
        key = (intent.namespace, intent.goal, status.value, owner_of(intent))
        count = self._terminal.get(key, 0) + delta
        if count:
            self._terminal[key] = count
        else:
            self._terminal.pop(key, None)

    def _commit(
        self,
        ops: list[Op],
        *,
        on_durable: Callable[[], None] | None = None,
        on_failed: Callable[[], None] | None = None,
    ) -> asyncio.Future[list[Any]]:
        """Queue ops; ``on_durable`` / ``on_failed`` run once the outcome is known, whether
        or not the request that caused them is still waiting (a client that hangs up must
        not leave memory and disk disagreeing)."""
        return self._store.submit(ops, on_durable=on_durable, on_failed=on_failed)

    def _undo(self, intent: Intent, before: _Before, generation: int) -> Callable[[], None]:
        """Put ``intent`` back as ``before`` if nothing moved it after our change (its own
        write, queued later, records whatever moved it)."""

        def undo() -> None:
            if intent.generation != generation or self._intents.get(intent.id) is not intent:
                return
            now_status = intent.status
            self._leave(intent)
            if now_status.terminal:
                self._terminal_count(intent, now_status, -1)
            before.restore(intent)
            if before.status is Status.CLAIMED:
                assert intent.lease_until is not None
                self._enter(intent, "claimed")
                self._leases.push(intent)
                self._reschedule(intent.lease_until)
            elif before.status is Status.OPEN:
                self._make_open(intent, self._clock())
            else:
                self._terminal_count(intent, before.status, +1)

        return undo

    async def _transition(
        self, intent: Intent, before: _Before, op: Op, *, forget: bool = False
    ) -> None:
        """Write the change just made to ``intent``; undo it in memory if the write fails."""
        on_durable = (lambda: self._forget(intent)) if forget else None
        undo = self._undo(intent, before, intent.generation)
        await asyncio.shield(self._commit([op], on_durable=on_durable, on_failed=undo))

    def _persist(self, intents: list[Intent], *, forget: bool = False) -> None:
        """Write these intents' state in the background (nobody waits); on failure they are
        dirty and written again later."""

        def durable() -> None:
            if forget:
                for intent in intents:
                    self._forget(intent)

        def failed() -> None:
            for intent in intents:
                self._dirty[intent.id] = intent
            self._schedule_dirty()

        self._commit([update_state_op(i) for i in intents], on_durable=durable, on_failed=failed)

    def _schedule_dirty(self) -> None:
        if self._dirty_timer is None and self._loop is not None:
            self._dirty_timer = self._loop.call_later(self._dirty_delay, self._write_dirty)
            self._dirty_delay = min(DIRTY_RETRY_CAP, self._dirty_delay * 2)

    def _write_dirty(self) -> None:
        self._dirty_timer = None
        # As they are now: a write queued after a newer one must not bring back old state.
        dirty = [i for i in self._dirty.values() if self._intents.get(i.id) is i]
        self._dirty.clear()
        if not dirty:
            return

        def durable() -> None:
            self._dirty_delay = DIRTY_RETRY_FIRST
            for intent in dirty:
                if self._dirty.get(intent.id) is None:
                    self._forget(intent)

        def failed() -> None:
            for intent in dirty:
                self._dirty.setdefault(intent.id, intent)
            self._schedule_dirty()

        self._commit([update_state_op(i) for i in dirty], on_durable=durable, on_failed=failed)

    def dirty_count(self) -> int:
        """Intents whose state is not on disk yet because a background write failed."""
        return len(self._dirty)

    # -- publish ----------------------------------------------------------
    async def publish(
        self,
        caller: Caller,
        req: PublishRequest,
        *,
        idempotency_key: str | None,
        body: bytes,
    ) -> PublishOutcome:
        """Create an intent, or answer as before for a repeated idempotency key."""
        body_hash = hashlib.sha256(body).digest() if idempotency_key else None
        if idempotency_key is not None:
            replay = await self._idempotent_replay(caller, idempotency_key, body_hash)
            if replay is not None:
                return replay
        self._quotas.check_publish(
            caller, namespace=req.namespace, goal=req.goal, size=len(req.payload)
        )
        now = self._clock()
        self._seq += 1
        intent = Intent(
            id=uuid.uuid4().hex,
            namespace=req.namespace,
            goal=req.goal,
            publisher=caller.key_id,
            visibility=req.visibility,
            payload=req.payload,
            priority=req.priority,
            max_attempts=req.max_attempts,
            backoff_base=req.backoff_base,
            target_worker=req.target_worker,
            required_capability=req.required_capability,
            status=Status.OPEN,
            attempts=0,
            run_at=now + req.delay,
            created_at=now,
            updated_at=now,
            seq=self._seq,
            idempotency_key=idempotency_key,
            body_hash=body_hash,
        )
        pending_key = (caller.key_id, idempotency_key) if idempotency_key else None

        def activate() -> None:
            # Claimable only once durable: a worker never sees an intent a crash could undo.
            self._intents[intent.id] = intent
            self._make_open(intent, self._clock())

        def settle(f: asyncio.Future[list[object]]) -> None:
            if pending_key is not None:
                self._pending_idempotency.pop(pending_key, None)
            if f.cancelled() or f.exception() is not None:
                self._quotas.remove(intent)  # never accepted: its reservation goes

        # Counted from now, so concurrent publishes cannot all slip under a quota.
        self._quotas.add(intent)
        commit = self._commit([insert_intent_op(intent)], on_durable=activate)
        commit.add_done_callback(settle)
        if pending_key is not None:
            self._pending_idempotency[pending_key] = (intent, commit)
        await asyncio.shield(commit)
        return PublishOutcome(id=intent.id, namespace=intent.namespace, replayed=False)

    async def _idempotent_replay(
        self, caller: Caller, key: str, body_hash: bytes | None
    ) -> PublishOutcome | None:
        pending = self._pending_idempotency.get((caller.key_id, key))
        if pending is not None:
            intent, commit = pending
            if intent.body_hash != body_hash:
                raise idempotency_conflict()
            # The same request is still committing: answer as it will.
            await asyncio.shield(commit)
            return PublishOutcome(id=intent.id, namespace=intent.namespace, replayed=True)
        found = self._store.find_idempotent(caller.key_id, key)
        if found is None:
            return None
        intent_id, namespace, stored_hash = found
        if stored_hash != body_hash:
            raise idempotency_conflict()
        return PublishOutcome(id=intent_id, namespace=namespace, replayed=True)

    # -- claim ------------------------------------------------------------
    async def claim(
        self,
        flt: ClaimFilter,
        *,
        admin: bool,
        wait: float,
        limit: int = 1,
    ) -> list[Intent]:
        """Claim up to ``limit`` intents; with ``wait``, park until at least one is ready."""
        lease = self._queue_settings.claim_timeout_seconds
        first = self._claim_now(flt, admin=admin, lease=lease)
        if first is None and wait > 0:
            first = await self._wait_for_claim(flt, admin=admin, wait=wait, lease=lease)
        if first is None:
            return []
        claimed = [first]
        while len(claimed) < limit:
            more = self._claim_now(flt, admin=admin, lease=lease)
            if more is None:
                break
            claimed.append(more)
        # Answered without waiting for the disk: a claim lost in a crash only
        # means the intent is handed out again (delivery is at-least-once
        # anyway), and not waiting halves the fsyncs on a job's path. The write
        # is queued before any later fulfill/fail of these intents, so the log
        # stays in order.
        self._persist(claimed)
        return claimed

    def _claim_now(self, flt: ClaimFilter, *, admin: bool, lease: int) -> Intent | None:
        intent = self._index.select(flt, admin=admin)
        if intent is None:
            return None
        now = self._clock()
        self._leave(intent)
        intent.status = Status.CLAIMED
        intent.attempts += 1
        intent.claim_token = secrets.token_hex(16)
        intent.lease_until = now + lease
        intent.claimer = flt.caller
        intent.worker_id = flt.worker_id
        intent.updated_at = now
        self._enter(intent, "claimed")
        self._leases.push(intent)
        self._reschedule(intent.lease_until)
        self.claims_served += 1
        return intent

    def _unclaim(self, intent: Intent) -> _Before | None:
        """Undo a claim nobody worked on: open again at once, the attempt refunded.

        Returns the state before, for :meth:`_transition`; None if it was not claimed.
        """
        if intent.status is not Status.CLAIMED:
            return None
        before = _Before.of(intent)
        now = self._clock()
        self._leave(intent)
        intent.attempts = refunded(intent.attempts)
        intent.claim_token = None
        intent.lease_until = None
        intent.claimer = None
        intent.worker_id = None
        intent.updated_at = now
        self._make_open(intent, now)
        return before

    async def release(self, caller: Caller, intent_id: str, token: str | None) -> None:
        """Hand back a claimed intent unworked (extension ``release_claim``).

        A draining worker uses it so the intent goes to another worker now,
        instead of after its lease or a ``/fail`` backoff, and keeps its attempt.
        """
        intent = self._leased(caller, intent_id, token)
        before = self._unclaim(intent)
        assert before is not None
        await self._transition(intent, before, update_state_op(intent))

    async def _wait_for_claim(
        self, flt: ClaimFilter, *, admin: bool, wait: float, lease: int
    ) -> Intent | None:
        assert self._loop is not None
        if not admin:
            check_parked(self._settings.limits, self._parked.count_of(flt.caller))
        claim = ParkedClaim(flt=flt, admin=admin, future=self._loop.create_future())
        self._parked.park(claim)
        try:
            async with asyncio.timeout(wait):
                return await asyncio.shield(claim.future)
        except TimeoutError:
            # The deadline can fire after an intent was handed over but before this
            # task resumed: it is claimed for us, so answer with it rather than strand it.
            fut = claim.future
            return fut.result() if fut.done() and not fut.cancelled() else None
        except asyncio.CancelledError:
            fut = claim.future
            if fut.done() and not fut.cancelled() and (got := fut.result()) is not None:
                self._unclaim(got)
                self._persist([got])
            raise
        finally:
            self._parked.unpark(claim)
            if not claim.future.done():
                claim.future.cancel()

    def _serve_waiters(self, intent: Intent) -> None:
        """Hand a newly ready intent straight to a parked long-poll claim; if none takes
        it, wake the backlog watches on its goal (an autoscaler waiting at zero)."""
        lease = self._queue_settings.claim_timeout_seconds
        for claim in self._parked.for_intent(intent.namespace, intent.goal):
            if intent.status is not Status.OPEN:
                return
            got = self._claim_now(claim.flt, admin=claim.admin, lease=lease)
            if got is not None:
                self._parked.unpark(claim)
                claim.future.set_result(got)
                self.long_poll_handoffs += 1
        if intent.status is Status.OPEN and self._watches.on(intent.namespace, intent.goal):
            self._watches.wake(intent.namespace, intent.goal, owner_of(intent))

    # -- lease operations -------------------------------------------------
    def _leased(self, caller: Caller, intent_id: str, token: str | None) -> Intent:
        intent = self._intents.get(intent_id)
        if (
            intent is None
            or intent.status is not Status.CLAIMED
            or (token is None and intent.claimer != caller.key_id)
            or (token is not None and not secrets.compare_digest(token, intent.claim_token or ""))
        ):
            raise not_leased()
        return intent

    async def extend(self, caller: Caller, intent_id: str, token: str | None, seconds: int) -> int:
        seconds = extension(seconds, self._queue_settings)
        intent = self._leased(caller, intent_id, token)
        before = _Before.of(intent)
        now = self._clock()
        self._leave(intent)
        intent.lease_until = now + seconds
        intent.updated_at = now
        self._enter(intent, "claimed")
        self._leases.push(intent)
        # The lease may now end before the timer armed for the old one.
        self._reschedule(intent.lease_until)
        await self._transition(intent, before, update_state_op(intent))
        return seconds

    async def fulfill(
        self, caller: Caller, intent_id: str, token: str | None, *, result: Result | None
    ) -> Ended:
        intent = self._leased(caller, intent_id, token)
        before = _Before.of(intent)
        now = self._clock()
        self._leave(intent)
        intent.status = Status.FULFILLED
        intent.updated_at = now
        intent.last_error = None
        intent.result, intent.result_type = (result.body, result.type) if result else (None, None)
        self._terminal_count(intent, Status.FULFILLED, +1)
        op = fulfill_op(intent, now=now)
        await self._transition(intent, before, op, forget=True)
        return Ended(intent.namespace, intent.goal, Status.FULFILLED)

    async def fail(
        self, caller: Caller, intent_id: str, token: str | None, error: str, *, final: bool = False
    ) -> Ended:
        """Record a failure: retry after backoff, or dead past max_attempts (or when final)."""
        intent = self._leased(caller, intent_id, token)
        before = _Before.of(intent)
        now = self._clock()
        self._leave(intent)
        intent.last_error = error
        intent.claim_token = None
        intent.lease_until = None
        intent.updated_at = now
        if dies(intent.attempts, intent.max_attempts, final=final):
            self._die(intent)
        else:
            intent.claimer = None
            jitter = retry_jitter(self._rng)
            intent.run_at = now + retry_delay(intent.backoff_base, intent.attempts, jitter=jitter)
            self._make_open(intent, now)
        status = intent.status
        await self._transition(intent, before, update_state_op(intent), forget=True)
        return Ended(intent.namespace, intent.goal, status)

    def _die(self, intent: Intent) -> None:
        intent.status = Status.DEAD
        intent.claim_token = None
        intent.lease_until = None
        self._terminal_count(intent, Status.DEAD, +1)

    # -- timers: delayed intents and expiring leases ---------------------
    def _reschedule(self, at: float | None = None) -> None:
        if self._loop is None:
            return
        if at is not None and self._timer_at is not None and self._timer_at <= at:
            return
        candidates = [t for t in (self._delayed.next_due(), self._leases.next_due()) if t]
        if at is not None:
            candidates.append(at)
        if not candidates:
            return
        due = min(candidates)
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = due
        self._timer = self._loop.call_later(max(0.0, due - self._clock()), self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self._clock()
        for intent in list(self._delayed.pop_due(now)):
            self._leave(intent)
            self._enter(intent, "ready")
            self._serve_waiters(intent)
        dead: list[Intent] = []
        for intent in list(self._leases.pop_due(now)):
            self._leave(intent)
            intent.claim_token = None
            intent.lease_until = None
            intent.updated_at = now
            if dies(intent.attempts, intent.max_attempts):
                intent.last_error = intent.last_error or LEASE_EXPIRED
                self._die(intent)
                dead.append(intent)
            else:
                intent.claimer = None
                self._make_open(intent, now)
        if dead:
            self._persist(dead, forget=True)
        self._reschedule()

    def _forget(self, intent: Intent) -> None:
        """Drop a terminal intent from memory; the database answers for it from now on."""
        if intent.status.terminal:
            self._intents.pop(intent.id, None)

    # -- admin ------------------------------------------------------------
    async def cancel(self, intent_id: str) -> None:
        intent = self._intents.get(intent_id)
        if intent is not None and intent.status.terminal:
            # Finished, its write still on the way to the disk: too late to cancel.
            raise cannot_cancel(intent.status)
        if intent is None:
            row = self._store.read_intent(intent_id)
            if row is None:
                raise not_found()
            if row.status not in CANCELLABLE:
                raise cannot_cancel(row.status)
            await self._cancel_dead(row)
            return
        before = _Before.of(intent)
        now = self._clock()
        self._leave(intent)
        intent.status = Status.CANCELLED
        intent.claim_token = None
        intent.lease_until = None
        intent.updated_at = now
        intent.last_error = CANCELLED_BY_ADMIN
        self._terminal_count(intent, Status.CANCELLED, +1)
        await self._transition(intent, before, update_state_op(intent), forget=True)

    async def _cancel_dead(self, intent: Intent) -> None:
        """A dead letter discarded: kept as cancelled, out of the dead-letter list."""
        intent.status = Status.CANCELLED
        intent.updated_at = self._clock()
        intent.last_error = CANCELLED_BY_ADMIN

        def recount() -> None:
            # Terminal both before and after: the quota pair (add, then remove) is a no-op.
            self._terminal_count(intent, Status.DEAD, -1)
            self._terminal_count(intent, Status.CANCELLED, +1)

        await asyncio.shield(self._commit([update_state_op(intent)], on_durable=recount))

    async def retry(self, intent_id: str) -> None:
        """Give a dead (or cancelled) intent a fresh set of attempts."""
        if intent_id in self._intents:
            # Live, or ended with its write still on the way to the disk: not retried yet.
            raise cannot_retry(Status.OPEN)
        intent = self._store.read_intent(intent_id)
        if intent is None:
            raise not_found()
        if intent.status not in RETRYABLE:
            raise cannot_retry(intent.status)
        now = self._clock()
        was = intent.status
        intent.status = Status.OPEN
        intent.attempts = 0
        intent.run_at = now
        intent.updated_at = now
        intent.claimer = None
        intent.worker_id = None
        intent.last_error = RETRIED_BY_ADMIN

        def activate() -> None:
            # Counted as it was until the disk has it alive again.
            self._terminal_count(intent, was, -1)
            self._intents[intent.id] = intent
            self._make_open(intent, self._clock())

        await asyncio.shield(self._commit([update_state_op(intent)], on_durable=activate))

    async def purge(self, namespace: str | None) -> int:
        """Delete every intent (of one namespace, or all); returns how many rows went."""

        def forget_them() -> None:
            # Once the rows are gone: a purge that fails leaves memory as the disk is.
            victims = [
                i for i in self._intents.values() if namespace is None or i.namespace == namespace
            ]
            for intent in victims:
                if not intent.status.terminal:
                    self._quotas.remove(intent)
                self._leave(intent)
                intent.status = Status.CANCELLED
                del self._intents[intent.id]
                self._dirty.pop(intent.id, None)
            self._terminal = {
                k: v
                for k, v in self._terminal.items()
                if namespace is not None and k[0] != namespace
            }

        (deleted,) = await asyncio.shield(
            self._commit([purge_op(namespace)], on_durable=forget_them)
        )
        return int(deleted)

    def live(self, intent_id: str) -> Intent | None:
        return self._intents.get(intent_id)

    async def lookup(self, intent_id: str) -> Intent | TerminalRow | None:
        """An intent for /status and /result: live, or finished (without its payload)."""
        return self._intents.get(intent_id) or self._store.read_terminal(intent_id)

    async def intent(self, intent_id: str) -> Intent | None:
        """A whole intent, payload included, in whatever state (admin views)."""
        return self._intents.get(intent_id) or self._store.read_intent(intent_id)

    async def dead_letters(
        self, *, namespace: str | None, goal: str | None, limit: int, offset: int
    ) -> list[TerminalRow]:
        return self._store.dead_letters(namespace=namespace, goal=goal, limit=limit, offset=offset)

    async def cleanup(self) -> dict[str, int]:
        """Remove terminal intents past retention and expired KV rows."""
        cutoff = self._clock() - self._settings.storage.retention_seconds

        (rows,) = await self._store.submit([sweep_terminal_op(cutoff)])
        removed = {"fulfilled": 0, "dead": 0, "cancelled": 0}
        for ns, goal, status, owner in rows:
            key = (ns, goal, status, owner)
            count = self._terminal.get(key, 0) - 1
            if count > 0:
                self._terminal[key] = count
            else:
                self._terminal.pop(key, None)
            removed[status] += 1
        return {f"{k}_deleted": v for k, v in removed.items()}

    # -- reporting --------------------------------------------------------
    def stats(
        self, namespace: str | None = None, goal: str | None = None, *, viewer: str | None = None
    ) -> list[GoalStats]:
        """Backlog per goal: the whole bus (``viewer`` None) or what one key could claim."""
        return goal_stats(
            self._index,
            self._terminal,
            now=self._clock(),
            namespace=namespace,
            goal=goal,
            viewer=viewer,
        )

    def stats_of(
        self, pairs: Sequence[tuple[str, str]], *, viewer: str | None = None
    ) -> list[GoalStats]:
        """The backlog of each (namespace, goal), in the order asked (zeros when empty)."""
        return stats_of(self._index, self._terminal, pairs, now=self._clock(), viewer=viewer)

    async def watch_backlog(
        self, pairs: Sequence[tuple[str, str]], *, viewer: str | None, wait: float
    ) -> None:
        """Return once one of ``pairs`` has work ``viewer`` could claim, or after ``wait`` s.

        Returns at once when one has some already; the caller reads the stats after.
        """
        assert self._loop is not None
        if any(s.ready for s in self.stats_of(pairs, viewer=viewer)):
            return
        if viewer is not None:
            check_parked(self._settings.limits, self._watches.count_of(viewer), watches=True)
        watch = BacklogWatch(frozenset(pairs), viewer, self._loop.create_future())
        self._watches.add(watch)
        try:
            async with asyncio.timeout(wait):
                await asyncio.shield(watch.future)
        except TimeoutError:
            pass
        finally:
            self._watches.remove(watch)
            if not watch.future.done():
                watch.future.cancel()

    def waiting_watches(self) -> int:
        return len(self._watches)

    def status_counts(self, *, viewer: str | None = None) -> dict[tuple[str, str], int]:
        return status_counts(self._index, self._terminal, viewer=viewer)

    def held_by_worker(self) -> dict[str, int]:
        """Intents claimed now, by worker id (``key <key id>`` without one)."""
        held: dict[str, int] = {}
        for intent in self._intents.values():
            if intent.status is Status.CLAIMED:
                who = intent.worker_id or f"key {intent.claimer}"
                held[who] = held.get(who, 0) + 1
        return held

    async def interrupt_claims(self, caller: Caller, session: str) -> int:
        """End the parked long-polls of one claimer session now (extension claim_interrupt)."""
        return self._parked.interrupt(caller.key_id, session)

    def waiting_claims(self) -> int:
        return len(self._parked)

    def usage(self, key_id: str) -> KeyUsage:
        """What one key holds now (for its quotas)."""
        return self._quotas.usage(key_id)

    def read_terminal(self, intent_id: str) -> TerminalRow | None:
        return self._store.read_terminal(intent_id)
