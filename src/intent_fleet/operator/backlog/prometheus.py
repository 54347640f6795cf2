"""Backlog from any Prometheus text endpoint: a metric name and exact label matchers.

Works with intent-fleet's bus (``intent_bus_backlog{namespace, goal, state}``, per
goal) and with the reference server's ``/metrics``
(``intent_bus_intents_total{status="open", namespace}``, per namespace only), or
with any exporter that counts the work. The samples of ``metric`` whose labels
include the matchers are summed; an optional second query counts in-flight work
(for the bus: the same metric with ``state="claimed"``).

A family the endpoint declares (HELP/TYPE) but with no matching series counts 0:
the bus drops the series of a goal whose queue is empty, and KEDA's prometheus
scaler treats an empty result as 0 too. A metric the endpoint does not mention at
all is an error: a typo in the spec must not look like an idle queue.

The caller reads the auth Secret and passes its values in :class:`ScrapeAuth`.
"""

from __future__ import annotations

import asyncio
import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

import aiohttp

from intent_fleet.operator.batching import Batcher
from intent_fleet.operator.errors import FetchFailedError, InvalidSpecError, MalformedAnswerError
from intent_fleet.protocol import Clock, Problems, validate

from .base import BacklogReading, SourceName, unavailable
from .exposition import LABEL_NAME, METRIC_NAME, Exposition, parse_exposition
from .fetch import get_bounded

__all__ = ["MetricQuery", "PrometheusSource", "Scrape", "ScrapeAuth", "ScrapeSettings"]

#: Ask for the format this module parses; an OpenMetrics-only exporter still
#: answers in a close enough dialect (exemplars and ``# EOF`` are tolerated).
ACCEPT: Final = "text/plain;version=0.0.4;q=1.0,*/*;q=0.1"
#: Answers larger than this are parsed in a worker thread so one big scrape does
#: not stall every other IntentWorker's poll on the operator's event loop.
PARSE_IN_THREAD_BYTES: Final = 256 * 1024
#: A float sum this close to an integer is that integer (series are counts).
_INTEGER_TOLERANCE: Final = 1e-6


@dataclass(frozen=True, slots=True)
class MetricQuery:
    """A metric name and the labels its samples must carry (exact values)."""

    metric: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def problems(self) -> Problems:
        if not METRIC_NAME.fullmatch(self.metric):
            yield "metric", f"{self.metric!r} is not a valid metric name"
        for name in self.labels:
            if not LABEL_NAME.fullmatch(name):
                yield "labels", f"{name!r} is not a valid label name"

    def __post_init__(self) -> None:
        validate(self, error=InvalidSpecError.of)
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))

    def __str__(self) -> str:
        inner = ",".join(f'{k}="{v}"' for k, v in sorted(self.labels.items()))
        return f"{self.metric}{{{inner}}}"


@dataclass(frozen=True, slots=True, repr=False)
class ScrapeAuth:
    """Credentials for the endpoint: a bearer token, or basic auth, or neither."""

    bearer_token: str | None = None
    username: str | None = None
    password: str | None = None

    def problems(self) -> Problems:
        # Never the values: they are credentials.
        if self.bearer_token is not None and (self.username or self.password):
            yield "bearer_token", "cannot go with basic auth (a username or a password)"
        if self.password is not None and self.username is None:
            yield "password", "needs a username"

    def __post_init__(self) -> None:
        validate(self, error=InvalidSpecError.of)

    def __repr__(self) -> str:
        kind = "bearer" if self.bearer_token else "basic" if self.username else "none"
        return f"ScrapeAuth(<{kind}, redacted>)"

    def headers(self) -> dict[str, str]:
        """The ``Authorization`` header, if any (RFC 6750 bearer or RFC 7617 basic, UTF-8)."""
        if self.bearer_token:
            return {"Authorization": f"Bearer {self.bearer_token}"}
        if self.username is None:
            return {}
        pair = f"{self.username}:{self.password or ''}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}


@dataclass(frozen=True, slots=True)
class ScrapeSettings:
    """Limits of one scrape."""

    #: Seconds for the whole exchange. A scrape slower than a few seconds is
    #: stale before it lands at a 1-30 s polling interval.
    timeout_seconds: float = 5.0
    #: Largest answer read, bytes. 8 MiB holds tens of thousands of series; the
    #: bus's own page is a few hundred bytes per goal.
    max_bytes: int = 8 * 1024 * 1024

    def problems(self) -> Problems:
        if not (math.isfinite(self.timeout_seconds) and self.timeout_seconds > 0):
            yield "timeout_seconds", f"must be a positive number, got {self.timeout_seconds}"
        if self.max_bytes < 1:
            yield "max_bytes", f"must be >= 1, got {self.max_bytes}"

    def __post_init__(self) -> None:
        validate(self)


class Scrape:
    """One endpoint read with one set of credentials. The IntentWorkers that read it at the
    same poll share one fetch and one parse (see :class:`~.batching.Batcher`)."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        url: str,
        auth: ScrapeAuth | None = None,
        settings: ScrapeSettings | None = None,
        window: float = 0.005,
    ) -> None:
        self._session = session
        self.url = url
        self._auth = auth or ScrapeAuth()
        self._settings = settings or ScrapeSettings()
        self._batch: Batcher[None, Exposition] = Batcher(self._fetch, window=window)

    def __repr__(self) -> str:
        return f"Scrape(url={self.url!r}, auth={self._auth!r})"

    @property
    def requests(self) -> int:
        """Scrapes sent so far."""
        return self._batch.fetches

    async def exposition(self) -> Exposition:
        return await self._batch.get(None)

    async def _fetch(self, _keys: Sequence[None]) -> Mapping[None, Exposition]:
        name = SourceName.PROMETHEUS
        try:
            fetched = await get_bounded(
                self._session,
                self.url,
                timeout_seconds=self._settings.timeout_seconds,
                max_bytes=self._settings.max_bytes,
                headers={"Accept": ACCEPT, **self._auth.headers()},
            )
        except FetchFailedError as exc:
            raise unavailable(name, self.url, exc.cause) from exc
        try:
            text = fetched.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise unavailable(name, self.url, "malformed answer: not UTF-8 text") from exc
        try:
            if len(fetched.body) > PARSE_IN_THREAD_BYTES:
                exposition = await asyncio.to_thread(parse_exposition, text)
            else:
                exposition = parse_exposition(text)
        except MalformedAnswerError as exc:
            cause = f"malformed answer: not Prometheus text format ({exc})"
            raise unavailable(name, self.url, cause) from exc
        return {None: exposition}

    async def aclose(self) -> None:
        await self._batch.aclose()


class PrometheusSource:
    """Sums the samples the queries match in a :class:`Scrape` of the endpoint."""

    name: Final = SourceName.PROMETHEUS

    def __init__(
        self,
        *,
        scrape: Scrape,
        backlog: MetricQuery,
        in_flight: MetricQuery | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._scrape = scrape
        self._url = scrape.url
        self._backlog = backlog
        self._in_flight = in_flight
        self._clock = clock or Clock()

    def __repr__(self) -> str:
        return f"PrometheusSource(url={self._url!r}, backlog={self._backlog})"

    async def read(self) -> BacklogReading:
        started = self._clock.monotonic()
        exposition = await self._scrape.exposition()
        backlog = self._count(exposition, self._backlog)
        in_flight = self._count(exposition, self._in_flight) if self._in_flight else 0
        return BacklogReading.timed(
            self._clock,
            source=self.name,
            started=started,
            backlog=backlog,
            in_flight=in_flight,
        )

    def _count(self, exposition: Exposition, query: MetricQuery) -> int:
        if not exposition.has_metric(query.metric):
            raise unavailable(
                self.name, self._url, f"metric {query.metric} not found in the answer"
            )
        total = exposition.sum(query.metric, query.labels).total
        if not math.isfinite(total):
            raise unavailable(self.name, self._url, f"{query} sums to {total}, not a count")
        if total < 0:
            raise unavailable(self.name, self._url, f"{query} sums to a negative value")
        nearest = round(total)
        # A fractional sum (a rate, an average) is rounded up: better one worker
        # too many than work left waiting.
        return nearest if abs(total - nearest) <= _INTEGER_TOLERANCE else math.ceil(total)
