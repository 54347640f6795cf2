"""The aiohttp application: routes plus the one middleware that turns every
failure into the protocol's JSON error shape."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from .admin import add_admin_routes
from .context import CONTEXT_KEY, PROTOCOL_VERSION, BusContext, error_response
from .dashboard.routes import add_dashboard_routes
from .errors import ApiError, DurabilityError, StorageFullError
from .metrics import metrics
from .routes import add_routes
from .routes_v1 import add_v1_routes

__all__ = ["build_app"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Room for JSON framing around the largest payload or result, escaped.
_BODY_OVERHEAD = 64 * 1024


def _shown(request: web.Request) -> str:
    """The request path as an answer may quote it: bytes that are not UTF-8 (aiohttp hands
    them over as lone surrogates) escaped, and cut short."""
    return request.path.encode("utf-8", "backslashreplace").decode()[:200]


def build_app(ctx: BusContext) -> web.Application:
    limits = ctx.settings.limits
    # v1.1 servers announce "1.0" (observed on the reference server 7.0.1).
    version_header = "1.0" if ctx.settings.wire_version == "1.1" else PROTOCOL_VERSION
    max_body = 2 * max(limits.max_payload_bytes, limits.max_result_bytes) + _BODY_OVERHEAD

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        try:
            response = await handler(request)
        except Exception as failed:
            response = error_response(_as_api_error(failed, request, route_name=name))
        ctx.responses[(name, response.status)] += 1
        response.headers["X-Intent-Version"] = version_header
        return response

    app = web.Application(middlewares=[errors], client_max_size=max_body)
    app[CONTEXT_KEY] = ctx
    if ctx.settings.wire_version == "1.1":
        add_v1_routes(app)
    else:
        add_routes(app)
    add_admin_routes(app)
    add_dashboard_routes(app)
    app.router.add_get("/metrics", metrics)
    return app


def _as_api_error(failed: Exception, request: web.Request, *, route_name: str) -> ApiError:
    """What the client is told about a failure: the protocol's error body, never a trace."""
    if isinstance(failed, ApiError):
        return failed
    if isinstance(failed, StorageFullError):
        return ApiError(
            507,
            "insufficient_storage",
            "The bus's disk is full: this write was not made and nothing changed. "
            "Reads and claims go on; retry once space returns.",
            headers={"Retry-After": "5"},
        )
    if isinstance(failed, DurabilityError):
        if failed.cause == "rejected":
            return ApiError(
                500,
                "write_rejected",
                "The bus could not make this request durable; nothing changed.",
            )
        return ApiError(
            503,
            "storage_unavailable",
            "The bus could not make this request durable; nothing changed.",
            headers={"Retry-After": "1"},
        )
    if isinstance(failed, web.HTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            failed.status, "invalid_request"
        )
        message = failed.reason if failed.status != 404 else f"No such endpoint: {_shown(request)}"
        return ApiError(failed.status, code, message)
    # The log carries the route, not the body.
    log.error(
        "unhandled error",
        exc_info=failed,
        extra={"route": route_name, "method": request.method},
    )
    return ApiError(500, "internal_error", "The bus failed to handle this request.")
