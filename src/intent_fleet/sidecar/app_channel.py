"""The only module that talks to the handler: the handler contract, both ways.

Request: ``POST http://127.0.0.1:<port><path>`` with the payload as the JSON
body and the ``Intent-*`` headers. Answer mapping:

- 2xx: fulfill; a JSON body is a ``json`` result, ``text/*`` a ``text`` one,
  empty or 204 none. A result over the size limit fails the intent.
- 429 / 503: busy; the sidecar keeps the lease and retries after Retry-After.
- any other 4xx: fail with the handler's own error text.
- 5xx, timeouts, refused or reset connections: fail, naming the cause.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from intent_fleet.protocol import Clock, parse_retry_after

from .settings import AppSettings

__all__ = ["AppChannel", "Busy", "Delivery", "Failed", "Fulfilled", "Outcome"]

#: Handler error text kept in a /fail (the bus keeps 500 characters).
MAX_ERROR_TEXT = 480
#: Retry-After a busy handler gets when it sends none (seconds).
DEFAULT_BUSY_WAIT = 1.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """One intent, as the handler receives it."""

    intent_id: str
    goal: str
    namespace: str
    attempt: int
    #: Unix seconds by which the handler must answer.
    deadline: float
    payload: bytes


@dataclass(frozen=True, slots=True)
class Fulfilled:
    """2xx: ``result`` is the parsed JSON value or the text; None with no result."""

    result: Any
    result_type: str | None  # "json" | "text" | None


@dataclass(frozen=True, slots=True)
class Failed:
    """The intent fails: ``error`` goes to the bus, ``cause`` labels metrics and decisions."""

    error: str
    #: One of: timeout, unreachable, disconnected, rejected, handler_error,
    #: bad_result, result_too_large, busy.
    cause: str = "handler_error"


@dataclass(frozen=True, slots=True)
class Busy:
    retry_after: float


Outcome = Fulfilled | Failed | Busy


class AppChannel:
    """Delivers intents to the handler and probes its readiness."""

    def __init__(
        self, *, settings: AppSettings, session: aiohttp.ClientSession, clock: Clock | None = None
    ) -> None:
        self._settings = settings
        self._session = session
        self._clock = clock or Clock()
        base = f"http://127.0.0.1:{settings.port}"
        self._url = base + settings.path
        self._health_url = base + settings.health_path if settings.health_path else None

    def _retry_after(self, value: str | None) -> float:
        """The busy handler's Retry-After (seconds or an HTTP date), capped; a default when
        it sends none or nonsense."""
        wait = parse_retry_after(value, now=self._clock.wall())
        return min(
            DEFAULT_BUSY_WAIT if wait is None else wait, self._settings.max_busy_wait_seconds
        )

    async def deliver(self, delivery: Delivery, *, limit_seconds: float) -> Outcome:
        headers = {
            "Content-Type": "application/json",
            "Intent-Id": delivery.intent_id,
            "Intent-Goal": delivery.goal,
            "Intent-Namespace": delivery.namespace,
            "Intent-Attempt": str(delivery.attempt),
            "Intent-Deadline": str(math.floor(delivery.deadline)),
            "Idempotency-Key": delivery.intent_id,
        }
        try:
            async with self._session.post(
                self._url,
                data=delivery.payload,
                headers=headers,
                # A redirect would carry the payload to wherever the handler points: never.
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=limit_seconds),
            ) as resp:
                return await self._outcome(resp)
        except TimeoutError:
            return Failed(f"handler timed out after {limit_seconds:.3g} s", cause="timeout")
        except aiohttp.ClientConnectorError as exc:
            return Failed(
                f"handler unreachable at {self._url}: {_reason(exc)}", cause="unreachable"
            )
        except aiohttp.ServerDisconnectedError:
            return Failed("handler closed the connection before answering", cause="disconnected")
        except aiohttp.ClientPayloadError as exc:
            return Failed(f"handler's answer was cut off: {exc}", cause="disconnected")
        except (aiohttp.ClientError, OSError) as exc:
            return Failed(
                f"handler connection failed: {type(exc).__name__}: {exc}", cause="disconnected"
            )

    async def _outcome(self, resp: aiohttp.ClientResponse) -> Outcome:
        status = resp.status
        if status in (429, 503):
            return Busy(self._retry_after(resp.headers.get("Retry-After")))
        limit = self._settings.max_result_bytes
        body = await _read_limited(resp, limit)
        if 200 <= status < 300:
            if body is None:
                return Failed(
                    f"handler result is larger than {limit} bytes", cause="result_too_large"
                )
            if status == 204 or not body:
                return Fulfilled(result=None, result_type=None)
            ctype = resp.content_type or ""
            if ctype == "application/json" or ctype.endswith("+json"):
                return _json_result(body)
            if ctype in ("", "application/octet-stream") and "Content-Type" not in resp.headers:
                return _sniffed_result(body)
            if ctype.startswith("text/"):
                try:
                    text = body.decode(resp.charset or "utf-8")
                except (UnicodeDecodeError, LookupError):
                    return Failed(
                        "handler returned text that is not valid in its charset", cause="bad_result"
                    )
                return Fulfilled(result=text, result_type="text")
            return Failed(
                f"handler answered {status} with Content-Type {ctype or 'none'}; "
                "results must be JSON or text/*",
                cause="bad_result",
            )
        text = _error_text(body)
        if 300 <= status < 400:
            return Failed(
                f"handler answered a redirect ({status}); the sidecar does not follow redirects",
                cause="rejected",
            )
        if 400 <= status < 500:
            return Failed(f"handler rejected the intent ({status}): {text}", cause="rejected")
        return Failed(f"handler failed ({status}): {text}")

    async def probe(self) -> bool:
        """Ready = health path answers 200, or (no health path) the port accepts."""
        try:
            if self._health_url is None:
                _reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", self._settings.port), timeout=2.0
                )
                writer.close()
                return True
            async with self._session.get(
                self._health_url, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=2.0)
            ) as resp:
                await resp.read()
                return resp.status == 200
        except (TimeoutError, OSError, aiohttp.ClientError):
            return False


async def _read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The body, or None when it exceeds ``limit`` (read no further than that)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _json_result(body: bytes) -> Outcome:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return Failed(f"handler returned invalid JSON: {exc}", cause="bad_result")
    return Fulfilled(result=value, result_type="json")


def _sniffed_result(body: bytes) -> Outcome:
    """No Content-Type (common with bare Node or shell handlers): JSON if it parses, else text."""
    try:
        return Fulfilled(result=orjson.loads(body), result_type="json")
    except orjson.JSONDecodeError:
        pass
    try:
        return Fulfilled(result=body.decode(), result_type="text")
    except UnicodeDecodeError:
        return Failed(
            "handler returned a binary body without a Content-Type; results must be JSON or text",
            cause="bad_result",
        )


def _error_text(body: bytes | None) -> str:
    if body is None:
        return "(error body larger than the result limit)"
    text = body.decode("utf-8", "replace").strip()
    return (text[:MAX_ERROR_TEXT] + "...") if len(text) > MAX_ERROR_TEXT else (text or "(no body)")


def _reason(exc: aiohttp.ClientConnectorError) -> str:
    os_error = exc.os_error
    if isinstance(os_error, ConnectionRefusedError):
        return "connection refused (is the handler listening?)"
    return os_error.strerror or str(os_error)
