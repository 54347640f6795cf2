"""The operator's own HTTP endpoints: /healthz (the process serves), /readyz (it leads and its
watches are up, or it stands by as a follower), for kubelet probes; /metrics for Prometheus;
and / with /fleet.json, a read-only page of every IntentWorker the leader scales."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from intent_fleet.telemetry import CONTENT_TYPE
from intent_fleet.telemetry.pages import inline_page

from .metrics import OperatorMetrics

__all__ = ["ProbeState", "start_probes"]


@dataclass
class ProbeState:
    role: str = "starting"
    #: Set once kopf reports its watches are established.
    ready: asyncio.Event = field(default_factory=asyncio.Event)


async def start_probes(
    state: ProbeState, listen: str, *, metrics: OperatorMetrics
) -> web.AppRunner:
    """Serve the probes, and ``metrics`` rendered afresh per scrape, on ``listen`` (host:port)."""

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "role": state.role})

    async def readyz(_request: web.Request) -> web.Response:
        # A follower is ready: it is doing exactly what it should, standing by.
        ok = state.role == "follower" or (state.role == "leader" and state.ready.is_set())
        return web.json_response({"ready": ok, "role": state.role}, status=200 if ok else 503)

    async def serve_metrics(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def fleet_page(_request: web.Request) -> web.Response:
        shown = inline_page(__package__, html="fleet.html", script="fleet.js", style="fleet.css")
        return web.Response(body=shown.body, headers=shown.headers)

    async def fleet(_request: web.Request) -> web.Response:
        # No payloads, keys or specs: names, goals and figures, as /metrics shows them.
        return web.json_response(
            {**metrics.fleet.snapshot(), "role": state.role}, headers={"Cache-Control": "no-store"}
        )

    app = web.Application()
    app.router.add_get("/", fleet_page)
    app.router.add_get("/fleet.json", fleet)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", serve_metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, _, port = listen.rpartition(":")
    await web.TCPSite(runner, host or "127.0.0.1", int(port)).start()
    return runner
