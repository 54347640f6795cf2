"""Keys, nonces and request signatures.

Signature vectors are computed here with plain ``hmac``/``hashlib`` from the
protocol's definition, not with the project's own signing helpers, so a shared
mistake cannot make both sides agree.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac

import pytest

from intent_fleet.bus.auth import (
    ADMIN_KEY_ID,
    KeyRing,
    NonceCache,
    SignatureChecker,
    Signed,
    new_key,
)
from intent_fleet.bus.errors import ApiError
from intent_fleet.bus.records import ApiKey, Caller

from .conftest import T0

ADMIN_SECRET = "admin-secret-for-tests"
KEY = "tk_0123456789abcdef"
CALLER = Caller(key_id="k_tenant")
WINDOW = 300.0


# -- KeyRing --------------------------------------------------------------
def test_admin_secret_authenticates_as_admin() -> None:
    ring = KeyRing(admin_secret=ADMIN_SECRET, keys=[])
    assert ring.authenticate(ADMIN_SECRET) == Caller(key_id=ADMIN_KEY_ID, admin=True)
    assert ring.authenticate(ADMIN_SECRET + "x") is None


def created(ring: KeyRing, owner: str) -> tuple[str, ApiKey]:
    secret, key = new_key(owner=owner, now=T0)
    ring.add(key)
    return secret, key


def test_a_new_key_works_only_once_added() -> None:
    ring = KeyRing(admin_secret=ADMIN_SECRET, keys=[])
    secret, key = new_key(owner="team-a", now=T0)
    assert ring.authenticate(secret) is None  # its record is not on disk yet
    ring.add(key)
    assert ring.authenticate(secret) == Caller(key_id=key.id, admin=False)


def test_created_key_authenticates_as_itself() -> None:
    ring = KeyRing(admin_secret=ADMIN_SECRET, keys=[])
    secret, key = created(ring, "team-a")
    assert secret.startswith("tk_")
    assert len(secret) == 3 + 40
    assert key.id.startswith("k_")
    assert ring.authenticate(secret) == Caller(key_id=key.id, admin=False)
    assert ring.find(secret=secret) is key
    assert ring.find(key_id=key.id) is key
    assert ring.names() == {key.id: "team-a"}


def test_unknown_key_is_refused() -> None:
    ring = KeyRing(admin_secret=ADMIN_SECRET, keys=[])
    created(ring, "team-a")
    assert ring.authenticate("tk_not-a-key") is None
    assert ring.authenticate("") is None


def test_revoked_key_is_refused_but_still_listed() -> None:
    ring = KeyRing(admin_secret=ADMIN_SECRET, keys=[])
    secret, key = created(ring, "team-a")
    ring.revoke(key, now=T0 + 5)
    assert ring.authenticate(secret) is None
    assert key.revoked_at == T0 + 5
    assert ring.all() == [key]


def test_stored_record_holds_only_the_sha256() -> None:
    ring = KeyRing(admin_secret=ADMIN_SECRET, keys=[])
    secret, key = created(ring, "team-a")
    assert key.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    for f in dataclasses.fields(ApiKey):
        value = getattr(key, f.name)
        assert secret not in str(value), f"secret leaked into ApiKey.{f.name}"
        assert secret[3:] not in str(value), f"secret leaked into ApiKey.{f.name}"


def test_keys_loaded_from_storage_authenticate_unless_revoked() -> None:
    first = KeyRing(admin_secret=ADMIN_SECRET, keys=[])
    live_secret, live = created(first, "a")
    dead_secret, dead = created(first, "b")
    dead.revoked_at = T0 + 1
    # What a restart does: rebuild from the stored records (hashes) alone.
    stored = [dataclasses.replace(k) for k in (live, dead)]
    again = KeyRing(admin_secret=ADMIN_SECRET, keys=stored)
    assert again.authenticate(live_secret) == Caller(key_id=live.id)
    assert again.authenticate(dead_secret) is None
    assert again.find(key_id=dead.id) is not None


# -- NonceCache ------------------------------------------------------------
def test_replayed_nonce_is_refused() -> None:
    cache = NonceCache(window_seconds=WINDOW)
    assert cache.remember("k1", "n1", timestamp=T0, now=T0)
    assert not cache.remember("k1", "n1", timestamp=T0, now=T0 + 1)
    assert cache.remember("k1", "n2", timestamp=T0 + 1, now=T0 + 1)


def test_nonces_are_scoped_per_key() -> None:
    cache = NonceCache(window_seconds=WINDOW)
    assert cache.remember("k1", "same", timestamp=T0, now=T0)
    assert cache.remember("k2", "same", timestamp=T0, now=T0)
    assert not cache.remember("k2", "same", timestamp=T0, now=T0)


def test_a_nonce_is_kept_while_its_timestamp_can_still_pass_the_window() -> None:
    cache = NonceCache(window_seconds=WINDOW)
    assert cache.remember("k1", "n1", timestamp=T0, now=T0)
    assert cache.remember("k1", "n2", timestamp=T0 + 100, now=T0 + 100)
    # At ts + window the timestamp still passes the checker, so the nonce is still known ...
    assert not cache.remember("k1", "n1", timestamp=T0, now=T0 + WINDOW)
    assert len(cache) == 2
    # ... and forgotten just after, when its timestamp no longer passes; n2 is younger.
    assert cache.remember("k9", "other", timestamp=T0 + WINDOW + 1, now=T0 + WINDOW + 1)
    assert len(cache) == 2
    assert not cache.remember("k1", "n2", timestamp=T0 + 100, now=T0 + WINDOW + 1)


def test_a_nonce_signed_ahead_of_the_bus_clock_is_kept_longer() -> None:
    cache = NonceCache(window_seconds=WINDOW)
    # A client clock 200 s ahead: its timestamp passes until now = ts + window.
    assert cache.remember("k1", "n1", timestamp=T0 + 200, now=T0)
    assert not cache.remember("k1", "n1", timestamp=T0 + 200, now=T0 + 200 + WINDOW)


# -- SignatureChecker ------------------------------------------------------
def reference_signature(
    key: str, method: str, path: str, timestamp: str, nonce: str, body: bytes
) -> str:
    message = f"{method}\n{path}\n{timestamp}\n{nonce}\n".encode() + body
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(
    *,
    path: str,
    body: bytes = b"",
    method: str = "POST",
    timestamp: float = T0,
    nonce: str = "nonce-1",
    key: str = KEY,
) -> dict[str, str]:
    ts = str(int(timestamp))
    return {
        "X-Timestamp": ts,
        "X-Nonce": nonce,
        "X-Signature": reference_signature(key, method, path, ts, nonce, body),
    }


def check(
    checker: SignatureChecker,
    headers: dict[str, str],
    *,
    raw_path: str = "/intent",
    body: bytes = b"",
    method: str = "POST",
    now: float = T0,
) -> Signed | None:
    return checker.check(
        caller=CALLER,
        api_key=KEY,
        method=method,
        raw_path=raw_path,
        headers=headers,
        body=body,
        now=now,
    )


def refused(checker: SignatureChecker, headers: dict[str, str], **kw: object) -> ApiError:
    with pytest.raises(ApiError) as info:
        check(checker, headers, **kw)  # type: ignore[arg-type]
    assert (info.value.status, info.value.code) == (403, "invalid_signature")
    return info.value


@pytest.fixture
def checker() -> SignatureChecker:
    return SignatureChecker(window_seconds=WINDOW, require=False)


BODY = b'{"goal":"g","payload":{"a":1}}'


def test_good_signature_passes(checker: SignatureChecker) -> None:
    signed = check(checker, signed_headers(path="/intent", body=BODY), body=BODY)
    # The nonce goes to the backend, which refuses a replay (NonceCache above, or the
    # database every replica shares).
    assert signed == Signed(key_id=CALLER.key_id, nonce="nonce-1", timestamp=int(T0))


def test_signature_hex_case_does_not_matter(checker: SignatureChecker) -> None:
    headers = signed_headers(path="/intent", body=BODY)
    headers["X-Signature"] = headers["X-Signature"].upper()
    check(checker, headers, body=BODY)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h: h.update({"X-Signature": "0" * 64}),
        lambda h: h.update({"X-Signature": h["X-Signature"][:-1]}),
        lambda h: h.update({"X-Nonce": "nonce-2"}),
    ],
)
def test_wrong_signature_is_403(checker: SignatureChecker, tamper: object) -> None:
    headers = signed_headers(path="/intent", body=BODY)
    tamper(headers)  # type: ignore[operator]
    err = refused(checker, headers, body=BODY)
    assert "Bad signature" in err.message


def test_signature_covers_body_method_path_and_key(checker: SignatureChecker) -> None:
    headers = signed_headers(path="/intent", body=BODY)
    refused(checker, headers, body=BODY + b" ")
    refused(checker, headers, body=BODY, method="PUT")
    refused(checker, headers, body=BODY, raw_path="/intent?x=1")
    other_key = signed_headers(path="/intent", body=BODY, key=KEY + "x")
    refused(checker, other_key, body=BODY)


def test_failed_check_does_not_burn_the_nonce(checker: SignatureChecker) -> None:
    good = signed_headers(path="/intent", body=BODY, nonce="n")
    refused(checker, {**good, "X-Signature": "f" * 64}, body=BODY)
    check(checker, good, body=BODY)


@pytest.mark.parametrize("skew", [-WINDOW, WINDOW])
def test_timestamp_at_the_window_edge_passes(checker: SignatureChecker, skew: float) -> None:
    check(checker, signed_headers(path="/intent", timestamp=T0 + skew))


@pytest.mark.parametrize("skew", [-WINDOW - 1, WINDOW + 1, -86400])
def test_timestamp_outside_the_window_is_403(checker: SignatureChecker, skew: float) -> None:
    err = refused(checker, signed_headers(path="/intent", timestamp=T0 + skew))
    assert "X-Timestamp" in err.message


def test_non_numeric_timestamp_is_403(checker: SignatureChecker) -> None:
    headers = signed_headers(path="/intent")
    headers["X-Timestamp"] = "yesterday"
    assert "X-Timestamp" in refused(checker, headers).message


def test_overlong_nonce_is_403(checker: SignatureChecker) -> None:
    headers = signed_headers(path="/intent", nonce="n" * 129)
    assert "X-Nonce" in refused(checker, headers).message
    check(checker, signed_headers(path="/intent", nonce="n" * 128))


@pytest.mark.parametrize("missing", ["X-Timestamp", "X-Nonce", "X-Signature"])
def test_missing_one_of_the_three_headers_is_403(checker: SignatureChecker, missing: str) -> None:
    headers = signed_headers(path="/intent")
    del headers[missing]
    err = refused(checker, headers)
    assert "all of" in err.message


def test_unsigned_request_passes_unless_required() -> None:
    relaxed = SignatureChecker(window_seconds=WINDOW, require=False)
    check(relaxed, {})
    strict = SignatureChecker(window_seconds=WINDOW, require=True)
    err = refused(strict, {})
    assert "requires signed requests" in err.message
    check(strict, signed_headers(path="/intent"))


def test_unsorted_query_verifies_via_the_canonical_form(checker: SignatureChecker) -> None:
    # The client signs the canonical path (sorted keys, RFC 3986, '/' as %2F) ...
    canonical = "/claim?goal=x%2Fy%20z&namespace=default&wait=5"
    headers = signed_headers(path=canonical)
    # ... but sends its parameters in another order and encoding.
    check(checker, headers, raw_path="/claim?wait=5&namespace=default&goal=x/y+z")


def test_query_signed_as_sent_verifies(checker: SignatureChecker) -> None:
    raw = "/claim?wait=5&goal=g"
    check(checker, signed_headers(path=raw), raw_path=raw)


def test_query_with_other_values_does_not_verify(checker: SignatureChecker) -> None:
    headers = signed_headers(path="/claim?goal=a&namespace=default")
    refused(checker, headers, raw_path="/claim?namespace=default&goal=b")
