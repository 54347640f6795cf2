"""Admin endpoints (``X-Admin-Token``): keys, dead letters, retry, cancel, purge, cleanup."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from intent_fleet.protocol.limits import MAX_DEAD_PAGE, MAX_OWNER_CHARS

from . import validation
from .auth import new_key
from .context import CONTEXT_KEY, BusContext, json_response, read_body
from .errors import ApiError
from .records import TerminalRow

__all__ = ["add_admin_routes"]


async def _admin(request: web.Request) -> tuple[BusContext, dict[str, Any]]:
    ctx = request.app[CONTEXT_KEY]
    ctx.require_admin(request)
    body = await read_body(request)
    doc = validation.json_body(body, max_depth=ctx.settings.limits.max_json_depth, required=False)
    return ctx, doc


async def generate_key(request: web.Request) -> web.Response:
    ctx, doc = await _admin(request)
    owner = validation.stored_text(
        doc.get("owner", "anonymous"), "'owner'", max_chars=MAX_OWNER_CHARS
    )
    if not owner.strip():
        raise ApiError(
            400, "invalid_request", f"'owner' must be a string of 1-{MAX_OWNER_CHARS} characters."
        )
    secret, key = new_key(owner=owner, now=ctx.clock())
    await ctx.backend.keys.add(key)
    return json_response(
        201,
        {"api_key": secret, "id": key.id, "owner": key.name, "created_at": key.created_at},
    )


async def revoke_key(request: web.Request) -> web.Response:
    ctx, doc = await _admin(request)
    secret, key_id = doc.get("api_key"), doc.get("id")
    if not isinstance(secret, str) and not isinstance(key_id, str):
        raise ApiError(400, "invalid_request", "Send 'api_key' (the secret) or 'id' (the key id).")
    key = await ctx.backend.keys.find(
        secret=secret if isinstance(secret, str) else None,
        key_id=key_id if isinstance(key_id, str) else None,
    )
    if key is None:
        raise ApiError(404, "not_found", "No such key.")
    await ctx.backend.keys.revoke(key, now=ctx.clock())
    return json_response(200, {"ok": True, "id": key.id})


async def list_keys(request: web.Request) -> web.Response:
    ctx, _ = await _admin(request)
    keys = [
        {"id": k.id, "owner": k.name, "created_at": k.created_at, "revoked_at": k.revoked_at}
        for k in await ctx.backend.keys.all()
    ]
    return json_response(200, {"keys": keys})


async def purge(request: web.Request) -> web.Response:
    ctx, doc = await _admin(request)
    if doc.get("confirm") is not True:
        raise ApiError(400, "confirmation_required", 'Send {"confirm": true} to purge.')
    namespace = doc.get("namespace")
    if namespace is not None:
        namespace = validation.namespace_of(namespace)
    deleted = await ctx.backend.purge(namespace)
    return json_response(200, {"ok": True, "deleted": deleted})


async def cleanup(request: web.Request) -> web.Response:
    ctx, _ = await _admin(request)
    report = await run_cleanup(ctx)
    return json_response(200, report)


async def run_cleanup(ctx: BusContext) -> dict[str, int]:
    return await ctx.backend.cleanup()


async def get_intent(request: web.Request) -> web.Response:
    ctx, _ = await _admin(request)
    intent_id = validation.intent_id(request)
    intent = await ctx.backend.intents.intent(intent_id)
    if intent is None:
        raise ApiError(404, "not_found", "Intent not found.")
    finished = await ctx.backend.intents.lookup(intent_id) if intent.status.terminal else None
    outcome: dict[str, Any] = {}
    if isinstance(finished, TerminalRow) and finished.result is not None:
        outcome = {
            "result_type": finished.result_type or "json",
            "result": finished.result.decode()
            if finished.result_type == "text"
            else orjson.Fragment(finished.result),
            "completed_at": finished.completed_at,
        }
    return json_response(
        200,
        {
            "id": intent.id,
            "namespace": intent.namespace,
            "goal": intent.goal,
            "payload": orjson.Fragment(intent.payload),
            "status": intent.status.value,
            "priority": intent.priority,
            "publisher": intent.publisher,
            "visibility": intent.visibility.value,
            "claimed_by": intent.claimer,
            "worker_id": intent.worker_id,
            "claim_attempts": intent.attempts,
            "max_attempts": intent.max_attempts,
            "backoff_base": intent.backoff_base,
            "target_worker": intent.target_worker,
            "required_capability": intent.required_capability,
            "last_error": intent.last_error,
            "created_at": intent.created_at,
            "updated_at": intent.updated_at,
            "run_at": intent.run_at,
            "claim_expires_at": intent.lease_until,
            **outcome,
        },
    )


async def cancel_intent(request: web.Request) -> web.Response:
    ctx, _ = await _admin(request)
    intent_id = validation.intent_id(request)
    await ctx.backend.intents.cancel(intent_id)
    return json_response(200, {"id": intent_id, "ok": True, "status": "cancelled"})


async def retry_intent(request: web.Request) -> web.Response:
    ctx, _ = await _admin(request)
    intent_id = validation.intent_id(request)
    await ctx.backend.intents.retry(intent_id)
    return json_response(200, {"id": intent_id, "ok": True, "status": "open"})


def _dead_summary(row: TerminalRow) -> dict[str, Any]:
    return {
        "intent_id": row.id,
        "namespace": row.namespace,
        "goal": row.goal,
        "attempts": row.attempts,
        "reason": row.last_error,
        "created_at": row.created_at,
        "died_at": row.updated_at,
    }


async def dead_letters(request: web.Request) -> web.Response:
    ctx, _ = await _admin(request)
    q = validation.query_params(request)
    try:
        limit = int(q.get("limit", "100"))
        offset = int(q.get("offset", "0"))
    except ValueError:
        raise ApiError(400, "invalid_request", "'limit' and 'offset' must be integers.") from None
    if not 1 <= limit <= MAX_DEAD_PAGE or offset < 0:
        raise ApiError(400, "invalid_request", f"'limit' must be 1-{MAX_DEAD_PAGE}, 'offset' >= 0.")
    namespace = q.get("namespace") or None
    if namespace is not None:
        namespace = validation.namespace_of(namespace)
    goal = validation.goal_of(q.get("goal") or None, required=False)
    rows = await ctx.backend.intents.dead_letters(
        namespace=namespace, goal=goal, limit=limit, offset=offset
    )
    return json_response(200, {"dead": [_dead_summary(r) for r in rows]})


async def dead_letter(request: web.Request) -> web.Response:
    ctx, _ = await _admin(request)
    intent = await ctx.backend.intents.intent(validation.intent_id(request))
    if intent is None or intent.status.value != "dead":
        raise ApiError(404, "not_found", "Dead letter not found.")
    return json_response(
        200,
        {
            "intent_id": intent.id,
            "namespace": intent.namespace,
            "goal": intent.goal,
            "payload": orjson.Fragment(intent.payload),
            "publisher": intent.publisher,
            "visibility": intent.visibility.value,
            "attempts": intent.attempts,
            "reason": intent.last_error,
            "created_at": intent.created_at,
            "died_at": intent.updated_at,
        },
    )


def add_admin_routes(app: web.Application) -> None:
    app.router.add_post("/admin/generate_key", generate_key)
    app.router.add_post("/admin/revoke_key", revoke_key)
    app.router.add_get("/admin/keys", list_keys)
    app.router.add_post("/admin/purge", purge)
    app.router.add_post("/admin/cleanup", cleanup)
    app.router.add_get("/admin/intents/{intent_id}", get_intent)
    app.router.add_post("/admin/intents/{intent_id}/cancel", cancel_intent)
    app.router.add_post("/admin/intents/{intent_id}/retry", retry_intent)
    app.router.add_get("/admin/dead", dead_letters)
    app.router.add_get("/admin/dead/{intent_id}", dead_letter)
