"""The v1.1 face of the bus (``--wire-version 1.1``), as the reference server 7.0.1 answers.

Only what v1.1 has: publish, claim (no namespace, no claim token; the answer
carries ``id``, ``goal``, ``payload``, ``claim_attempts``), fulfill and fail by
the key that holds the lease (fail is final), and KV. It exists so clients
(our sidecar among them) are tested against the older protocol with a real
process rather than a mock.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from . import routes, validation
from .context import CONTEXT_KEY, empty_response, json_response, read_body
from .lifecycle import ClaimFilter

__all__ = ["add_v1_routes"]


async def claim(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT_KEY]
    body = await read_body(request)
    caller = await ctx.authenticate(request, body)
    query = validation.query_params(request)
    goal = validation.goal_of(query.get("goal") or None, required=False)
    flt = ClaimFilter(caller=caller.key_id, namespace="default", goal=goal)
    claimed = await ctx.backend.intents.claim(flt, admin=caller.admin, wait=0)
    ctx.workers_seen.claimed(None, key_id=caller.key_id, capabilities=(), count=len(claimed))
    if not claimed:
        return empty_response(204)
    intent = claimed[0]
    return json_response(
        200,
        {
            "id": intent.id,
            "goal": intent.goal,
            "payload": orjson.Fragment(intent.payload),
            "claim_attempts": intent.attempts,
        },
    )


async def fulfill(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT_KEY]
    body = await read_body(request)
    caller = await ctx.authenticate(request, body)
    intent_id = validation.intent_id(request)
    # v1.1 ignores the body: no claim token, no result.
    ctx.goal_activity.ended(await ctx.backend.intents.fulfill(caller, intent_id, None, result=None))
    return json_response(200, {"id": intent_id, "ok": True})


async def fail(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT_KEY]
    body = await read_body(request)
    caller = await ctx.authenticate(request, body)
    doc = validation.json_body(body, max_depth=ctx.settings.limits.max_json_depth, required=False)
    error = validation.error_text(doc.get("error", "unknown"))
    intent_id = validation.intent_id(request)
    ctx.goal_activity.ended(
        await ctx.backend.intents.fail(caller, intent_id, None, error, final=True)
    )
    return json_response(200, {"id": intent_id, "ok": True, "status": "failed"})


def add_v1_routes(app: web.Application) -> None:
    app.router.add_post("/intent", routes.publish)
    app.router.add_post("/claim", claim)
    app.router.add_post("/fulfill/{intent_id}", fulfill)
    app.router.add_post("/fail/{intent_id}", fail)
    app.router.add_post("/set/{key}", routes.kv_set)
    app.router.add_get("/get/{key}", routes.kv_get)
