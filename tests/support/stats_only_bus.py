"""A stand-in for a bus that has per-goal ``GET /stats`` but not the batch or wait
extensions (an older intent-fleet bus, or another server): what the operator must still
scale on, one request per goal.

    python stats_only_bus.py --port N --counts FILE --record FILE

``--counts`` is a JSON object {goal: ready} the test rewrites; every request is appended to
``--record`` as a JSON line (method, path, goal) so the test can count them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aiohttp import web


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--counts", type=Path, required=True)
    parser.add_argument("--record", type=Path, required=True)
    args = parser.parse_args()

    def record(request: web.Request) -> None:
        with args.record.open("a") as out:
            line = {"method": request.method, "path": request.path}
            out.write(json.dumps({**line, "goal": request.query.get("goal")}) + "\n")

    async def health(request: web.Request) -> web.Response:
        record(request)
        body = {"ok": True, "protocol": "2.1", "features": ["backlog_stats", "namespaces"]}
        return web.json_response(body, headers={"X-Intent-Version": "2.1"})

    async def stats(request: web.Request) -> web.Response:
        record(request)
        goal = request.query.get("goal", "")
        namespace = request.query.get("namespace", "default")
        ready = json.loads(args.counts.read_text()).get(goal, 0)
        entry = {"namespace": namespace, "goal": goal, "ready": ready, "delayed": 0}
        entry |= {"claimed": 0, "dead": 0, "oldest_ready_age_seconds": 0.0}
        return web.json_response({"ts": 0.0, "goals": [entry]})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/stats", stats)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
