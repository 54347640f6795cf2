"""Who is calling: API keys (stored hashed), request signatures, replayed nonces.

Keys are looked up by their SHA-256, so the database never holds a usable
secret. A signature is checked with the raw key the request presents, which
is the only place the server ever sees it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from intent_fleet.protocol.signing import canonical_path, compute_signature, signatures_match

from .errors import ApiError
from .records import ApiKey, Caller

__all__ = [
    "ADMIN_KEY_ID",
    "KeyRing",
    "NonceCache",
    "SignatureChecker",
    "Signed",
    "hash_secret",
    "is_utf8",
    "new_key",
    "replay_refused",
]

ADMIN_KEY_ID = "admin"
#: Nonces longer than this are refused: they only cost memory.
MAX_NONCE_CHARS = 128


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def is_utf8(text: str) -> bool:
    """False for header values that were not UTF-8 on the wire: aiohttp hands those
    over with lone surrogates, which cannot be encoded (or hashed, or signed)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def key_id_for(secret_hash: str) -> str:
    """A stable, non-secret name for a key: what intents record as their publisher."""
    return "k_" + secret_hash[:12]


def new_key(*, owner: str, now: float) -> tuple[str, ApiKey]:
    """A new key: the raw secret (shown once) and its record, not yet usable: the backend
    stores it, then adds it to the ring."""
    secret = "tk_" + secrets.token_hex(20)
    digest = hash_secret(secret)
    key = ApiKey(id=key_id_for(digest), name=owner, secret_hash=digest, created_at=now)
    return secret, key


class KeyRing:
    """The admin secret plus the tenant keys, indexed by hash."""

    def __init__(self, *, admin_secret: str, keys: Iterable[ApiKey]) -> None:
        self._admin_hash = hash_secret(admin_secret)
        self._by_hash: dict[str, ApiKey] = {}
        self._by_id: dict[str, ApiKey] = {}
        for key in keys:
            self._add(key)

    def _add(self, key: ApiKey) -> None:
        self._by_id[key.id] = key
        if key.revoked_at is None:
            self._by_hash[key.secret_hash] = key

    def authenticate(self, presented: str) -> Caller | None:
        if not is_utf8(presented):
            return None
        digest = hash_secret(presented)
        if hmac.compare_digest(digest, self._admin_hash):
            return Caller(key_id=ADMIN_KEY_ID, admin=True)
        key = self._by_hash.get(digest)
        return Caller(key_id=key.id) if key is not None else None

    def replace(self, keys: Iterable[ApiKey]) -> None:
        """The keys as stored now (another replica may have added or revoked some)."""
        self._by_hash.clear()
        self._by_id.clear()
        for key in keys:
            self._add(key)

    def add(self, key: ApiKey) -> None:
        self._add(key)

    def find(self, *, secret: str | None = None, key_id: str | None = None) -> ApiKey | None:
        if secret is not None:
            return self._by_hash.get(hash_secret(secret))
        return self._by_id.get(key_id or "")

    def revoke(self, key: ApiKey, *, now: float) -> None:
        key.revoked_at = now
        self._by_hash.pop(key.secret_hash, None)

    def all(self) -> list[ApiKey]:
        return list(self._by_id.values())

    def names(self) -> Mapping[str, str]:
        return {k.id: k.name for k in self._by_id.values()}


class NonceCache:
    """Nonces seen per key, kept only while their timestamp could still pass the window.

    A nonce signed at ``ts`` is accepted only while ``now <= ts + window``, so it
    is forgotten after that: memory stays proportional to the request rate times
    the window. Entries are stored as integers in flat containers, which the
    garbage collector does not scan: a busy bus holds a million of them.
    """

    def __init__(self, *, window_seconds: float) -> None:
        self._window = window_seconds
        self._seen: set[int] = set()
        self._expiries: deque[float] = deque()
        self._keys: deque[int] = deque()

    def __len__(self) -> int:
        return len(self._seen)

    def remember(self, key_id: str, nonce: str, *, timestamp: float, now: float) -> bool:
        """Record a nonce; False when it was already used (a replay)."""
        self._prune(now)
        # A 64-bit digest: two different nonces colliding (a spurious 403) has
        # odds of about 1 in 10^7 with a million nonces live; the key is not stored.
        entry = hash((key_id, nonce))
        if entry in self._seen:
            return False
        self._seen.add(entry)
        self._expiries.append(timestamp + self._window)
        self._keys.append(entry)
        return True

    def _prune(self, now: float) -> None:
        # Entries arrive in roughly timestamp order; one that expires later than
        # those behind it only delays their pruning, never ends anything early.
        expiries, keys, seen = self._expiries, self._keys, self._seen
        while expiries and expiries[0] < now:
            expiries.popleft()
            seen.discard(keys.popleft())


class SignatureChecker:
    """Verifies ``X-Timestamp``/``X-Nonce``/``X-Signature`` per the protocol."""

    def __init__(self, *, window_seconds: float, require: bool) -> None:
        self._window = window_seconds
        self._require = require

    def check(
        self,
        *,
        caller: Caller,
        api_key: str,
        method: str,
        raw_path: str,
        headers: Mapping[str, str],
        body: bytes,
        now: float,
    ) -> Signed | None:
        """The signed request's nonce and timestamp, for the backend to refuse a replay
        (None for an unsigned request this bus accepts); raises 403 for a bad signature."""
        signature = headers.get("X-Signature")
        timestamp = headers.get("X-Timestamp")
        nonce = headers.get("X-Nonce")
        if signature is None and timestamp is None and nonce is None:
            if self._require:
                raise _bad_signature(
                    "This bus requires signed requests: send X-Timestamp, X-Nonce and X-Signature."
                )
            return None
        if not signature or not timestamp or not nonce:
            raise _bad_signature(
                "Signed requests need all of X-Timestamp, X-Nonce and X-Signature."
            )
        if not (is_utf8(signature) and is_utf8(nonce)):
            raise _bad_signature("X-Nonce and X-Signature must be valid UTF-8.")
        try:
            ts = int(timestamp)
        except ValueError:
            raise _bad_signature("X-Timestamp must be unix seconds.") from None
        if abs(now - ts) > self._window:
            raise _bad_signature(
                f"X-Timestamp is {int(now - ts)} s away from the bus clock; "
                f"at most {int(self._window)} s is accepted. Check the client's clock."
            )
        if len(nonce) > MAX_NONCE_CHARS:
            raise _bad_signature(f"X-Nonce is longer than {MAX_NONCE_CHARS} characters.")
        if not any(
            signatures_match(
                compute_signature(api_key, method, path, timestamp, nonce, body), signature
            )
            for path in _candidate_paths(raw_path)
        ):
            raise _bad_signature("Bad signature: it does not match the request.")
        return Signed(key_id=caller.key_id, nonce=nonce, timestamp=ts)


@dataclass(frozen=True, slots=True)
class Signed:
    """A request whose signature checked out: its nonce must not have been used before."""

    key_id: str
    nonce: str
    timestamp: int


def replay_refused() -> ApiError:
    return _bad_signature("Replay detected: this X-Nonce was already used.")


def _candidate_paths(raw_path: str) -> list[str]:
    """The path as sent, and its canonical form for clients that ordered the query differently."""
    if "?" not in raw_path:
        return [raw_path]
    path, query = raw_path.split("?", 1)
    canonical = canonical_path(path, parse_qsl(query, keep_blank_values=True))
    return [raw_path] if canonical == raw_path else [raw_path, canonical]


def _bad_signature(message: str) -> ApiError:
    return ApiError(403, "invalid_signature", message)
