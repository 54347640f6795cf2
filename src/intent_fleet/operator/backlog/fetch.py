"""One bounded HTTP GET for the scraping sources, and plain words for why one failed.

Bounded three ways, because the operator polls many endpoints it does not own
from one event loop: a deadline on the whole exchange (connect, headers and
body), a cap on the body read, and no redirects (a redirect could carry a bearer
token or basic-auth header to another host).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import aiohttp

from intent_fleet.operator.errors import FetchFailedError

__all__ = ["Fetched", "describe_failure", "get_bounded"]

#: Bytes read per chunk while enforcing the size cap.
_CHUNK: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class Fetched:
    """A 200 answer, read completely."""

    content_type: str
    body: bytes


async def get_bounded(
    session: aiohttp.ClientSession,
    url: str,
    *,
    timeout_seconds: float,
    max_bytes: int,
    headers: Mapping[str, str] | None = None,
) -> Fetched:
    """GET ``url``; anything but a complete 200 within the limits is :class:`FetchFailedError`."""
    try:
        async with asyncio.timeout(timeout_seconds):
            async with session.get(
                url,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout_seconds),
            ) as resp:
                if resp.status != 200:
                    raise FetchFailedError(_status_cause(resp))
                declared = resp.content_length
                if declared is not None and declared > max_bytes:
                    raise FetchFailedError(_too_large(max_bytes))
                body = bytearray()
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    body += chunk
                    if len(body) > max_bytes:
                        raise FetchFailedError(_too_large(max_bytes))
                return Fetched(content_type=resp.content_type, body=bytes(body))
    except FetchFailedError:
        raise
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        raise FetchFailedError(describe_failure(exc, timeout_seconds=timeout_seconds)) from exc


def describe_failure(exc: BaseException, *, timeout_seconds: float | None = None) -> str:
    """Why a request got no answer, in the words a user searches for ("refused", "timed out")."""
    if isinstance(exc, TimeoutError):
        # aiohttp's own timeouts subclass TimeoutError, so this comes first.
        return f"timed out after {timeout_seconds:g} s" if timeout_seconds else "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        if isinstance(os_error, ConnectionRefusedError):
            return "connection refused"
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            return "host name not resolved"
        return f"cannot connect ({os_error.strerror or type(os_error).__name__})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without answering"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the answer was cut off"
    if isinstance(exc, aiohttp.InvalidURL):
        return "invalid URL"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError):
        return f"network error ({exc.strerror or type(exc).__name__})"
    return f"request failed ({type(exc).__name__})"


def _status_cause(resp: aiohttp.ClientResponse) -> str:
    status = resp.status
    if 300 <= status < 400:
        return f"HTTP {status} redirect not followed (point the URL at the final address)"
    if status in (401, 403):
        return f"HTTP {status} (the credentials were refused; check the auth Secret)"
    return f"HTTP {status} {resp.reason or ''}".rstrip()


def _too_large(max_bytes: int) -> str:
    return f"the answer is larger than the {max_bytes} byte limit"
