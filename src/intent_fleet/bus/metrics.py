"""``/metrics``: Prometheus text for the bus, its backlog per goal, and its own health."""

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


def render_metrics(ctx: BusContext) -> str:
    engine = ctx.engine
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    family("intent_bus_intents_total", "gauge", "Intents by namespace and status.")
    for (ns, status), n in sorted(engine.status_counts().items()):
        lines.append(f"intent_bus_intents_total{_labels(status=status, namespace=ns)} {n}")
    stats = engine.stats()
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
    family("intent_bus_claims_total", "counter", "Claims that handed out an intent.")
    lines.append(f"intent_bus_claims_total {engine.claims_served}")
    family("intent_bus_long_poll_waiting", "gauge", "Claims currently long-polling.")
    lines.append(f"intent_bus_long_poll_waiting {engine.waiting_claims()}")
    family("intent_bus_commits_total", "counter", "Database commits (one fsync each).")
    lines.append(f"intent_bus_commits_total {ctx.store.commits}")
    family("intent_bus_committed_ops_total", "counter", "Writes made durable.")
    lines.append(f"intent_bus_committed_ops_total {ctx.store.ops_committed}")
    family("intent_bus_responses_total", "counter", "HTTP answers by route and status code.")
    for (route, code), n in sorted(ctx.responses.items()):
        lines.append(f"intent_bus_responses_total{_labels(route=route, code=str(code))} {n}")
    family("intent_bus_kv_entries", "gauge", "Live KV entries.")
    lines.append(f"intent_bus_kv_entries {len(ctx.kv)}")
    family("intent_bus_uptime_seconds", "gauge", "Seconds since the bus started.")
    lines.append(f"intent_bus_uptime_seconds {ctx.clock() - ctx.started_at:.1f}")
    return "\n".join(lines) + "\n"


async def metrics(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT_KEY]
    auth = ctx.settings.auth
    if not auth.metrics_public:
        bearer = request.headers.get("Authorization", "")
        token = bearer.removeprefix("Bearer ").strip() if bearer.startswith("Bearer ") else ""
        token = token or request.headers.get("X-Admin-Token", "")
        allowed = bool(token) and (
            ctx.keys.is_admin_token(token)
            or (
                bool(auth.metrics_token)
                and is_utf8(token)
                and hmac.compare_digest(token.encode(), auth.metrics_token.encode())
            )
        )
        if not allowed:
            raise ApiError(
                401, "unauthorized", "/metrics needs 'Authorization: Bearer <metrics token>'."
            )
    resp = empty_response(200)
    resp.content_type = "text/plain"
    resp.charset = "utf-8"
    resp.text = render_metrics(ctx)
    return resp
