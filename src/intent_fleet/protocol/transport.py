"""The one module that sends HTTP requests to a bus.

Shared by :class:`BusClient` and :class:`AdminClient`, which are built the same way
(:class:`Connection`, their one constructor) and so sign, time out, retry and translate
errors the same way:

- the request path is built once with :func:`canonical_path` and sent byte for
  byte as signed (``yarl.URL(..., encoded=True)`` keeps aiohttp from
  re-encoding it), and the body is the exact ``canonical_body`` bytes;
- aiohttp's and the OS's exceptions become :class:`IntentBusNetworkError` here
  and nowhere else, and HTTP error statuses become the matching
  :mod:`~intent_fleet.protocol.errors` class;
- retries happen only when the caller says the operation is safe to repeat,
  with full-jitter backoff that honours ``Retry-After``, a fresh timestamp,
  nonce and signature per try and the caller's one ``Idempotency-Key``.

Redirects are not followed: a redirect would change the signed path, and a
cross-host redirect would hand the API key to another server.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Final, Protocol, Self, TypedDict, Unpack

import aiohttp
import orjson
from yarl import URL

from .clock import Clock
from .errors import (
    IntentBusAuthError,
    IntentBusConflictError,
    IntentBusError,
    IntentBusLeaseLostError,
    IntentBusNetworkError,
    IntentBusNotFoundError,
    IntentBusProtocolError,
    IntentBusRateLimitError,
    IntentBusServerError,
)
from .models import ProtocolVersion
from .retry import parse_retry_after
from .settings import ClientSettings
from .signing import QueryParams, canonical_body, canonical_path, sign_request

__all__ = [
    "AdminToken",
    "Answer",
    "ApiKeySigner",
    "Authenticator",
    "Connection",
    "ConnectionOptions",
    "Transport",
]

logger = logging.getLogger(__name__)

VERSION_HEADER: Final = "X-Intent-Version"
#: A 404 on these means the caller's lease is gone, not that the intent never existed.
LEASE_PATH_PREFIXES: Final = ("/fulfill/", "/fail/", "/extend_claim/", "/release/")
#: 5xx statuses worth another try: the bus or a proxy in front of it is
#: restarting or overloaded. 501/505 and the like will not change on a retry.
TRANSIENT_SERVER_STATUSES: Final = frozenset({500, 502, 503, 504})
#: Error bodies that are not the protocol's JSON are quoted up to this length.
MAX_ERROR_TEXT: Final = 200


class Authenticator(Protocol):
    """Produces the credential headers of one try of a request."""

    def headers(self, *, method: str, path: str, body: bytes, now: float) -> dict[str, str]: ...


class _Credential:
    """A secret a client authenticates with: refused when empty or padded, never shown."""

    __slots__ = ("_secret",)
    #: What the secret is, for the refusal ("API key").
    what: ClassVar[str]

    def __init__(self, secret: str) -> None:
        if not secret or secret != secret.strip():
            raise IntentBusAuthError(f"The {self.what} is empty or has surrounding whitespace.")
        self._secret = secret

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<redacted>)"


class ApiKeySigner(_Credential):
    """Protocol routes: ``X-API-KEY`` plus the HMAC signature headers."""

    __slots__ = ()
    what = "API key"

    def headers(self, *, method: str, path: str, body: bytes, now: float) -> dict[str, str]:
        return sign_request(
            api_key=self._secret, method=method, path=path, body=body, now=now
        ).as_dict()


class AdminToken(_Credential):
    """Admin routes: the admin secret in ``X-Admin-Token`` (the bus checks nothing else)."""

    __slots__ = ()
    what = "admin secret"

    def headers(self, *, method: str, path: str, body: bytes, now: float) -> dict[str, str]:
        return {"X-Admin-Token": self._secret}


@dataclass(frozen=True, slots=True)
class Answer:
    """A bus answer, read completely (the connection is already back in the pool)."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self, *, allow_empty: bool = False) -> object:
        """The decoded JSON body; ``None`` for an empty body if ``allow_empty``."""
        if not self.body.strip():
            if allow_empty:
                return None
            raise IntentBusProtocolError(
                f"HTTP {self.status} answer has an empty body where JSON was expected.",
                status=self.status,
            )
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise IntentBusProtocolError(
                f"HTTP {self.status} answer is not valid JSON: {exc.msg}.", status=self.status
            ) from exc

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class Transport:
    """Signs, sends, retries and translates; owns the aiohttp session it creates."""

    def __init__(
        self,
        *,
        settings: ClientSettings,
        auth: Authenticator,
        session: aiohttp.ClientSession | None,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self._settings = settings
        self._base_url = settings.base_url.rstrip("/")
        self._auth = auth
        self._session = session
        self._owns_session = session is None
        self._closed = False
        self.clock = clock
        self._rng = rng
        #: Protocol version from the latest answer that carried ``X-Intent-Version``.
        self.protocol: ProtocolVersion | None = None

    async def aclose(self) -> None:
        """Close the session if this transport created it; an injected one stays open."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    def _session_for_request(self) -> aiohttp.ClientSession:
        if self._closed:
            raise IntentBusError("The client is closed.")
        if self._session is None:
            # Created here, inside the running loop, never at construction time.
            connector = aiohttp.TCPConnector(
                limit=self._settings.pool_size, ssl=self._settings.ssl_context()
            )
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: QueryParams | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        retry: bool = False,
        idempotency_key: str | None = None,
        extra_timeout: float = 0.0,
        accept: frozenset[int] = frozenset(),
    ) -> Answer:
        """Send one logical request; raise the matching ``IntentBus*Error`` on failure.

        ``json`` is the body document (``None``: no body). ``retry`` allows
        further tries on network errors, 429 and transient 5xx, up to the
        policy's attempts. ``accept`` lists error statuses to hand back as an
        :class:`Answer` instead of raising (``kv_get``'s 404). ``extra_timeout``
        lengthens the request timeout (a long-poll claim's ``wait``).
        """
        wire_path = canonical_path(path, params)
        try:
            body = canonical_body(json)
        except TypeError as exc:
            raise IntentBusError(f"The request body is not JSON-serialisable: {exc}") from exc
        extra = dict(headers or {})
        if idempotency_key is not None:
            extra["Idempotency-Key"] = idempotency_key
        timeout = aiohttp.ClientTimeout(
            total=self._settings.request_timeout + extra_timeout,
            connect=self._settings.connect_timeout,
        )
        tries = self._settings.retry.attempts if retry else 1
        for attempt in range(tries):
            try:
                answer = await self._send_once(
                    method, wire_path, body=body, headers=extra, limits=timeout
                )
                return self._check(answer, method=method, path=path, accept=accept)
            except (IntentBusNetworkError, IntentBusRateLimitError, IntentBusServerError) as exc:
                if attempt + 1 >= tries or not _transient(exc):
                    raise
                delay = self._settings.retry.delay(attempt, self._rng, retry_after=exc.retry_after)
                logger.info(
                    "retrying %s %s in %.2f s after %s (try %d of %d)",
                    method,
                    path,
                    delay,
                    _describe(exc),
                    attempt + 1,
                    tries,
                )
                await self.clock.sleep(delay)
        raise AssertionError("unreachable: the last try returns or raises")  # pragma: no cover

    async def _send_once(
        self,
        method: str,
        wire_path: str,
        *,
        body: bytes,
        headers: Mapping[str, str],
        limits: aiohttp.ClientTimeout,
    ) -> Answer:
        session = self._session_for_request()
        sent = {"User-Agent": self._settings.user_agent, "Accept": "application/json"}
        sent.update(headers)
        if body:
            sent["Content-Type"] = "application/json"
        # A fresh timestamp, nonce and signature per try: the bus rejects reused nonces.
        sent.update(
            self._auth.headers(method=method, path=wire_path, body=body, now=self.clock.wall())
        )
        url = URL(self._base_url + wire_path, encoded=True)
        try:
            async with session.request(
                method,
                url,
                data=body or None,
                headers=sent,
                timeout=limits,
                allow_redirects=False,
            ) as resp:
                raw = await resp.read()
                return Answer(status=resp.status, headers=resp.headers, body=raw)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise IntentBusNetworkError(
                f"{method} {_bare(wire_path)}: no answer from {self._base_url} "
                f"({type(exc).__name__}{': ' + str(exc) if str(exc) else ''})"
            ) from exc

    def _check(self, answer: Answer, *, method: str, path: str, accept: frozenset[int]) -> Answer:
        version = ProtocolVersion.from_header(answer.headers.get(VERSION_HEADER))
        if version is not None:
            # Only answers that say something count: a proxy's 502 without the
            # header must not erase what the bus told us.
            self.protocol = version
        if answer.status < 300 or answer.status in accept:
            return answer
        raise error_for(answer, method=method, path=path, now=self.clock.wall())


class ConnectionOptions(TypedDict, total=False):
    """What a client may be handed besides its settings and credential."""

    #: An aiohttp session to use (tests pass one, a process may share one); by default the
    #: client creates its own on first use, inside the running loop, and closes it.
    session: aiohttp.ClientSession | None
    #: The time retries wait on and signatures carry (tests pass a virtual one).
    clock: Clock | None
    #: The randomness of retry jitter (tests pass a seeded one).
    rng: random.Random | None


class Connection:
    """The one constructor of :class:`BusClient` and :class:`AdminClient`, and their closing:
    an injected session stays open; use ``async with``."""

    def __init__(
        self, *, settings: ClientSettings, auth: Authenticator, **options: Unpack[ConnectionOptions]
    ) -> None:
        self._settings = settings
        self._transport = Transport(
            settings=settings,
            auth=auth,
            session=options.get("session"),
            clock=options.get("clock") or Clock(),
            rng=options.get("rng") or random.Random(),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._settings.base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()


def error_for(answer: Answer, *, method: str, path: str, now: float) -> IntentBusError:
    """The exception for an error answer, with status, code and the server's message."""
    status = answer.status
    code, message = _error_details(answer)
    text = f"{method} {path}: HTTP {status}" + (f" {code}" if code else "") + f": {message}"
    kind: type[IntentBusError]
    retry_after = None
    if status in (401, 403):
        kind = IntentBusAuthError
    elif status == 404:
        lease = path.startswith(LEASE_PATH_PREFIXES)
        kind = IntentBusLeaseLostError if lease else IntentBusNotFoundError
    elif status in (409, 422):
        kind = IntentBusConflictError
    elif status == 429:
        kind = IntentBusRateLimitError
        retry_after = parse_retry_after(answer.headers.get("Retry-After"), now=now)
    elif status >= 500:
        kind = IntentBusServerError
        retry_after = parse_retry_after(answer.headers.get("Retry-After"), now=now)
    elif 300 <= status < 400:
        kind = IntentBusError
        text = f"{method} {path}: HTTP {status}: redirects are not followed (check base_url)"
    else:
        kind = IntentBusError
    return kind(text, status=status, code=code, retry_after=retry_after)


def _error_details(answer: Answer) -> tuple[str | None, str]:
    """(code, message) from ``{"error": {"code", "message"}}``, else the body text."""
    try:
        doc = orjson.loads(answer.body) if answer.body else None
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict):
        error = doc.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            message = error.get("message")
            code = code if isinstance(code, str) and code else None
            if isinstance(message, str) and message:
                return code, message[:MAX_ERROR_TEXT]
            if code is not None:
                return code, "(no message)"
        elif isinstance(error, str) and error:
            return None, error[:MAX_ERROR_TEXT]
    text = answer.text().strip()
    return None, text[:MAX_ERROR_TEXT] if text else "(empty body)"


def _transient(exc: IntentBusError) -> bool:
    if isinstance(exc, IntentBusServerError):
        return exc.status in TRANSIENT_SERVER_STATUSES
    return True


def _describe(exc: IntentBusError) -> str:
    return f"HTTP {exc.status}" if exc.status is not None else type(exc).__name__


def _bare(wire_path: str) -> str:
    return wire_path.split("?", 1)[0]
