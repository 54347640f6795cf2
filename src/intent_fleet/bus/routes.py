"""The protocol endpoints: publish, claim, leases, status, results, KV, health, stats."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from intent_fleet.protocol import GoalStats
from intent_fleet.protocol.limits import MAX_IDEMPOTENCY_KEY_CHARS

from . import validation
from .context import (
    CONTEXT_KEY,
    PROTOCOL_VERSION,
    SERVER_NAME,
    BusContext,
    empty_response,
    json_response,
    read_body,
)
from .errors import ApiError
from .lifecycle import ClaimFilter
from .records import Caller, Intent, TerminalRow

__all__ = ["FEATURES", "add_routes", "stats_document"]

#: Extensions this bus offers beyond the published protocol, listed in /health.
FEATURES = (
    "long_poll_claim",
    "backlog_stats",
    "backlog_metrics",
    "claim_tokens",
    "extend_claim",
    "namespaces",
    "results",
    "dead_letters",
    "release_claim",
    "batch_claim",
    "claim_interrupt",
    "batch_stats",
    "backlog_wait",
)


def _ctx(request: web.Request) -> BusContext:
    return request.app[CONTEXT_KEY]


async def _caller_and_doc(
    request: web.Request, *, required: bool
) -> tuple[BusContext, Caller, dict[str, Any], bytes]:
    ctx = _ctx(request)
    body = await read_body(request)
    caller = await ctx.authenticate(request, body)
    doc = validation.json_body(
        body, max_depth=ctx.settings.limits.max_json_depth, required=required
    )
    return ctx, caller, doc, body


async def publish(request: web.Request) -> web.Response:
    ctx, caller, doc, body = await _caller_and_doc(request, required=True)
    req = validation.publish_request(doc, limits=ctx.settings.limits, queue=ctx.settings.queue)
    key = request.headers.get("Idempotency-Key") or None
    if key is not None:
        validation.header_text(key, "Idempotency-Key", max_chars=MAX_IDEMPOTENCY_KEY_CHARS)
    outcome = await ctx.backend.intents.publish(caller, req, idempotency_key=key, body=body)
    return json_response(
        201, {"id": outcome.id, "status": "published", "namespace": outcome.namespace}
    )


async def claim(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    body = await read_body(request)
    caller = await ctx.authenticate(request, body)
    q = validation.claim_query(
        validation.query_params(request),
        request.headers,
        max_wait=ctx.settings.limits.max_claim_wait_seconds,
    )
    if q.publisher is not None and q.publisher != caller.key_id and not caller.admin:
        raise ApiError(403, "forbidden", "Only an admin may claim another publisher's intents.")
    flt = ClaimFilter(
        caller=caller.key_id,
        namespace=q.namespace,
        goal=q.goal,
        publisher=q.publisher,
        worker_id=q.worker_id,
        capabilities=q.capabilities,
        session=q.session,
    )
    limit = q.batch or 1
    intents = await ctx.backend.intents.claim(flt, admin=caller.admin, wait=q.wait, limit=limit)
    ctx.workers_seen.claimed(
        q.worker_id, key_id=caller.key_id, capabilities=q.capabilities, count=len(intents)
    )
    if not intents:
        retry_after = str(ctx.settings.queue.empty_claim_retry_after)
        return empty_response(204, headers={"Retry-After": retry_after})
    if q.batch is None:
        return json_response(200, _claim_document(intents[0]))
    # Extension batch_claim: ?max=N answers {"intents": [...]} with 1..N intents.
    return json_response(200, {"intents": [_claim_document(i) for i in intents]})


async def interrupt_claims(request: web.Request) -> web.Response:
    """Extension claim_interrupt: a draining worker ends its own parked long-polls."""
    ctx = _ctx(request)
    body = await read_body(request)
    caller = await ctx.authenticate(request, body)
    session = validation.claim_session(request.headers, required=True)
    assert session is not None
    return json_response(
        200, {"interrupted": await ctx.backend.intents.interrupt_claims(caller, session)}
    )


def _claim_document(intent: Intent) -> dict[str, Any]:
    assert intent.lease_until is not None
    return {
        "id": intent.id,
        "namespace": intent.namespace,
        "goal": intent.goal,
        "payload": orjson.Fragment(intent.payload),
        "claim_attempts": intent.attempts,
        "max_attempts": intent.max_attempts,
        "priority": intent.priority,
        "visibility": intent.visibility.value,
        "target_worker": intent.target_worker,
        "required_capability": intent.required_capability,
        "claim_token": intent.claim_token,
        "claim_timeout": round(intent.lease_until - intent.updated_at),
        "claim_expires_at": intent.lease_until,
    }


async def extend_claim(request: web.Request) -> web.Response:
    ctx, caller, doc, _ = await _caller_and_doc(request, required=True)
    token, seconds = validation.lease_request(doc)
    intent_id = validation.intent_id(request)
    granted = await ctx.backend.intents.extend(caller, intent_id, token, seconds)
    return json_response(200, {"id": intent_id, "ok": True, "extended_by": granted})


async def fulfill(request: web.Request) -> web.Response:
    ctx, caller, doc, _ = await _caller_and_doc(request, required=False)
    req = validation.fulfill_request(doc, limits=ctx.settings.limits)
    intent_id = validation.intent_id(request)
    ended = await ctx.backend.intents.fulfill(caller, intent_id, req.claim_token, result=req.result)
    ctx.goal_activity.ended(ended)
    return json_response(200, {"id": intent_id, "ok": True})


async def fail(request: web.Request) -> web.Response:
    ctx, caller, doc, _ = await _caller_and_doc(request, required=False)
    token, error = validation.fail_request(doc)
    intent_id = validation.intent_id(request)
    ended = await ctx.backend.intents.fail(caller, intent_id, token, error)
    ctx.goal_activity.ended(ended)
    return json_response(200, {"id": intent_id, "ok": True, "status": ended.status.value})


async def release(request: web.Request) -> web.Response:
    ctx, caller, doc, _ = await _caller_and_doc(request, required=False)
    token, _error = validation.fail_request(doc)
    intent_id = validation.intent_id(request)
    await ctx.backend.intents.release(caller, intent_id, token)
    return json_response(200, {"id": intent_id, "ok": True, "status": "open"})


def _visible(caller: Caller, publisher: str, claimer: str | None) -> bool:
    return caller.admin or caller.key_id in (publisher, claimer)


def _status_document(view: Intent | TerminalRow) -> dict[str, Any]:
    if isinstance(view, Intent):
        status, visibility, lease, completed = (
            view.status.value,
            view.visibility.value,
            view.lease_until,
            None,
        )
    else:
        status, visibility, lease, completed = (
            view.status,
            view.visibility,
            None,
            view.completed_at,
        )
    return {
        "id": view.id,
        "namespace": view.namespace,
        "goal": view.goal,
        "status": status,
        "priority": view.priority,
        "visibility": visibility,
        "claim_attempts": view.attempts,
        "max_attempts": view.max_attempts,
        "run_at": view.run_at,
        "created_at": view.created_at,
        "updated_at": view.updated_at,
        "claim_expires_at": lease,
        "target_worker": view.target_worker,
        "required_capability": view.required_capability,
        "completed_at": completed,
        "last_error": view.last_error,
    }


async def _lookup(request: web.Request) -> tuple[BusContext, Intent | TerminalRow]:
    ctx = _ctx(request)
    caller = await ctx.authenticate(request, b"")
    intent_id = validation.intent_id(request)
    view = await ctx.backend.intents.lookup(intent_id)
    if view is None:
        raise ApiError(404, "not_found", "Intent not found.")
    if not _visible(caller, view.publisher, view.claimer):
        raise ApiError(403, "forbidden", "Only the publisher or the claimer may read this intent.")
    return ctx, view


async def status(request: web.Request) -> web.Response:
    _, view = await _lookup(request)
    return json_response(200, _status_document(view))


async def result(request: web.Request) -> web.Response:
    _, view = await _lookup(request)
    doc = _status_document(view)
    # No result stored: leave result_type out rather than null; SDK 2.1.2 rejects a null
    # result_type as a protocol error, and defaults a missing one to "json".
    # A live intent can already be fulfilled while its write goes to the disk: it
    # carries its result until then.
    if view.result is not None:
        doc["result_type"] = view.result_type or "json"
        doc["result"] = (
            view.result.decode() if view.result_type == "text" else orjson.Fragment(view.result)
        )
    if view.last_error:
        doc["error"] = view.last_error
    return json_response(200, doc)


async def kv_set(request: web.Request) -> web.Response:
    ctx, caller, doc, _ = await _caller_and_doc(request, required=True)
    key = validation.kv_key(request.raw_path)
    value, ttl = validation.kv_set_request(doc, limits=ctx.settings.limits)
    most = 0 if caller.admin else ctx.settings.limits.max_kv_entries_per_key
    expires_at = ctx.clock() + ttl
    await ctx.backend.kv.set(caller.key_id, key, value, expires_at=expires_at, most=most)
    return json_response(200, {"ok": True})


async def kv_get(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    caller = await ctx.authenticate(request, b"")
    key = validation.kv_key(request.raw_path)
    value = await ctx.backend.kv.get(caller.key_id, key, now=ctx.clock())
    if value is None:
        raise ApiError(404, "not_found", "Key not found.")
    return json_response(200, {"value": value})


async def health(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    return json_response(
        200,
        {
            "ok": True,
            "status": "ok",
            "version": PROTOCOL_VERSION,
            "protocol": PROTOCOL_VERSION,
            "server": SERVER_NAME,
            "ts": ctx.clock(),
            "features": list(FEATURES),
            # "ok", or why the last write failed ("full", "io") until one succeeds again.
            "storage": ctx.backend.health,
        },
    )


async def stats(request: web.Request) -> web.Response:
    """Backlog per goal: a tenant key sees what it could claim; the admin sees the whole bus."""
    ctx = _ctx(request)
    caller = await ctx.authenticate(request, b"")
    query = validation.query_params(request)
    namespace = query.get("namespace") or None
    if namespace is not None:
        namespace = validation.namespace_of(namespace)
    goal = validation.goal_of(query.get("goal") or None, required=False)
    viewer = None if caller.admin else caller.key_id
    found = await ctx.backend.backlogs.stats(namespace, goal, viewer=viewer)
    if goal is not None and not found:
        # An unknown goal has an empty backlog, not a missing one: autoscalers poll it.
        found = await ctx.backend.backlogs.stats_of([(namespace or "default", goal)], viewer=viewer)
    return json_response(200, {"ts": ctx.clock(), "goals": [stats_document(s) for s in found]})


async def stats_batch(request: web.Request) -> web.Response:
    """Extension batch_stats: the backlog of many goals in one call, in the order asked.

    With ``wait`` (extension backlog_wait) the answer waits until one of them has work the
    key could claim, or ``wait`` seconds: an autoscaler at zero learns of work at once.
    """
    ctx, caller, doc, _ = await _caller_and_doc(request, required=True)
    pairs, wait = validation.stats_request(doc, max_wait=ctx.settings.limits.max_claim_wait_seconds)
    viewer = None if caller.admin else caller.key_id
    if wait:
        await ctx.backend.backlogs.watch(pairs, viewer=viewer, wait=wait)
    found = await ctx.backend.backlogs.stats_of(pairs, viewer=viewer)
    return json_response(200, {"ts": ctx.clock(), "goals": [stats_document(s) for s in found]})


def stats_document(s: GoalStats) -> dict[str, Any]:
    """One goal's backlog as ``/stats`` answers it (and the dashboard shows it)."""
    return {
        "namespace": s.namespace,
        "goal": s.goal,
        "ready": s.ready,
        "delayed": s.delayed,
        "claimed": s.claimed,
        "dead": s.dead,
        "oldest_ready_age_seconds": round(s.oldest_ready_age_seconds, 3),
    }


def add_routes(app: web.Application) -> None:
    app.router.add_post("/intent", publish)
    app.router.add_post("/claim", claim)
    app.router.add_post("/claim/interrupt", interrupt_claims)
    app.router.add_post("/extend_claim/{intent_id}", extend_claim)
    app.router.add_post("/fulfill/{intent_id}", fulfill)
    app.router.add_post("/fail/{intent_id}", fail)
    app.router.add_post("/release/{intent_id}", release)
    app.router.add_get("/status/{intent_id}", status)
    app.router.add_get("/result/{intent_id}", result)
    app.router.add_post("/set/{key}", kv_set)
    app.router.add_get("/get/{key}", kv_get)
    app.router.add_get("/health", health)
    app.router.add_get("/stats", stats)
    app.router.add_post("/stats", stats_batch)
