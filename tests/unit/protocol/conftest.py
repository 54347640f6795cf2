"""A scriptable fake bus on 127.0.0.1 and a client wired to it with fake time.

The fake bus is a real aiohttp server (the client's real HTTP stack is under
test), answering from a script per route and recording every request with
whether its signature verified. Sleeping is a recorder: retries never wait.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from intent_fleet.protocol import BusClient, ClientSettings, Clock, RetryPolicy
from intent_fleet.protocol.signing import compute_signature, signatures_match

API_KEY = "tk_test_0123456789abcdef0123456789abcdef0123"
ADMIN_SECRET = "admin-secret-for-tests"
T0 = 1_700_000_000.0


@dataclass
class Reply:
    """One scripted answer."""

    status: int = 200
    json: Any = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: ``X-Intent-Version`` to send; ``None`` sends none.
    version: str | None = "2.1"
    #: Seconds the handler holds the answer (only the timeout test uses it).
    hold: float = 0.0


@dataclass
class Seen:
    """One request as the bus received it."""

    method: str
    raw_path: str
    headers: CIMultiDict[str]
    body: bytes
    signature_ok: bool | None

    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None


class FakeBus:
    """Answers ``(METHOD, path)`` from a script; unknown routes get a protocol 404."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self._script: dict[tuple[str, str], list[Reply]] = {}
        self.url = ""
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._handle)

    def on(self, method: str, path: str, *replies: Reply) -> None:
        """Script replies for a route: one per request, the last one repeats."""
        self._script[(method, path)] = list(replies)

    def requests_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.raw_path.split("?", 1)[0] == path]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            Seen(
                method=request.method,
                raw_path=request.raw_path,
                headers=CIMultiDict(request.headers),
                body=body,
                signature_ok=_verify(request, body),
            )
        )
        queue = self._script.get((request.method, request.raw_path.split("?", 1)[0]))
        if not queue:
            reply = Reply(404, {"error": {"code": "not_found", "message": "no such route"}})
        else:
            reply = queue.pop(0) if len(queue) > 1 else queue[0]
        if reply.hold:
            await asyncio.sleep(reply.hold)
        headers = dict(reply.headers)
        if reply.version is not None:
            headers["X-Intent-Version"] = reply.version
        if reply.body is not None:
            raw = reply.body
        elif reply.json is not None:
            raw = orjson.dumps(reply.json)
            headers.setdefault("Content-Type", "application/json")
        else:
            raw = b""
        return web.Response(status=reply.status, body=raw, headers=headers)


def _verify(request: web.Request, body: bytes) -> bool | None:
    """Recompute the signature from what arrived; None when the request was unsigned."""
    signature = request.headers.get("X-Signature")
    if signature is None:
        return None
    expected = compute_signature(
        request.headers.get("X-API-KEY", ""),
        request.method,
        request.raw_path,
        request.headers.get("X-Timestamp", ""),
        request.headers.get("X-Nonce", ""),
        body,
    )
    return signatures_match(expected, signature)


class Sleeps:
    """Stands in for ``asyncio.sleep``: records the delay, returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
async def fake_bus() -> AsyncIterator[FakeBus]:
    bus = FakeBus()
    server = TestServer(bus.app, host="127.0.0.1")
    await server.start_server()
    bus.url = str(server.make_url("")).rstrip("/")
    yield bus
    await server.close()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make_settings(url: str, **overrides: Any) -> ClientSettings:
    values: dict[str, Any] = {"base_url": url, "retry": RetryPolicy(attempts=3)}
    values.update(overrides)
    return ClientSettings(**values)


@pytest.fixture
async def client(fake_bus: FakeBus, sleeps: Sleeps) -> AsyncIterator[BusClient]:
    bus_client = BusClient(
        settings=make_settings(fake_bus.url),
        api_key=API_KEY,
        clock=Clock(wall=lambda: T0, sleep=sleeps),
        rng=random.Random(42),
    )
    yield bus_client
    await bus_client.aclose()
