"""What every request handler shares: the backend, the signature check, the answers."""

from __future__ import annotations

import hmac
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from intent_fleet import __version__
from intent_fleet.protocol import Now

from .auth import SignatureChecker, is_utf8, replay_refused
from .backend import Backend
from .dashboard.activity import GoalActivity, WorkersSeen
from .dashboard.sessions import COOKIE, CSRF_HEADER, LoginBrake, SessionKeys
from .dashboard.throughput import Throughput
from .errors import ApiError
from .records import Caller
from .settings import BusSettings

__all__ = ["PROTOCOL_VERSION", "BusContext", "error_response", "json_response"]

PROTOCOL_VERSION = "2.1"
SERVER_NAME = f"intent-fleet/{__version__}"

#: X-Intent-Version is added to every answer by the app's middleware.
_BASE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}

CONTEXT_KEY: web.AppKey[BusContext] = web.AppKey("bus_context")

#: How long a dashboard login lasts.
DASHBOARD_SESSION_SECONDS = 12 * 3600


def json_response(
    status: int, document: Any, *, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps(document),
        content_type="application/json",
        headers={**_BASE_HEADERS, **headers} if headers else _BASE_HEADERS,
    )


def empty_response(status: int, *, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, headers={**_BASE_HEADERS, **headers} if headers else _BASE_HEADERS
    )


def error_response(err: ApiError) -> web.Response:
    return json_response(
        err.status, {"error": {"code": err.code, "message": err.message}}, headers=err.headers
    )


@dataclass(slots=True)
class BusContext:
    """Long-lived parts of one running bus, built once by :mod:`.server`."""

    settings: BusSettings
    backend: Backend
    signatures: SignatureChecker
    clock: Now = time.time
    started_at: float = field(default_factory=time.time)
    #: (route, status) -> answers, for /metrics.
    responses: Counter[tuple[str, int]] = field(default_factory=Counter)
    #: The dashboard's chart, sampled from ``responses`` once a second.
    throughput: Throughput = field(default_factory=Throughput)
    goal_activity: GoalActivity = field(init=False)
    workers_seen: WorkersSeen = field(init=False)
    session_keys: SessionKeys = field(init=False)
    login_brake: LoginBrake = field(init=False)

    def __post_init__(self) -> None:
        self.session_keys = SessionKeys(
            self.settings.auth.admin_secret, lifetime_seconds=DASHBOARD_SESSION_SECONDS
        )
        self.login_brake = LoginBrake(clock=self.clock)
        self.goal_activity = GoalActivity(self.clock)
        self.workers_seen = WorkersSeen(self.clock)

    async def authenticate(self, request: web.Request, body: bytes) -> Caller:
        """API key, then signature, then rate limit: the protocol's order of checks."""
        presented = request.headers.get("X-API-KEY")
        if not presented:
            raise ApiError(401, "unauthorized", "Missing X-API-KEY header.")
        caller = await self.backend.keys.authenticate(presented)
        if caller is None:
            raise ApiError(401, "unauthorized", "Invalid or revoked API key.")
        now = self.clock()
        signed = self.signatures.check(
            caller=caller,
            api_key=presented,
            method=request.method,
            raw_path=request.raw_path,
            headers=request.headers,
            body=body,
            now=now,
        )
        if signed is not None and not await self.backend.nonces.remember(
            signed.key_id, signed.nonce, timestamp=signed.timestamp, now=now
        ):
            raise replay_refused()
        if not caller.admin:
            wait = await self.backend.rate_limits.acquire(caller.key_id, now=now)
            if wait is not None:
                raise ApiError(
                    429,
                    "rate_limited",
                    "Too many requests for this key; retry after the Retry-After delay.",
                    headers={"Retry-After": str(wait)},
                )
        return caller

    def is_admin_token(self, presented: str) -> bool:
        secret = self.settings.auth.admin_secret
        return is_utf8(presented) and hmac.compare_digest(presented.encode(), secret.encode())

    def require_admin(self, request: web.Request) -> None:
        """The admin token, or a dashboard session with its CSRF token."""
        token = request.headers.get("X-Admin-Token")
        if token is None and COOKIE in request.cookies:
            session = self.session_keys.check(request.cookies[COOKIE], self.clock())
            if session is not None:
                if hmac.compare_digest(
                    request.headers.get(CSRF_HEADER, "").encode(), session.csrf.encode()
                ):
                    return
                raise ApiError(
                    403,
                    "csrf_failed",
                    f"Dashboard requests need the session's {CSRF_HEADER} header.",
                )
        if not token or not self.is_admin_token(token):
            raise ApiError(401, "unauthorized", "Admin routes need a valid X-Admin-Token header.")


async def read_body(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(
            413,
            "payload_too_large",
            f"The request body is larger than {request.app._client_max_size} bytes.",
        ) from None


__all__ += ["CONTEXT_KEY", "SERVER_NAME", "empty_response", "read_body"]
