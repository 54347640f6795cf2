"""The handler-facing API on 127.0.0.1: publish, KV, status, drain, state, probes, metrics.

The handler never holds the API key: the sidecar signs these calls for it.
Bus errors are translated to answers the handler can act on (a dead bus is
502/503, never the handler's fault).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

import orjson
from aiohttp import web

from intent_fleet.protocol import (
    BusClient,
    IntentBusAuthError,
    IntentBusConflictError,
    IntentBusError,
    IntentBusNetworkError,
    IntentBusNotFoundError,
    IntentBusProtocolError,
    IntentBusRateLimitError,
    IntentBusServerError,
)

from .metrics import SidecarMetrics
from .settings import SidecarSettings
from .worker import Worker

__all__ = ["LocalApi", "build_local_api", "start_local_api"]

#: Largest body the local API accepts (publish payloads, KV values), bytes.
MAX_BODY = 1024 * 1024
_PUBLISH_OPTIONS = (
    "namespace",
    "visibility",
    "priority",
    "delay",
    "max_attempts",
    "backoff_base",
    "target_worker",
    "required_capability",
    "idempotency_key",
)


@dataclass
class LocalApi:
    """What the local API serves from."""

    settings: SidecarSettings
    bus: BusClient
    worker: Worker
    metrics: SidecarMetrics


API_KEY: web.AppKey[LocalApi] = web.AppKey("local_api")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(status: int, doc: Any, headers: dict[str, str] | None = None) -> web.Response:
    if is_dataclass(doc) and not isinstance(doc, type):
        doc = asdict(doc)
    return web.Response(
        status=status,
        body=orjson.dumps(doc, default=str),
        content_type="application/json",
        headers=headers,
    )


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return _json(status, {"error": {"code": code, "message": message}}, headers)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except IntentBusNotFoundError as exc:
        return _error(404, "not_found", exc.message)
    except IntentBusConflictError as exc:
        return _error(409, "conflict", exc.message)
    except IntentBusRateLimitError as exc:
        wait = str(max(1, round(exc.retry_after or 1)))
        return _error(429, "rate_limited", exc.message, {"Retry-After": wait})
    except IntentBusAuthError as exc:
        return _error(502, "bus_auth_failed", f"the bus refused the sidecar's key: {exc.message}")
    except (IntentBusNetworkError, IntentBusServerError) as exc:
        return _error(
            503, "bus_unavailable", f"the bus is unreachable: {exc.message}", {"Retry-After": "1"}
        )
    except IntentBusProtocolError as exc:
        return _error(502, "bad_bus_answer", exc.message)
    except IntentBusError as exc:
        return _error(400, exc.code or "invalid_request", exc.message)
    except web.HTTPException as exc:
        return _error(exc.status, "invalid_request", exc.reason)


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        doc = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise web.HTTPBadRequest(reason=f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise web.HTTPBadRequest(reason="body must be a JSON object")
    return doc


async def publish(request: web.Request) -> web.Response:
    api = request.app[API_KEY]
    doc = await _body(request)
    goal = doc.get("goal")
    if not isinstance(goal, str) or not goal:
        return _error(400, "invalid_request", "'goal' must be a non-empty string")
    if "payload" not in doc:
        return _error(400, "invalid_request", "missing 'payload'")
    options = {k: doc[k] for k in _PUBLISH_OPTIONS if doc.get(k) is not None}
    options.setdefault("namespace", api.settings.claim.namespace)
    receipt = await api.bus.publish(goal, doc["payload"], **options)
    return _json(201, receipt)


async def kv_get(request: web.Request) -> web.Response:
    api = request.app[API_KEY]
    value = await api.bus.kv_get(request.match_info["key"])
    if value is None:
        return _error(404, "not_found", "key not found")
    return _json(200, {"value": value})


async def kv_put(request: web.Request) -> web.Response:
    api = request.app[API_KEY]
    doc = await _body(request)
    if "value" not in doc:
        return _error(400, "invalid_request", "missing 'value'")
    ttl = doc.get("ttl", 600)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
        return _error(400, "invalid_request", "'ttl' must be a positive integer of seconds")
    await api.bus.kv_set(request.match_info["key"], doc["value"], ttl=ttl)
    return _json(200, {"ok": True})


async def intent(request: web.Request) -> web.Response:
    api = request.app[API_KEY]
    if api.worker.features.protocol == "1.1":
        return _error(
            501,
            "not_supported",
            "the bus speaks protocol v1.1, which has no status or result endpoint",
        )
    intent_id = request.match_info["intent_id"]
    if request.query.get("result") in ("1", "true"):
        return _json(200, await api.bus.result(intent_id))
    return _json(200, await api.bus.status(intent_id))


async def drain(request: web.Request) -> web.Response:
    """Stop claiming and block until in-flight work is done (a preStop hook calls this)."""
    api = request.app[API_KEY]
    api.worker.drain()
    started = time.monotonic()
    timeout = api.settings.claim.drain_timeout_seconds
    try:
        async with asyncio.timeout(timeout):
            await api.worker.wait_idle()
    except TimeoutError:
        return _json(
            504,
            {"drained": False, "in_flight": api.worker.state.in_flight, "waited_seconds": timeout},
        )
    return _json(200, {"drained": True, "waited_seconds": round(time.monotonic() - started, 3)})


async def state(request: web.Request) -> web.Response:
    api = request.app[API_KEY]
    w = api.worker
    return _json(
        200,
        {
            "goal": api.settings.claim.goal,
            "namespace": api.settings.claim.namespace,
            "in_flight": w.state.in_flight,
            "concurrency": api.settings.claim.concurrency,
            "idle_seconds": round(w.idle_seconds(), 3),
            "busy_ratio": round(w.busy_ratio(), 4),
            "handler_ready": w.state.handler_ready,
            "draining": w.state.draining,
        },
    )


async def healthz(_request: web.Request) -> web.Response:
    return _json(200, {"ok": True})


async def readyz(request: web.Request) -> web.Response:
    w = request.app[API_KEY].worker
    if w.state.draining:
        return _json(503, {"ready": False, "reason": "draining"})
    if not w.state.handler_ready:
        return _json(503, {"ready": False, "reason": "handler not ready"})
    return _json(200, {"ready": True})


async def metrics(request: web.Request) -> web.Response:
    text = request.app[API_KEY].metrics.render()
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


def build_local_api(api: LocalApi) -> web.Application:
    app = web.Application(middlewares=[_errors], client_max_size=MAX_BODY)
    app[API_KEY] = api
    app.router.add_post("/v1/publish", publish)
    app.router.add_get("/v1/kv/{key}", kv_get)
    app.router.add_put("/v1/kv/{key}", kv_put)
    app.router.add_get("/v1/intents/{intent_id}", intent)
    app.router.add_post("/v1/drain", drain)
    app.router.add_get("/v1/state", state)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def start_local_api(api: LocalApi) -> tuple[web.AppRunner, str]:
    """Listen on the configured 127.0.0.1 port; returns the runner (to clean up) and the URL."""
    runner = web.AppRunner(build_local_api(api), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, api.settings.api.host, api.settings.api.port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"
