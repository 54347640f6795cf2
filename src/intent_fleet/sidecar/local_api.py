"""The sidecar's HTTP servers: the handler-facing local API and the optional ops listener.

The local API (127.0.0.1 only) serves publish, KV, status, drain, state, probes
and metrics; the handler never holds the API key: the sidecar signs these calls
for it. Bus errors are translated to answers the handler can act on (a dead bus
is 502/503, never the handler's fault).

The ops listener (``--ops-listen``, usually the pod IP) serves only what the
kubelet, the operator and Prometheus need: probes, state, metrics, and drain
behind a token. Both apps share the handler functions below; each has its own
route table.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
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
    is_int,
)
from intent_fleet.telemetry import CONTENT_TYPE

from .errors import LocalApiError
from .metrics import SidecarMetrics
from .settings import DRAIN_HEADER, SidecarSettings
from .worker import Worker

__all__ = [
    "LOCAL_ROUTES",
    "OPS_ROUTES",
    "LocalApi",
    "build_local_api",
    "build_ops_api",
    "start_local_api",
    "start_ops_api",
]

log = logging.getLogger(__name__)

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
    return web.Response(
        status=status,
        # Wire models are structs; to_builtins makes them (and dataclasses) plain JSON.
        body=orjson.dumps(msgspec.to_builtins(doc)),
        content_type="application/json",
        headers=headers,
    )


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return _json(status, {"error": {"code": code, "message": message}}, headers)


#: Hosts the local API answers to: a browser page can reach 127.0.0.1 too, but only under a
#: name of its own (DNS rebinding), so anything else in Host is someone else's page.
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})


def _host_name(value: str) -> str:
    if value.startswith("["):
        return value.split("]", 1)[0] + "]"
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


@web.middleware
async def _same_host_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The handler's API acts with the API key: only for a client on this host, never for a
    web page in a developer's browser (DNS rebinding, or a cross-site form or fetch)."""
    host = _host_name(request.headers.get("Host", "").strip().lower())
    if host not in _LOCAL_HOSTS:
        return _error(
            403,
            "forbidden_host",
            "the sidecar's local API answers only requests for 127.0.0.1 or localhost",
        )
    origin = request.headers.get("Origin")
    if (
        origin is not None and _host_name(origin.split("://", 1)[-1].lower()) not in _LOCAL_HOSTS
    ) or (request.headers.get("Sec-Fetch-Site") == "cross-site"):
        return _error(
            403, "forbidden_origin", "the sidecar's local API refuses cross-site requests"
        )
    if request.method in ("POST", "PUT") and request.content_type != "application/json":
        # A browser sends a cross-site POST without asking first only as a form or text/plain.
        return _error(
            415,
            "unsupported_media_type",
            f"{request.method} needs Content-Type: application/json (even with an empty body)",
        )
    return await handler(request)


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
    except LocalApiError as exc:
        return _error(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:  # the router's own 404 and 405
        return _error(
            exc.status, "not_found" if exc.status == 404 else "invalid_request", exc.reason
        )


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        doc = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise LocalApiError(400, "invalid_request", f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise LocalApiError(400, "invalid_request", "body must be a JSON object")
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
    if not is_int(ttl) or ttl < 1:
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


async def ops_drain(request: web.Request) -> web.Response:
    """:func:`drain` for the ops listener: only with the configured token, never open."""
    expected = request.app[API_KEY].settings.ops.drain_token
    if not expected:
        log.warning("drain on the ops listener refused: no drain token configured")
        return _error(
            403,
            "drain_disabled",
            "drain on the ops listener needs a token: start the sidecar with --drain-token "
            f"(INTENT_DRAIN_TOKEN) and send it in the {DRAIN_HEADER} header",
        )
    given = request.headers.get(DRAIN_HEADER, "")
    if not hmac.compare_digest(
        given.encode(errors="surrogateescape"), expected.encode(errors="surrogateescape")
    ):
        log.warning(
            "drain on the ops listener refused: missing or wrong token",
            extra={"peer": request.remote, "header_present": DRAIN_HEADER in request.headers},
        )
        return _error(403, "forbidden", f"missing or wrong {DRAIN_HEADER} header")
    log.info("drain requested on the ops listener", extra={"peer": request.remote})
    return await drain(request)


async def state(request: web.Request) -> web.Response:
    """What an autoscaler needs of one pod: load against capacity, idle time, draining."""
    api = request.app[API_KEY]
    w = api.worker
    return _json(
        200,
        {
            "goal": api.settings.claim.goal,
            "namespace": api.settings.claim.namespace,
            "worker_id": api.settings.claim.worker_id,
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
    body = request.app[API_KEY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


#: (method, path, handler) rows; each app is built from one table.
Route = tuple[str, str, Handler]

#: Read-only routes for probes, autoscaling and scraping: on both listeners.
_OBSERVE: tuple[Route, ...] = (
    ("GET", "/v1/state", state),
    ("GET", "/healthz", healthz),
    ("GET", "/readyz", readyz),
    ("GET", "/metrics", metrics),
)

#: The handler's API on 127.0.0.1 (acts with the API key: never on another address).
LOCAL_ROUTES: tuple[Route, ...] = (
    ("POST", "/v1/publish", publish),
    ("GET", "/v1/kv/{key}", kv_get),
    ("PUT", "/v1/kv/{key}", kv_put),
    ("GET", "/v1/intents/{intent_id}", intent),
    ("POST", "/v1/drain", drain),
    *_OBSERVE,
)

#: The ops listener: no publish, KV or intents (404 there). Drain also answers GET,
#: because the kubelet's httpGet preStop hook can only send GET.
OPS_ROUTES: tuple[Route, ...] = (
    ("GET", "/v1/drain", ops_drain),
    ("POST", "/v1/drain", ops_drain),
    *_OBSERVE,
)


def _build(
    api: LocalApi, routes: tuple[Route, ...], *, same_host_only: bool = False
) -> web.Application:
    middlewares = [_same_host_only, _errors] if same_host_only else [_errors]
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY)
    app[API_KEY] = api
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    return app


def build_local_api(api: LocalApi) -> web.Application:
    return _build(api, LOCAL_ROUTES, same_host_only=True)


def build_ops_api(api: LocalApi) -> web.Application:
    return _build(api, OPS_ROUTES)


async def _serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    bound_host, bound_port = runner.addresses[0][:2]
    if ":" in bound_host:
        bound_host = f"[{bound_host}]"
    return runner, f"http://{bound_host}:{bound_port}"


async def start_local_api(api: LocalApi) -> tuple[web.AppRunner, str]:
    """Listen on the configured 127.0.0.1 port; returns the runner (to clean up) and the URL."""
    return await _serve(build_local_api(api), api.settings.api.host, api.settings.api.port)


async def start_ops_api(api: LocalApi) -> tuple[web.AppRunner, str]:
    """Listen on ``--ops-listen``; returns the runner (to clean up) and the URL."""
    return await _serve(build_ops_api(api), api.settings.ops.host, api.settings.ops.port)
