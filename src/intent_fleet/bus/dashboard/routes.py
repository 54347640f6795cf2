"""``/admin/dashboard``: the page, its login, and the one overview it polls.

The page is one document with its script and style inline, under a policy that lets only
those run (:mod:`intent_fleet.telemetry.pages`). Its actions (retry, cancel, dead letters, lookup)
use the admin API itself, which accepts a dashboard session in place of the admin token
(:meth:`~intent_fleet.bus.context.BusContext.require_admin`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from intent_fleet.protocol import GoalStats
from intent_fleet.telemetry.pages import inline_page

from .. import validation
from ..context import CONTEXT_KEY, BusContext, json_response, read_body
from ..errors import ApiError
from ..routes import stats_document
from .sessions import COOKIE, Session

__all__ = ["add_dashboard_routes"]

PATH = "/admin/dashboard"


async def page(_request: web.Request) -> web.Response:
    shown = inline_page(__package__, html="page.html", script="page.js", style="page.css")
    return web.Response(body=shown.body, headers=shown.headers)


def _address(request: web.Request) -> str:
    return request.remote or "unknown"


def _session_answer(ctx: BusContext, session: Session, *, secure: bool) -> web.Response:
    response = json_response(200, {"csrf_token": session.csrf, "expires_at": session.expires_at})
    response.set_cookie(
        COOKIE,
        session.cookie,
        path="/admin",
        max_age=int(session.expires_at - ctx.clock()),
        httponly=True,
        samesite="Strict",
        secure=secure,
    )
    return response


async def login(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT_KEY]
    address = _address(request)
    wait = ctx.login_brake.wait_for(address)
    if wait:
        raise ApiError(
            429,
            "rate_limited",
            "Too many failed logins from this address; retry after the Retry-After delay.",
            headers={"Retry-After": str(wait)},
        )
    doc = validation.json_body(await read_body(request), max_depth=4, required=True)
    password = doc.get("password")
    if not isinstance(password, str) or not ctx.is_admin_token(password):
        ctx.login_brake.failed(address)
        raise ApiError(401, "unauthorized", "Wrong password.")
    ctx.login_brake.succeeded(address)
    return _session_answer(ctx, ctx.session_keys.open(ctx.clock()), secure=request.secure)


async def session(request: web.Request) -> web.Response:
    """The CSRF token of the session this browser holds, for a page loaded afresh."""
    ctx = request.app[CONTEXT_KEY]
    found = ctx.session_keys.check(request.cookies.get(COOKIE, ""), ctx.clock())
    if found is None:
        raise ApiError(401, "unauthorized", "Not logged in, or the session ended.")
    return json_response(200, {"csrf_token": found.csrf, "expires_at": found.expires_at})


async def logout(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT_KEY]
    ctx.require_admin(request)
    response = json_response(200, {"ok": True})
    response.del_cookie(COOKIE, path="/admin")
    return response


async def overview(request: web.Request) -> web.Response:
    """Everything the page shows that changes by itself, in one answer."""
    ctx = request.app[CONTEXT_KEY]
    ctx.require_admin(request)
    figures = await ctx.backend.figures(viewer=None)
    stats = {(s.namespace, s.goal): s for s in figures.stats}
    # Busy goals with nothing waiting have no backlog row, but do have rates.
    for pair in ctx.goal_activity.recent():
        stats.setdefault(
            pair,
            GoalStats(
                namespace=pair[0],
                goal=pair[1],
                ready=0,
                delayed=0,
                claimed=0,
                dead=0,
                oldest_ready_age_seconds=0.0,
            ),
        )
    rates = ctx.goal_activity.of(stats)
    goals: list[dict[str, Any]] = [
        {**stats_document(s), **rates[pair]} for pair, s in sorted(stats.items())
    ]
    return json_response(
        200,
        {
            "now": ctx.clock(),
            "goals": goals,
            "throughput": ctx.throughput.series(),
            "workers": ctx.workers_seen.listing(dict(figures.held_by_worker)),
            "parked_claims": figures.waiting_claims,
            "parked_watches": figures.waiting_watches,
            "storage": figures.storage_health,
            "dead": sum(s.dead for s in figures.stats),
        },
    )


def add_dashboard_routes(app: web.Application) -> None:
    app.router.add_get(PATH, page)
    app.router.add_post(PATH + "/login", login)
    app.router.add_get(PATH + "/session", session)
    app.router.add_post(PATH + "/logout", logout)
    app.router.add_get(PATH + "/overview", overview)
