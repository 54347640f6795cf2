"""Backlog from the bus itself: ``GET /stats`` (intent-fleet's ``backlog_stats`` extension).

The preferred source (DESIGN.md, "Scaling"): exact, per goal, and read with the
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
"""

from __future__ import annotations

from typing import Final

from intent_fleet.protocol import (
    BusClient,
    IntentBusAuthError,
    IntentBusError,
    IntentBusNetworkError,
    IntentBusNotFoundError,
    IntentBusProtocolError,
    IntentBusRateLimitError,
    IntentBusServerError,
)

from .base import BacklogReading, Clocks, SourceName, unavailable
from .fetch import describe_failure

__all__ = ["BACKLOG_FEATURE", "BusStatsSource"]

#: The ``/health`` feature that promises ``GET /stats``.
BACKLOG_FEATURE: Final = "backlog_stats"

_NO_FEATURE: Final = (
    f"the bus does not offer per-goal backlog (no {BACKLOG_FEATURE!r} feature in /health: "
    "a v1.1 bus or another server); use the prometheus source on the bus's /metrics instead"
)


class BusStatsSource:
    """Reads one goal's backlog through an injected :class:`BusClient`.

    The client is the caller's: built with the worker's API key and closed by the
    caller. ``bus_url`` only names the bus in error messages.
    """

    name: Final = SourceName.BUS_STATS

    def __init__(
        self,
        *,
        client: BusClient,
        bus_url: str,
        namespace: str,
        goal: str,
        clocks: Clocks | None = None,
    ) -> None:
        self._client = client
        self._url = bus_url
        self._namespace = namespace
        self._goal = goal
        self._clocks = clocks or Clocks()

    def __repr__(self) -> str:
        where = f"bus_url={self._url!r}, namespace={self._namespace!r}, goal={self._goal!r}"
        return f"BusStatsSource({where})"

    async def read(self) -> BacklogReading:
        started = self._clocks.monotonic()
        try:
            # BusClient remembers /health, so this costs a request only once.
            if not await self._client.supports(BACKLOG_FEATURE):
                raise unavailable(self.name, self._url, _NO_FEATURE)
            stats = await self._client.stats(namespace=self._namespace, goal=self._goal)
        except IntentBusError as exc:
            raise unavailable(self.name, self._url, _cause(exc)) from exc
        # The bus filters already; an older or foreign one might not.
        mine = [g for g in stats.goals if g.namespace == self._namespace and g.goal == self._goal]
        if any(g.ready < 0 or g.claimed < 0 for g in mine):
            raise unavailable(self.name, self._url, "malformed answer: a negative count")
        return self._clocks.reading(
            source=self.name,
            started=started,
            backlog=sum(g.ready for g in mine),
            in_flight=sum(g.claimed for g in mine),
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
