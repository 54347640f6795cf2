"""The claim loop and the life of each claimed intent.

Up to ``concurrency`` intents are in flight. A few claim lanes pull from the
bus (long-poll when the bus offers it, jittered polling otherwise) and only
while the handler is ready and a slot is free, so the sidecar never holds an
intent it cannot start. Each intent runs as its own task: deliver to the
handler (retrying while the handler says it is busy), keep the lease alive,
report the outcome (retrying while the lease lasts), free the slot.

Drain: stop claiming, let in-flight work finish within the drain timeout,
then hand back (or fail) what is left so another worker gets it at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from intent_fleet.protocol import (
    ClaimedIntent,
    ClaimOutcome,
    Clock,
    IntentBusError,
    IntentBusLeaseLostError,
    IntentBusNetworkError,
    IntentBusRateLimitError,
    IntentBusServerError,
)

from .app_channel import Busy, Delivery, Failed, Fulfilled, Outcome
from .leasing import Lease, keep_alive
from .metrics import SidecarMetrics
from .settings import SidecarSettings

__all__ = ["AppPort", "BusPort", "Features", "Worker"]

log = logging.getLogger(__name__)

#: Claim lanes at most: few enough that an idle sidecar parks only a handful
#: of long-polls on the bus; batch claims keep many slots fed through them.
MAX_LANES = 4
#: Most intents one claim takes (bus extension batch_claim). Bounded so one
#: replica does not hoard a backlog its peers could be working on.
MAX_BATCH = 16
#: Lease assumed on buses that do not say (v1.1): the protocol's default.
DEFAULT_LEASE_SECONDS = 60


class BusPort(Protocol):
    """What the worker needs of the bus; :class:`intent_fleet.protocol.BusClient` fits."""

    async def claim(
        self,
        goal: str | None = None,
        *,
        namespace: str | None = None,
        publisher: str | None = None,
        worker_id: str | None = None,
        capabilities: tuple[str, ...] | list[str] = (),
        wait: float | None = None,
        batch: int | None = None,
        session: str | None = None,
    ) -> ClaimOutcome: ...

    async def interrupt_claims(self, session: str) -> int: ...

    async def extend(self, intent_id: str, *, claim_token: str, seconds: int) -> int: ...

    async def fulfill(
        self,
        intent_id: str,
        *,
        claim_token: str | None = None,
        result: Any = ...,
        result_type: str = "json",
    ) -> None: ...

    async def fail(
        self, intent_id: str, *, claim_token: str | None = None, error: str = ...
    ) -> str | None: ...

    async def release(self, intent_id: str, *, claim_token: str | None = None) -> None: ...


class AppPort(Protocol):
    """What the worker needs of the handler; :class:`AppChannel` fits."""

    async def deliver(self, delivery: Delivery, *, limit_seconds: float) -> Outcome: ...


@dataclass(frozen=True, slots=True)
class Features:
    """What the bus offers, detected once at start."""

    long_poll: bool = False
    extend: bool = False
    release: bool = False
    batch: bool = False
    interrupt: bool = False
    protocol: str = "2.1"


@dataclass(eq=False)
class _Job:
    intent: ClaimedIntent
    lease: Lease
    started: float
    task: asyncio.Task[None] | None = None
    reported: bool = False
    #: perf_counter at the last step the sidecar itself is responsible for.
    mark: float = 0.0


@dataclass
class WorkerState:
    """Live figures for /v1/state, /readyz and the gauges."""

    in_flight: int = 0
    handler_ready: bool = False
    draining: bool = False
    #: Monotonic time of the last moment work was in flight or was claimed.
    last_active: float = 0.0
    busy_seconds: float = 0.0
    started: float = 0.0


class Worker:
    """Claims for one goal and runs each intent through the handler."""

    def __init__(
        self,
        *,
        settings: SidecarSettings,
        bus: BusPort,
        app: AppPort,
        features: Features,
        metrics: SidecarMetrics,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._s = settings
        self._bus = bus
        self._app = app
        self._features = features
        self._metrics = metrics
        self._clock = clock or Clock()
        self._rng = rng or random.Random()
        self._slots = asyncio.Semaphore(settings.claim.concurrency)
        self._jobs: dict[str, _Job] = {}
        self._ready = asyncio.Event()
        self._drain = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._pause_until = 0.0
        self._batch = 1
        #: Names this worker's long-polls so a drain can end them at once.
        self._session = secrets.token_hex(8)
        #: The running ``run()``'s task group: every task the worker starts belongs to it.
        self._tg: asyncio.TaskGroup | None = None
        now = self._clock.monotonic()
        self.state = WorkerState(last_active=now, started=now)
        metrics.gauge("intent_sidecar_in_flight", "Intents being handled.", lambda: len(self._jobs))
        metrics.gauge(
            "intent_sidecar_busy_ratio", "Share of slot time spent handling.", self.busy_ratio
        )
        metrics.gauge(
            "intent_sidecar_handler_ready",
            "1 when the handler is ready.",
            lambda: float(self._ready.is_set()),
        )

    # -- public -----------------------------------------------------------
    @property
    def features(self) -> Features:
        return self._features

    def busy_ratio(self) -> float:
        elapsed = max(1e-9, self._clock.monotonic() - self.state.started)
        busy = self.state.busy_seconds + sum(
            self._clock.monotonic() - j.started for j in self._jobs.values()
        )
        return min(1.0, busy / (elapsed * self._s.claim.concurrency))

    def idle_seconds(self) -> float:
        return 0.0 if self._jobs else self._clock.monotonic() - self.state.last_active

    def set_handler_ready(self, ready: bool) -> None:
        if ready and not self._ready.is_set():
            log.info("handler ready; claiming", extra={"goal": self._s.claim.goal})
            self._ready.set()
        elif not ready and self._ready.is_set():
            log.warning("handler not ready; claiming paused", extra={"goal": self._s.claim.goal})
            self._ready.clear()
        self.state.handler_ready = ready

    def drain(self) -> None:
        """Stop claiming; in-flight work goes on (``run`` returns when it is done)."""
        if not self._drain.is_set():
            log.info("draining", extra={"in_flight": len(self._jobs)})
            if self._features.interrupt and self._tg is not None:
                # Parked long-polls would otherwise hold the drain for their whole wait (and
                # without a running run() nothing is parked).
                self._tg.create_task(self._interrupt_parked())
        self._drain.set()
        self.state.draining = True

    async def _interrupt_parked(self) -> None:
        try:
            await self._bus.interrupt_claims(self._session)
        except IntentBusError as exc:
            # Not fatal: the parked claims end on their own within the long-poll wait.
            log.warning("could not interrupt parked claims", extra={"error": str(exc)})

    async def wait_idle(self) -> None:
        await self._idle.wait()

    async def run(self) -> None:
        """Claim and work until drained, then give back what did not finish in time."""
        concurrency = self._s.claim.concurrency
        lanes = max(1, min(MAX_LANES, concurrency))
        self._batch = min(MAX_BATCH, -(-concurrency // lanes)) if self._features.batch else 1
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            claimers = [tg.create_task(self._claim_lane(n)) for n in range(lanes)]
            await self._drain.wait()
            # The drain timeout runs from the drain itself: a lane waiting for a
            # slot only gets one when a job ends, so waiting for the lanes first
            # would let a slow handler outlast any timeout.

            async def finish() -> None:
                await asyncio.wait(claimers)  # unlike gather, never cancels them
                await self._idle.wait()

            timed_out = not await self._clock.within(self._s.claim.drain_timeout_seconds, finish())
            if timed_out:
                await self.abandon("drain timeout reached before the handler finished")
            await asyncio.gather(*claimers, return_exceptions=True)
            if timed_out and self._jobs:
                # Started from a claim still under way at the timeout (a bus without release).
                await self.abandon("drain timeout reached before the handler finished")

    async def abandon(self, reason: str) -> None:
        """Stop every in-flight job now and hand its intent back to the bus."""
        jobs = list(self._jobs.values())
        for job in jobs:
            if job.task is not None:
                job.task.cancel()
        await asyncio.gather(*(j.task for j in jobs if j.task is not None), return_exceptions=True)
        await asyncio.gather(*(self._give_back(j, reason) for j in jobs if not j.reported))

    # -- claiming ---------------------------------------------------------
    async def _claim_lane(self, lane: int) -> None:
        misses = 0  # empty polls and failed claims in a row: the backoff's attempt number
        while not self._drain.is_set():
            if not await self._wait_for(self._ready):
                return
            pause = self._pause_until - self._clock.monotonic()
            if pause > 0 and await self._sleep_or_drain(pause):
                return
            held = await self._take_slots()
            if not held:
                return
            try:
                intents, retry_after = await self._claim(held)
            except BaseException:
                self._release_slots(held)
                raise
            self._release_slots(held - len(intents))
            if intents:
                misses = 0
                await self._start_all(intents)
                continue
            if retry_after is None:  # an empty long-poll: ask again at once
                continue
            delay = self._s.claim.poll_backoff.delay(misses, self._rng, retry_after=retry_after)
            misses += 1
            if await self._sleep_or_drain(delay):
                return

    async def _take_slots(self) -> int:
        """Slots for one claim: wait for one, then take more free ones up to the batch size
        (one round trip then claims for all of them); 0 when a drain began meanwhile."""
        await self._slots.acquire()
        if self._drain.is_set():
            self._slots.release()
            return 0
        held = 1
        while held < self._batch and not self._slots.locked():
            await self._slots.acquire()
            held += 1
        return held

    async def _claim(self, held: int) -> tuple[list[ClaimedIntent], float | None]:
        """Up to ``held`` intents, and how long to back off when there are none: None after
        an empty long-poll (it waited already), else the server's hint (0: none)."""
        claim = self._s.claim
        t0 = time.perf_counter()
        try:
            outcome = await self._bus.claim(
                claim.goal,
                namespace=claim.namespace,
                worker_id=claim.worker_id or None,
                capabilities=claim.capabilities,
                wait=claim.long_poll_seconds if self._features.long_poll else None,
                batch=held if self._features.batch else None,
                session=self._session if self._features.interrupt else None,
            )
        except IntentBusError as exc:
            self._metrics.polls.labels(outcome="error").inc()
            self._metrics.bus_errors.labels(op="claim", kind=type(exc).__name__).inc()
            level = logging.INFO if isinstance(exc, IntentBusRateLimitError) else logging.WARNING
            log.log(level, "claim failed; backing off", extra={"error": str(exc)})
            return [], exc.retry_after or 0.0
        self._metrics.bus_seconds["claim"].observe(time.perf_counter() - t0)
        intents = list(outcome.intents)
        if intents:
            self._metrics.polls_claimed.inc()
            return intents, None
        self._metrics.polls_empty.inc()
        return [], None if self._features.long_poll else (outcome.retry_after or 0.0)

    async def _start_all(self, intents: list[ClaimedIntent]) -> None:
        if (self._drain.is_set() or not self._ready.is_set()) and self._features.release:
            # A long-poll parked while the handler was ready can answer after it stopped
            # being ready, or after a drain began (and /v1/drain may have answered
            # already): hand those intents back (no attempt burned) rather than start work
            # nobody waits for.
            self._release_slots(len(intents))
            why = "draining" if self._drain.is_set() else "handler not ready"
            await asyncio.gather(*(self._hand_back_unstarted(i, why) for i in intents))
            return
        for intent in intents:
            self._start(intent)

    async def _hand_back_unstarted(self, intent: ClaimedIntent, why: str) -> None:
        try:
            await self._bus.release(intent.id, claim_token=intent.claim_token)
        except IntentBusError as exc:
            self._metrics.bus_errors.labels(op="release", kind=type(exc).__name__).inc()
            log.warning(
                "could not hand back an intent claimed while %s",
                why,
                extra={"intent_id": intent.id, "error": str(exc)},
            )
            return
        self._metrics.released.inc()
        log.info("%s; handed back a claimed intent", why, extra={"intent_id": intent.id})

    def _release_slots(self, count: int) -> None:
        for _ in range(count):
            self._slots.release()

    async def _wait_for(self, event: asyncio.Event) -> bool:
        """Wait for ``event`` unless a drain comes first; True when the event fired."""
        if event.is_set():
            return True
        async with asyncio.TaskGroup() as waits:
            waiter = waits.create_task(event.wait())
            drain = waits.create_task(self._drain.wait())
            await asyncio.wait({waiter, drain}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            drain.cancel()
        return event.is_set() and not self._drain.is_set()

    async def _sleep_or_drain(self, seconds: float) -> bool:
        """Sleep, cut short by a drain; True when draining."""
        return await self._clock.wait_for(self._drain, seconds)

    # -- one intent -------------------------------------------------------
    def _start(self, intent: ClaimedIntent) -> None:
        now = self._clock.wall()
        seconds = intent.claim_timeout or DEFAULT_LEASE_SECONDS
        lease = Lease(
            intent_id=intent.id,
            claim_token=intent.claim_token,
            seconds=seconds,
            expires_at=now + seconds,
        )
        job = _Job(
            intent=intent, lease=lease, started=self._clock.monotonic(), mark=time.perf_counter()
        )
        self._jobs[intent.id] = job
        self._idle.clear()
        self.state.in_flight = len(self._jobs)
        self.state.last_active = self._clock.monotonic()
        self._metrics.claimed.inc()
        assert self._tg is not None, "claims start only inside run()"
        job.task = self._tg.create_task(self._work(job))

    async def _work(self, job: _Job) -> None:
        try:
            await self._work_unguarded(job)
        except Exception:
            # A bug here must not take the other intents down with it.
            log.exception("intent processing crashed", extra={"intent_id": job.intent.id})
            if not job.reported:
                await self._give_back(job, "internal error in the sidecar")
        finally:
            self._finish(job)

    async def _work_unguarded(self, job: _Job) -> None:
        # The lease keeper lives exactly as long as the delivery: the group awaits it.
        async with asyncio.TaskGroup() as lease:
            keeper = None
            if self._features.extend and job.lease.claim_token is not None:
                keeper = lease.create_task(
                    keep_alive(
                        job.lease,
                        extend=self._extend,
                        retry=self._s.claim.extend_retry,
                        rng=self._rng,
                        clock=self._clock,
                    )
                )
            try:
                outcome = await self._deliver(job)
            finally:
                if keeper is not None:
                    keeper.cancel()
        if job.lease.lost:
            self._lease_lost(job, "handler outcome dropped")
            return
        await self._report(job, outcome)

    async def _extend(self, intent_id: str, token: str, seconds: int) -> int:
        t0 = time.perf_counter()
        try:
            return await self._bus.extend(intent_id, claim_token=token, seconds=seconds)
        except IntentBusError as exc:
            self._metrics.bus_errors.labels(op="extend", kind=type(exc).__name__).inc()
            raise
        finally:
            self._metrics.bus_seconds["extend"].observe(time.perf_counter() - t0)

    async def _deliver(self, job: _Job) -> Outcome:
        intent = job.intent
        timeout = self._s.app.timeout_seconds
        give_up = self._clock.monotonic() + timeout
        payload = orjson.dumps(intent.payload)
        while True:
            # One budget for the intent: busy retries spend it, they do not renew it.
            remaining = max(0.001, give_up - self._clock.monotonic())
            delivery = Delivery(
                intent_id=intent.id,
                goal=intent.goal,
                namespace=intent.namespace,
                attempt=intent.claim_attempts,
                deadline=self._clock.wall() + remaining,
                payload=payload,
            )
            t0 = time.perf_counter()
            if job.mark:
                self._metrics.dispatch_overhead.observe(t0 - job.mark)
                job.mark = 0.0
            outcome = await self._app.deliver(delivery, limit_seconds=remaining)
            job.mark = time.perf_counter()
            self._metrics.handler_seconds.observe(job.mark - t0)
            if isinstance(outcome, Failed) and outcome.cause == "unreachable":
                self.set_handler_ready(False)
            if not isinstance(outcome, Busy):
                return outcome
            self._metrics.busy.inc()
            # The handler is saturated: keep the lease, back off, and let the
            # claim lanes pause too so no more work piles up behind it.
            self._pause_until = max(
                self._pause_until, self._clock.monotonic() + outcome.retry_after
            )
            if self._clock.monotonic() + outcome.retry_after > give_up:
                return Failed(f"handler stayed busy (429/503) for {timeout:g} s", cause="busy")
            if (
                not self._features.extend
                and self._clock.wall() + outcome.retry_after >= job.lease.expires_at
            ):
                return Failed("handler stayed busy until the lease ran out", cause="busy")
            await self._clock.sleep(outcome.retry_after)

    async def _report(self, job: _Job, outcome: Outcome) -> None:
        """Send the outcome; retried on transient errors while the lease lasts."""
        attempt = 0
        while True:
            t0 = time.perf_counter()
            if job.mark:
                self._metrics.report_overhead.observe(t0 - job.mark)
                job.mark = 0.0
            op = "fulfill" if isinstance(outcome, Fulfilled) else "fail"
            try:
                await self._send(job, outcome)
                job.reported = True
                return
            except IntentBusLeaseLostError:
                self._lease_lost(job, f"{op} refused")
                return
            except (IntentBusNetworkError, IntentBusServerError, IntentBusRateLimitError) as exc:
                self._metrics.bus_errors.labels(op=op, kind=type(exc).__name__).inc()
                retry = self._s.claim.report_retry
                delay = retry.delay(attempt, self._rng, retry_after=exc.retry_after)
                attempt += 1
                if self._clock.wall() + delay >= job.lease.expires_at:
                    self._lease_lost(job, f"{op} could not reach the bus before the lease ended")
                    return
                log.warning(
                    "report failed; retrying while the lease lasts",
                    extra={"intent_id": job.intent.id, "op": op, "error": str(exc)},
                )
                await self._clock.sleep(delay)
            except IntentBusError as exc:
                self._metrics.bus_errors.labels(op=op, kind=type(exc).__name__).inc()
                log.error(
                    "bus refused the report",
                    extra={"intent_id": job.intent.id, "op": op, "error": str(exc)},
                )
                if not isinstance(outcome, Fulfilled):
                    job.reported = True
                    return
                # A fulfil the bus will never take (a result it refuses, say): report a
                # failure with the cause now rather than leave the intent to its lease.
                outcome = Failed(
                    f"the bus refused the fulfil ({exc.status}): {exc.message}",
                    cause="fulfill_refused",
                )
            finally:
                self._metrics.bus_seconds[op].observe(time.perf_counter() - t0)

    async def _send(self, job: _Job, outcome: Outcome) -> None:
        intent, token = job.intent, job.lease.claim_token
        if isinstance(outcome, Fulfilled):
            if outcome.result_type is None:
                await self._bus.fulfill(intent.id, claim_token=token)
            else:
                await self._bus.fulfill(
                    intent.id,
                    claim_token=token,
                    result=outcome.result,
                    result_type=outcome.result_type,
                )
            self._metrics.fulfilled.inc()
            return
        assert isinstance(outcome, Failed)
        await self._bus.fail(intent.id, claim_token=token, error=outcome.error)
        self._metrics.failed.labels(reason=outcome.cause).inc()
        log.info("intent failed", extra={"intent_id": intent.id, "error": outcome.error})

    async def _give_back(self, job: _Job, reason: str) -> None:
        """Hand an unfinished intent back: release (no attempt burned) or fail."""
        intent, token = job.intent, job.lease.claim_token
        try:
            if self._features.release:
                await self._bus.release(intent.id, claim_token=token)
                self._metrics.released.inc()
            else:
                await self._bus.fail(
                    intent.id, claim_token=token, error=f"sidecar stopping: {reason}"
                )
                self._metrics.failed.labels(reason="shutdown").inc()
            log.warning(
                "handed back unfinished intent", extra={"intent_id": intent.id, "reason": reason}
            )
        except IntentBusError as exc:
            log.error(
                "could not hand back intent; it returns after its lease",
                extra={"intent_id": intent.id, "error": str(exc)},
            )
        job.reported = True

    def _lease_lost(self, job: _Job, what: str) -> None:
        self._metrics.lease_lost.inc()
        job.reported = True
        log.warning("lease lost: %s", what, extra={"intent_id": job.intent.id})

    def _finish(self, job: _Job) -> None:
        self.state.busy_seconds += self._clock.monotonic() - job.started
        self._jobs.pop(job.intent.id, None)
        self.state.in_flight = len(self._jobs)
        self.state.last_active = self._clock.monotonic()
        self._slots.release()
        if not self._jobs:
            self._idle.set()
