"""Backlog from the bus itself: ``GET /stats`` (intent-fleet's ``backlog_stats`` extension).

The preferred source (docs/architecture.md, "Scaling"): exact, per goal, and read with the
worker's own API key, so it needs no extra credentials or Prometheus.

* backlog = ``ready``: intents a worker could claim right now.
* in flight = ``claimed``: intents under a lease, still occupying a worker.
* ``delayed`` intents (a publish ``delay``, a retry's backoff) are left out: they
  cannot be claimed yet, so waking workers for them would only make the workers
  poll an empty queue until ``run_at``. KEDA users expect the same: a scaler
  counts what is actionable. They wake workers when they turn ready.
* ``dead`` intents are never work.

A goal missing from the answer has an empty queue (the bus answers zeros for an
unknown goal anyway; an older one may omit it).

Every IntentWorker on one bus with one key reads through the same :class:`BusBacklog`:
reads made together go out as one ``POST /stats`` for all their goals (extension
``batch_stats``), or, on a bus without it, as one ``GET /stats`` per goal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Final

from intent_fleet.operator.batching import Batcher, settled
from intent_fleet.protocol import (
    BusClient,
    Clock,
    GoalStats,
    IntentBusAuthError,
    IntentBusError,
    IntentBusNetworkError,
    IntentBusNotFoundError,
    IntentBusProtocolError,
    IntentBusRateLimitError,
    IntentBusServerError,
)
from intent_fleet.protocol.limits import MAX_STATS_GOALS

from .base import BacklogReading, SourceName, unavailable
from .fetch import describe_failure
from .wakeups import WakeUps

__all__ = ["BACKLOG_FEATURE", "BATCH_FEATURE", "BusBacklog", "BusStatsSource"]

#: The ``/health`` feature that promises ``GET /stats``.
BACKLOG_FEATURE: Final = "backlog_stats"
#: The ``/health`` feature that promises ``POST /stats`` for many goals at once.
BATCH_FEATURE: Final = "batch_stats"

Pair = tuple[str, str]

_NO_FEATURE: Final = (
    f"the bus does not offer per-goal backlog (no {BACKLOG_FEATURE!r} feature in /health: "
    "a v1.1 bus or another server); use the prometheus source on the bus's /metrics instead"
)


class BusBacklog:
    """The backlog of any goal on one bus, read with one key through an injected client.

    The client is the caller's: built with the key and closed by the caller. ``bus_url``
    only names the bus in error messages.
    """

    def __init__(self, *, client: BusClient, bus_url: str, window: float = 0.005) -> None:
        self._client = client
        self.url = bus_url
        self._batch: Batcher[Pair, GoalStats] = Batcher(
            self._fetch, window=window, most=MAX_STATS_GOALS
        )
        #: The goals of this bus whose workers are at zero, watched for work.
        self.wakeups = WakeUps(client=client, bus_url=bus_url)

    @property
    def requests(self) -> int:
        """Stats requests sent so far (one per batch on a batch_stats bus)."""
        return self._batch.fetches

    async def stats(self, namespace: str, goal: str) -> GoalStats:
        return await self._batch.get((namespace, goal))

    async def _fetch(self, pairs: Sequence[Pair]) -> Mapping[Pair, GoalStats | BaseException]:
        # BusClient remembers /health, so these cost a request only once.
        if not await self._client.supports(BACKLOG_FEATURE):
            raise unavailable(SourceName.BUS_STATS, self.url, _NO_FEATURE)
        if await self._client.supports(BATCH_FEATURE):
            answer = await self._client.stats_of(pairs)
            return {(g.namespace, g.goal): g for g in answer.goals}
        # An older bus: one request per goal, and a failure is that goal's alone.
        answers = await asyncio.gather(
            *(settled(self._client.stats(namespace=ns, goal=g)) for ns, g in pairs)
        )
        found: dict[Pair, GoalStats | BaseException] = {}
        for (ns, g), got in zip(pairs, answers, strict=True):
            if isinstance(got, BaseException):
                found[(ns, g)] = got
                continue
            # The bus filters already; an older or foreign one might not.
            mine = [s for s in got.goals if s.namespace == ns and s.goal == g]
            found[(ns, g)] = GoalStats(
                namespace=ns,
                goal=g,
                ready=sum(s.ready for s in mine),
                delayed=sum(s.delayed for s in mine),
                claimed=sum(s.claimed for s in mine),
                dead=sum(s.dead for s in mine),
                oldest_ready_age_seconds=max((s.oldest_ready_age_seconds for s in mine), default=0),
            )
        return found

    async def aclose(self) -> None:
        await self._batch.aclose()
        await self.wakeups.aclose()


class BusStatsSource:
    """One goal's backlog, read through the :class:`BusBacklog` of its bus and key."""

    name: Final = SourceName.BUS_STATS

    def __init__(
        self, *, bus: BusBacklog, namespace: str, goal: str, clock: Clock | None = None
    ) -> None:
        self._bus = bus
        self._namespace = namespace
        self._goal = goal
        self._clock = clock or Clock()

    def __repr__(self) -> str:
        where = f"bus_url={self._bus.url!r}, namespace={self._namespace!r}, goal={self._goal!r}"
        return f"BusStatsSource({where})"

    async def read(self) -> BacklogReading:
        started = self._clock.monotonic()
        try:
            mine = await self._bus.stats(self._namespace, self._goal)
        except IntentBusError as exc:
            raise unavailable(self.name, self._bus.url, _cause(exc)) from exc
        except LookupError:
            # A batch answer without this goal: the bus had nothing to say of it.
            mine = GoalStats(self._namespace, self._goal, 0, 0, 0, 0, 0.0)
        if mine.ready < 0 or mine.claimed < 0:
            raise unavailable(self.name, self._bus.url, "malformed answer: a negative count")
        return BacklogReading.timed(
            self._clock,
            source=self.name,
            started=started,
            backlog=mine.ready,
            in_flight=mine.claimed,
        )


def _cause(exc: IntentBusError) -> str:
    """The client's error in a few words; its message carries no key or signature."""
    if isinstance(exc, IntentBusNetworkError):
        inner = exc.__cause__
        return describe_failure(inner) if inner is not None else "no answer"
    if isinstance(exc, IntentBusAuthError):
        return f"HTTP {exc.status}: the bus refused the API key ({exc.code or 'unauthorized'})"
    if isinstance(exc, IntentBusProtocolError):
        return f"malformed answer: {exc.message}"
    if isinstance(exc, IntentBusRateLimitError):
        return "HTTP 429: rate limited by the bus"
    if isinstance(exc, IntentBusNotFoundError):
        return f"HTTP 404: the bus has no /stats ({_NO_FEATURE})"
    if isinstance(exc, IntentBusServerError):
        return f"HTTP {exc.status}: {exc.message}"
    return exc.message
