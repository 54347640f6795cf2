"""``/metrics``: Prometheus text for the bus, its backlog per goal, and its own health.

Two audiences. The admin token and the metrics token get the whole bus: every goal and the
process's own health. A tenant key (``X-API-KEY``, or ``Authorization: Bearer <key>`` where
signatures are not required) gets its own view: the backlog it could claim, per goal, and
nothing about other tenants or the process (request and commit counts would show others'
traffic).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    UnknownMetricFamily,
)
from prometheus_client.registry import Collector

from intent_fleet.telemetry import CONTENT_TYPE, exposition, runtime_collectors

from .auth import is_utf8
from .backend import Figures
from .context import CONTEXT_KEY, BusContext, empty_response
from .errors import ApiError

__all__ = ["metrics", "render_metrics"]


class _BusCollector(Collector):
    """The bus's figures, read from live state at scrape time, as one viewer may see them."""

    def __init__(self, ctx: BusContext, figures: Figures, viewer: str | None) -> None:
        self._ctx, self._figures, self._viewer = ctx, figures, viewer

    def collect(self) -> Iterator[Metric]:
        figures, viewer = self._figures, self._viewer
        counts = sorted(figures.status_counts.items())
        stats = figures.stats
        dead = sum(s.dead for s in stats)
        # The reference server's names, which dashboards and backlog queries read; untyped,
        # since a gauge named _total would claim to be a counter. The gauges below are the
        # same figures under honest names.
        intents_compat = UnknownMetricFamily(
            "intent_bus_intents_total",
            "Intents by namespace and status (the reference server's name).",
            labels=["status", "namespace"],
        )
        intents = GaugeMetricFamily(
            "intent_bus_intents", "Intents by namespace and status.", labels=["status", "namespace"]
        )
        for (namespace, status), n in counts:
            intents_compat.add_metric([status, namespace], n)
            intents.add_metric([status, namespace], n)
        yield intents_compat
        yield intents
        yield UnknownMetricFamily(
            "intent_bus_dead_letters_total",
            "Dead intents kept for inspection (the reference server's name).",
            value=dead,
        )
        yield GaugeMetricFamily("intent_bus_dead_letters", "Dead intents kept.", value=dead)
        backlog = GaugeMetricFamily(
            "intent_bus_backlog",
            "Intents per namespace and goal: ready to claim, delayed, or claimed.",
            labels=["namespace", "goal", "state"],
        )
        oldest = GaugeMetricFamily(
            "intent_bus_oldest_ready_age_seconds",
            "Seconds the oldest ready intent of a goal has waited.",
            labels=["namespace", "goal"],
        )
        for s in stats:
            for state, n in (("ready", s.ready), ("delayed", s.delayed), ("claimed", s.claimed)):
                backlog.add_metric([s.namespace, s.goal, state], n)
            oldest.add_metric([s.namespace, s.goal], round(s.oldest_ready_age_seconds, 3))
        yield backlog
        yield oldest
        if viewer is None:
            yield from self._process(self._ctx, figures)

    @staticmethod
    def _process(ctx: BusContext, figures: Figures) -> Iterator[Metric]:
        """The whole process: what a tenant must not see (it shows others' traffic)."""
        yield CounterMetricFamily(
            "intent_bus_claims", "Claims that handed out an intent.", value=figures.claims_served
        )
        yield GaugeMetricFamily(
            "intent_bus_long_poll_waiting",
            "Claims currently long-polling.",
            figures.waiting_claims,
        )
        yield GaugeMetricFamily(
            "intent_bus_backlog_watches",
            "Backlog watches (POST /stats with wait) waiting for work.",
            figures.waiting_watches,
        )
        yield CounterMetricFamily(
            "intent_bus_commits", "Database commits (one fsync each).", value=figures.commits
        )
        yield CounterMetricFamily(
            "intent_bus_committed_ops", "Writes made durable.", value=figures.ops_committed
        )
        failed = CounterMetricFamily(
            "intent_bus_failed_writes",
            "Requests whose write failed, by cause (full disk, I/O, rejected by the database).",
            labels=["cause"],
        )
        for cause in ("full", "io", "rejected"):
            failed.add_metric([cause], figures.failed_writes.get(cause, 0))
        yield failed
        yield GaugeMetricFamily(
            "intent_bus_storage_ok",
            "1 while the last write succeeded, else 0.",
            int(figures.storage_health == "ok"),
        )
        yield GaugeMetricFamily(
            "intent_bus_unwritten_intents",
            "Intents whose latest state is not on disk yet (a background write failed).",
            figures.unwritten_intents,
        )
        responses = CounterMetricFamily(
            "intent_bus_responses",
            "HTTP answers by route and status code.",
            labels=["route", "code"],
        )
        for (route, code), n in sorted(ctx.responses.items()):
            responses.add_metric([route, str(code)], n)
        yield responses
        yield GaugeMetricFamily("intent_bus_kv_entries", "Live KV entries.", figures.kv_entries)
        yield GaugeMetricFamily(
            "intent_bus_uptime_seconds",
            "Seconds since the bus started.",
            round(ctx.clock() - ctx.started_at, 1),
        )


async def render_metrics(ctx: BusContext, *, viewer: str | None = None) -> bytes:
    """The whole bus (``viewer`` None, with the process's runtime figures), or what the key
    ``viewer`` could claim."""
    figures = await ctx.backend.figures(viewer=viewer)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_BusCollector(ctx, figures, viewer))
    if viewer is None:
        for collector in runtime_collectors():
            registry.register(collector)
    return exposition(registry)


async def _viewer(request: web.Request, ctx: BusContext) -> str | None:
    """None for the whole bus; a key id for a tenant's view; 401 for anyone else."""
    auth = ctx.settings.auth
    bearer = request.headers.get("Authorization", "")
    token = bearer.removeprefix("Bearer ").strip() if bearer.startswith("Bearer ") else ""
    token = token or request.headers.get("X-Admin-Token", "")
    if token:
        # A token that is sent decides alone: a bad one is never rescued by another header.
        if ctx.is_admin_token(token) or (
            bool(auth.metrics_token)
            and is_utf8(token)
            and hmac.compare_digest(token.encode(), auth.metrics_token.encode())
        ):
            return None
        found = None if auth.require_signatures else await ctx.backend.keys.authenticate(token)
        if found is not None and not found.admin:
            return found.key_id
    elif request.headers.get("X-API-KEY"):
        # The protocol's own checks: key, signature (required or not), rate limit.
        caller = await ctx.authenticate(request, b"")
        return None if caller.admin else caller.key_id
    elif auth.metrics_public:
        return None
    raise ApiError(
        401,
        "unauthorized",
        "/metrics needs 'Authorization: Bearer <metrics token>' for the whole bus, or a "
        "tenant key (X-API-KEY) for that tenant's backlog.",
    )


async def metrics(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT_KEY]
    viewer = await _viewer(request, ctx)
    resp = empty_response(200)
    resp.headers["Content-Type"] = CONTENT_TYPE
    resp.body = await render_metrics(ctx, viewer=viewer)
    return resp
