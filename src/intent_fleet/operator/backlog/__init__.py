"""Backlog sources: how much work an IntentWorker has, read one way or another.

What belongs here: the :class:`BacklogSource` protocol and its reading and error
(``base``), one module per source, in the order of preference of docs/architecture.md,
"Scaling", and the small HTTP and text-format pieces they share:

=============  ==============  ==========================  =============================
source         module          backlog                     in flight
=============  ==============  ==========================  =============================
``busStats``   ``busstats``    ``ready`` of the goal       ``claimed`` of the goal
``prometheus`` ``prometheus``  sum of the matched series   sum of a second query, or 0
``sidecars``   ``sidecars``    always 0 (utilisation only) sum of the pods' ``in_flight``
=============  ==============  ==========================  =============================

``exposition`` parses the Prometheus text format; ``fetch`` is the one bounded
GET of the scraping sources. The reads of many IntentWorkers that arrive together
share one request (:mod:`intent_fleet.operator.batching`): one ``/stats`` per bus and
key (:class:`BusBacklog`), one scrape per endpoint and credentials (:class:`Scrape`).
Nothing here decides replicas (that is :mod:`intent_fleet.operator.scaling`) or
reads Kubernetes objects: the caller passes URLs, credentials and pod addresses in.
Every failure is a :class:`~intent_fleet.operator.errors.BacklogUnavailableError`
naming the source, the URL and the cause.
"""

from .base import BacklogReading, BacklogSource, SourceName, unavailable
from .busstats import BACKLOG_FEATURE, BATCH_FEATURE, BusBacklog, BusStatsSource
from .exposition import Exposition, MatchSum, Sample, parse_exposition
from .prometheus import MetricQuery, PrometheusSource, Scrape, ScrapeAuth, ScrapeSettings
from .sidecars import (
    STATE_PATH,
    FanOutSettings,
    PodFailure,
    PodState,
    SidecarsSource,
    poll_sidecars,
)
from .wakeups import WAIT_FEATURE, Wake, WakeUps

__all__ = [
    "BACKLOG_FEATURE",
    "BATCH_FEATURE",
    "STATE_PATH",
    "WAIT_FEATURE",
    "BacklogReading",
    "BacklogSource",
    "BusBacklog",
    "BusStatsSource",
    "Exposition",
    "FanOutSettings",
    "MatchSum",
    "MetricQuery",
    "PodFailure",
    "PodState",
    "PrometheusSource",
    "Sample",
    "Scrape",
    "ScrapeAuth",
    "ScrapeSettings",
    "SidecarsSource",
    "SourceName",
    "Wake",
    "WakeUps",
    "parse_exposition",
    "poll_sidecars",
    "unavailable",
]
