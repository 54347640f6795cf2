"""Request signing exactly as the Intent Protocol defines it.

The signature is lowercase hex HMAC-SHA256, keyed with the API key, over::

    METHOD \\n CANONICAL_PATH \\n TIMESTAMP \\n NONCE \\n RAW_BODY

CANONICAL_PATH is the path, then ``?`` and the query with parameters sorted by
key and every key and value percent-encoded per RFC 3986 with no safe
characters. The same functions serve the client (signing) and the bus
(verification), so both sides cannot drift apart.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

__all__ = [
    "SignedHeaders",
    "canonical_body",
    "canonical_path",
    "canonical_query",
    "compute_signature",
    "sign_request",
    "signatures_match",
]

QueryParams = Mapping[str, Any] | Iterable[tuple[str, Any]]


def canonical_query(params: QueryParams | None) -> str:
    """Sorted, fully percent-encoded query string; parameters set to None are left out."""
    if not params:
        return ""
    items = params.items() if isinstance(params, Mapping) else params
    pairs = [(str(k), _query_value(v)) for k, v in items if v is not None]
    pairs.sort(key=lambda kv: kv[0])
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)


def _query_value(value: Any) -> str:
    # Booleans go on the wire the way the published SDKs write them (str(True)).
    return str(value)


def canonical_path(path: str, params: QueryParams | None = None) -> str:
    """The path as signed and as sent: ``/claim?goal=a%20b&namespace=default``."""
    query = canonical_query(params)
    return f"{path}?{query}" if query else path


def canonical_body(document: Any) -> bytes:
    """JSON as the SDKs sign it: sorted keys, compact, UTF-8; ``b""`` for no body.

    Raises ``TypeError`` for values JSON cannot carry (NaN, sets, objects).
    """
    if document is None:
        return b""
    try:
        return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:
        raise TypeError(f"body is not JSON-serialisable: {exc}") from exc


def compute_signature(  # noqa: PLR0917 - positional like the SDK's generate_signature
    api_key: str, method: str, path: str, timestamp: str, nonce: str, body: bytes
) -> str:
    """Lowercase hex HMAC-SHA256 of the canonical message."""
    message = b"\n".join(
        (
            method.upper().encode(),
            path.encode(),
            timestamp.encode(),
            nonce.encode(),
            body,
        )
    )
    return hmac.new(api_key.encode(), message, hashlib.sha256).hexdigest()


def signatures_match(expected: str, given: str) -> bool:
    """Constant-time comparison, so timing does not leak a valid prefix."""
    return hmac.compare_digest(expected.encode(), given.lower().encode())


@dataclass(frozen=True, slots=True)
class SignedHeaders:
    """The four headers a signed request carries."""

    api_key: str
    timestamp: str
    nonce: str
    signature: str

    def as_dict(self) -> dict[str, str]:
        return {
            "X-API-KEY": self.api_key,
            "X-Timestamp": self.timestamp,
            "X-Nonce": self.nonce,
            "X-Signature": self.signature,
        }


def sign_request(
    *, api_key: str, method: str, path: str, body: bytes, now: float, nonce: str | None = None
) -> SignedHeaders:
    """Sign one request; ``path`` must already be canonical (see :func:`canonical_path`)."""
    timestamp = str(int(now))
    nonce = nonce if nonce is not None else secrets.token_hex(16)
    signature = compute_signature(api_key, method, path, timestamp, nonce, body)
    return SignedHeaders(api_key=api_key, timestamp=timestamp, nonce=nonce, signature=signature)
