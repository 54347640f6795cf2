"""A raw async client for the bus under test: exact bytes, exact headers, no protocol logic.

Integration tests use it instead of the project's protocol client so that a
bug in the client cannot hide a bug in the bus (or the other way round), and
so that a test can send what a real client never would: a bad signature, a
stale timestamp, a replayed nonce, a malformed body.

Every request is signed (``X-Timestamp``/``X-Nonce``/``X-Signature``) over
the canonical path and the exact body bytes sent, unless ``sign=False``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, Self

import aiohttp
import orjson
from multidict import CIMultiDictProxy
from yarl import URL

from intent_fleet.protocol.signing import canonical_body, canonical_path, sign_request

__all__ = ["RawBus", "Reply", "assert_error", "send_raw_http"]

#: Query parameters, as ``canonical_path`` takes them: a mapping or (key, value) pairs.
QueryParams = Mapping[str, Any] | Iterable[tuple[str, Any]]


class Reply(NamedTuple):
    """One answer: status, headers, and the body parsed as JSON (None when empty/not JSON)."""

    status: int
    headers: CIMultiDictProxy[str]
    body: Any


class RawBus:
    """``async with RawBus(url, admin_secret=...) as rb:``; one aiohttp session per instance."""

    def __init__(self, url: str, *, admin_secret: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.admin_secret = admin_secret
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use RawBus as an async context manager"
        return self._session

    # -- the one primitive ------------------------------------------------
    async def raw(
        self,
        method: str,
        path: str,
        *,
        key: str | None,
        doc: Any = None,
        raw_body: bytes | None = None,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
        sign: bool = True,
        now: float | None = None,
        nonce: str | None = None,
        wire_path: str | None = None,
        timeout: float | None = None,
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        """Send one request; returns (status, headers, raw body bytes).

        ``path`` plus ``params`` give the canonical path that is signed and, unless
        ``wire_path`` names other bytes for the path and query, sent.
        ``now``/``nonce`` override what the signature uses (stale clocks, replays).
        """
        body = raw_body if raw_body is not None else canonical_body(doc)
        signed_path = canonical_path(path, params)
        sent: dict[str, str] = {}
        if body:
            sent["Content-Type"] = "application/json"
        if key is not None:
            if sign:
                sent.update(
                    sign_request(
                        api_key=key,
                        method=method,
                        path=signed_path,
                        body=body,
                        now=time.time() if now is None else now,
                        nonce=nonce,
                    ).as_dict()
                )
            else:
                sent["X-API-KEY"] = key
        sent.update(headers or {})
        url = URL(self.url + (wire_path if wire_path is not None else signed_path), encoded=True)
        extra: dict[str, Any] = {}
        if timeout is not None:
            extra["timeout"] = aiohttp.ClientTimeout(total=timeout)
        async with self.session.request(
            method, url, data=body or None, headers=sent, **extra
        ) as resp:
            return resp.status, resp.headers, await resp.read()

    async def request(
        self,
        method: str,
        path: str,
        *,
        key: str | None,
        doc: Any = None,
        raw_body: bytes | None = None,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
        sign: bool = True,
        now: float | None = None,
        nonce: str | None = None,
        wire_path: str | None = None,
        timeout: float | None = None,
    ) -> Reply:
        """As :meth:`raw`, with the body parsed as JSON (None when empty or not JSON)."""
        status, resp_headers, data = await self.raw(
            method,
            path,
            key=key,
            doc=doc,
            raw_body=raw_body,
            params=params,
            headers=headers,
            sign=sign,
            now=now,
            nonce=nonce,
            wire_path=wire_path,
            timeout=timeout,
        )
        parsed: Any = None
        if data and resp_headers.get("Content-Type", "").startswith("application/json"):
            parsed = orjson.loads(data)
        return Reply(status, resp_headers, parsed)

    # -- conveniences that assert the happy path --------------------------
    async def admin(self, method: str, path: str, doc: Any = None, **kw: Any) -> Reply:
        """An admin route, with ``X-Admin-Token``."""
        headers = {"X-Admin-Token": self.admin_secret, **kw.pop("headers", {})}
        return await self.request(method, path, key=None, doc=doc, headers=headers, **kw)

    async def new_key(self, owner: str = "tenant") -> tuple[str, str]:
        """A fresh tenant key: (secret, key id)."""
        r = await self.admin("POST", "/admin/generate_key", {"owner": owner})
        assert r.status == 201, r
        return r.body["api_key"], r.body["id"]

    async def publish(self, key: str, doc: dict[str, Any], **kw: Any) -> str:
        """Publish; asserts 201 and returns the intent id."""
        r = await self.request("POST", "/intent", key=key, doc=doc, **kw)
        assert r.status == 201, r
        assert r.body["status"] == "published"
        return str(r.body["id"])

    async def claim(
        self, key: str, *, headers: Mapping[str, str] | None = None, **params: Any
    ) -> dict[str, Any] | None:
        """Claim; returns the intent document, or None on 204 (asserting its Retry-After)."""
        r = await self.request("POST", "/claim", key=key, params=params, headers=headers)
        if r.status == 204:
            assert r.headers.get("Retry-After") == "1", dict(r.headers)
            return None
        assert r.status == 200, r
        doc: dict[str, Any] = r.body
        return doc

    async def dead_letter(
        self, key: str, goal: str, payload: Any, *, error: str = "handler exploded"
    ) -> str:
        """Publish with one attempt, claim it and fail it: a dead letter; its id."""
        intent_id = await self.publish(key, {"goal": goal, "payload": payload, "max_attempts": 1})
        claimed = await self.claim(key, goal=goal)
        assert claimed is not None and claimed["id"] == intent_id, claimed
        failed = await self.request(
            "POST",
            f"/fail/{intent_id}",
            key=key,
            doc={"error": error, "claim_token": claimed["claim_token"]},
        )
        assert failed.status == 200 and failed.body["status"] == "dead", failed
        return intent_id

    async def fulfill(self, key: str, intent_id: str, doc: dict[str, Any] | None = None) -> Reply:
        return await self.request("POST", f"/fulfill/{intent_id}", key=key, doc=doc or {})

    async def status(self, key: str, intent_id: str) -> Reply:
        return await self.request("GET", f"/status/{intent_id}", key=key)

    async def stats(self, key: str, **params: Any) -> list[dict[str, Any]]:
        r = await self.request("GET", "/stats", key=key, params=params)
        assert r.status == 200, r
        goals: list[dict[str, Any]] = r.body["goals"]
        return goals


async def send_raw_http(port: int, request: bytes, *, timeout: float = 10.0) -> tuple[int, Any]:
    """Write raw HTTP/1.1 bytes (which no client library would send) to 127.0.0.1:port.

    The request should carry ``Connection: close``. Returns the status and the
    body parsed as JSON (None when empty, or not JSON: aiohttp's own parser answers a
    request it cannot parse in plain text, before the bus sees it).
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    json_answer = b"content-type: application/json" in head.lower()
    return status, orjson.loads(body) if body.strip() and json_answer else None


def assert_error(reply: Reply, status: int, code: str, *words: str) -> None:
    """``reply`` is the protocol's error shape with this status and code, and its
    message names every one of ``words`` (case-insensitive)."""
    assert reply.status == status, reply
    assert isinstance(reply.body, dict), reply
    assert set(reply.body) == {"error"}, reply.body
    error = reply.body["error"]
    assert set(error) == {"code", "message"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str)
    assert error["message"], error
    for word in words:
        assert word.lower() in error["message"].lower(), (word, error["message"])
