"""``/metrics``: Prometheus text for the bus, its backlog per goal, and its own health.

Two audiences. The admin token and the metrics token get the whole bus: every goal and the
process's own health. A tenant key (``X-API-KEY``, or ``Authorization: Bearer <key>`` where
signatures are not required) gets its own view: the backlog it could claim, per goal, and
nothing about other tenants or the process (request and commit counts would show others'
traffic).
"""

from __future__ import annotations

import hmac

from aiohttp import web

from .auth import is_utf8
from .context import CONTEXT_KEY, BusContext, empty_response
from .errors import ApiError

__all__ = ["metrics", "render_metrics"]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def render_metrics(ctx: BusContext, *, viewer: str | None = None) -> str:
    """The whole bus (``viewer`` None), or what the key ``viewer`` could claim."""
    engine = ctx.engine
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    family("intent_bus_intents_total", "gauge", "Intents by namespace and status.")
    for (ns, status), n in sorted(engine.status_counts(viewer=viewer).items()):
        lines.append(f"intent_bus_intents_total{_labels(status=status, namespace=ns)} {n}")
    stats = engine.stats(viewer=viewer)
    family("intent_bus_dead_letters_total", "gauge", "Dead intents kept for inspection.")
    lines.append(f"intent_bus_dead_letters_total {sum(s.dead for s in stats)}")
    family(
        "intent_bus_backlog",
        "gauge",
        "Intents per namespace and goal: ready to claim, delayed, or claimed.",
    )
    for s in stats:
        for state, n in (("ready", s.ready), ("delayed", s.delayed), ("claimed", s.claimed)):
            lines.append(
                f"intent_bus_backlog{_labels(namespace=s.namespace, goal=s.goal, state=state)} {n}"
            )
    family(
        "intent_bus_oldest_ready_age_seconds",
        "gauge",
        "Seconds the oldest ready intent of a goal has waited.",
    )
    for s in stats:
        labels = _labels(namespace=s.namespace, goal=s.goal)
        lines.append(
            f"intent_bus_oldest_ready_age_seconds{labels} {s.oldest_ready_age_seconds:.3f}"
        )
    if viewer is not None:
        return "\n".join(lines) + "\n"
    family("intent_bus_claims_total", "counter", "Claims that handed out an intent.")
    lines.append(f"intent_bus_claims_total {engine.claims_served}")
    family("intent_bus_long_poll_waiting", "gauge", "Claims currently long-polling.")
    lines.append(f"intent_bus_long_poll_waiting {engine.waiting_claims()}")
    family("intent_bus_commits_total", "counter", "Database commits (one fsync each).")
    lines.append(f"intent_bus_commits_total {ctx.store.commits}")
    family("intent_bus_committed_ops_total", "counter", "Writes made durable.")
    lines.append(f"intent_bus_committed_ops_total {ctx.store.ops_committed}")
    family(
        "intent_bus_failed_writes_total",
        "counter",
        "Requests whose write failed, by cause (full disk, I/O, rejected by the database).",
    )
    for cause in ("full", "io", "rejected"):
        n = ctx.store.failed_writes.get(cause, 0)
        lines.append(f"intent_bus_failed_writes_total{_labels(cause=cause)} {n}")
    family("intent_bus_storage_ok", "gauge", "1 while the last write succeeded, else 0.")
    lines.append(f"intent_bus_storage_ok {int(ctx.store.health == 'ok')}")
    family(
        "intent_bus_unwritten_intents",
        "gauge",
        "Intents whose latest state is not on disk yet (a background write failed).",
    )
    lines.append(f"intent_bus_unwritten_intents {engine.dirty_count()}")
    family("intent_bus_responses_total", "counter", "HTTP answers by route and status code.")
    for (route, code), n in sorted(ctx.responses.items()):
        lines.append(f"intent_bus_responses_total{_labels(route=route, code=str(code))} {n}")
    family("intent_bus_kv_entries", "gauge", "Live KV entries.")
    lines.append(f"intent_bus_kv_entries {len(ctx.kv)}")
    family("intent_bus_uptime_seconds", "gauge", "Seconds since the bus started.")
    lines.append(f"intent_bus_uptime_seconds {ctx.clock() - ctx.started_at:.1f}")
    return "\n".join(lines) + "\n"


async def _viewer(request: web.Request, ctx: BusContext) -> str | None:
    """None for the whole bus; a key id for a tenant's view; 401 for anyone else."""
    auth = ctx.settings.auth
    bearer = request.headers.get("Authorization", "")
    token = bearer.removeprefix("Bearer ").strip() if bearer.startswith("Bearer ") else ""
    token = token or request.headers.get("X-Admin-Token", "")
    if token:
        # A token that is sent decides alone: a bad one is never rescued by another header.
        if ctx.keys.is_admin_token(token) or (
            bool(auth.metrics_token)
            and is_utf8(token)
            and hmac.compare_digest(token.encode(), auth.metrics_token.encode())
        ):
            return None
        found = None if auth.require_signatures else ctx.keys.authenticate(token)
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
    resp.content_type = "text/plain"
    resp.charset = "utf-8"
    resp.text = render_metrics(ctx, viewer=viewer)
    return resp
