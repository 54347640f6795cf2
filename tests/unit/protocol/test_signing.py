"""Signing against vectors from the published SDK and an independent reimplementation.

``data/signing_vectors.json`` was computed by the SDK 2.1.2 itself (see its
``_how`` field and ``data/make_signing_vectors.py``), so these tests pin our
canonical paths and signatures to what real SDK clients send, on machines
without the SDK.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from intent_fleet.protocol import (
    canonical_body,
    canonical_path,
    canonical_query,
    compute_signature,
    sign_request,
    signatures_match,
)

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "signing_vectors.json").read_text(encoding="utf-8")
)["vectors"]


def _params(vector: dict[str, Any]) -> list[tuple[str, Any]] | None:
    raw = vector["params"]
    return None if raw is None else [(k, v) for k, v in raw]


def independent_path(endpoint: str, params: list[tuple[str, Any]] | None) -> str:
    """The protocol's rule, written again from the spec text with stdlib only."""
    kept = sorted(((k, v) for k, v in params or [] if v is not None), key=lambda kv: kv[0])
    if not kept:
        return endpoint
    query = "&".join(f"{quote(str(k), safe='')}={quote(str(v), safe='')}" for k, v in kept)
    return f"{endpoint}?{query}"


def independent_signature(
    key: str, method: str, path: str, timestamp: str, nonce: str, body: bytes
) -> str:
    message = f"{method.upper()}\n{path}\n{timestamp}\n{nonce}\n".encode() + body
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def test_the_vector_file_covers_the_required_cases() -> None:
    names = {v["name"] for v in VECTORS}
    assert {
        "space in value",
        "slash in value",
        "unicode value",
        "ampersand and equals inside values",
        "several parameters, unsorted",
        "None values dropped",
    } <= names


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_canonical_path_matches_the_sdk(vector: dict[str, Any]) -> None:
    ours = canonical_path(vector["endpoint"], _params(vector))
    assert ours == vector["canonical_path"]
    assert ours == independent_path(vector["endpoint"], _params(vector))


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_signature_matches_the_sdk(vector: dict[str, Any]) -> None:
    body = vector["body_bytes"].encode()
    args = (
        vector["api_key"],
        vector["method"],
        vector["canonical_path"],
        vector["timestamp"],
        vector["nonce"],
        body,
    )
    assert compute_signature(*args) == vector["signature"]
    assert independent_signature(*args) == vector["signature"]


@pytest.mark.parametrize("vector", [v for v in VECTORS if "body" in v], ids=lambda v: v["name"])
def test_body_bytes_match_the_sdk(vector: dict[str, Any]) -> None:
    assert canonical_body(vector["body"]) == vector["body_bytes"].encode()


def test_sign_request_signs_what_is_sent() -> None:
    path = canonical_path("/claim", {"namespace": "b", "goal": "a b/c"})
    body = canonical_body({"z": 1, "a": "ü"})
    headers = sign_request(api_key="k", method="post", path=path, body=body, now=1_700_000_000.9)
    assert headers.timestamp == "1700000000"
    assert len(headers.nonce) == 32
    expected = independent_signature("k", "POST", path, "1700000000", headers.nonce, body)
    assert headers.signature == expected
    assert set(headers.as_dict()) == {"X-API-KEY", "X-Timestamp", "X-Nonce", "X-Signature"}


def test_unicode_body_is_signed_over_the_utf8_bytes_sent() -> None:
    # The SDK escapes non-ASCII (\\u00fc), we send UTF-8; the bus verifies the
    # bytes it receives, so each side only has to sign what it sends.
    body = canonical_body({"name": "Jürgen ☃"})
    assert body == '{"name":"Jürgen ☃"}'.encode()
    assert compute_signature("k", "POST", "/intent", "1", "n", body) == independent_signature(
        "k", "POST", "/intent", "1", "n", body
    )


def test_every_nonce_is_fresh() -> None:
    nonces = {
        sign_request(api_key="k", method="GET", path="/", body=b"", now=0).nonce for _ in range(50)
    }
    assert len(nonces) == 50


def test_signatures_match_is_case_insensitive_and_exact() -> None:
    good = compute_signature("k", "GET", "/health", "1", "n", b"")
    assert signatures_match(good, good.upper())
    assert not signatures_match(good, good[:-1] + ("0" if good[-1] != "0" else "1"))
    assert not signatures_match(good, "")


def test_query_values_use_python_str_like_the_sdk() -> None:
    assert canonical_query({"wait": 2.5, "flag": True, "n": 3}) == "flag=True&n=3&wait=2.5"
    assert canonical_query({}) == ""
    assert canonical_query(None) == ""
