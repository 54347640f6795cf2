"""Bad input and limits: every refusal is the protocol's JSON error naming the problem, never a 500.

Most tests share one bus (module scope) started with small payload and result
limits; each uses its own goal, so they cannot see each other's intents.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.integration.conftest import StartBus
from tests.support.busproc import BusProcess, start_bus
from tests.support.rawbus import RawBus, assert_error, send_raw_http

LIMIT = 1024


@pytest.fixture(scope="module")
def small_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BusProcess]:
    proc = start_bus(
        tmp_path_factory.mktemp("small-bus"),
        extra_args=["--max-payload-bytes", str(LIMIT), "--max-result-bytes", str(LIMIT)],
    )
    try:
        yield proc
    finally:
        code = proc.stop()
        assert code == 0, f"bus exited with {code}:\n{proc.logs()}"


@pytest.fixture
async def sraw(small_bus: BusProcess) -> AsyncIterator[RawBus]:
    async with RawBus(small_bus.url, admin_secret=small_bus.admin_secret) as client:
        yield client


def nested(depth: int) -> Any:
    doc: Any = 1
    for _ in range(depth):
        doc = [doc]
    return doc


def publish_case(**fields: Any) -> dict[str, Any]:
    return {"goal": "limits", "payload": {}, **fields}


# (body, status, code, words the message must contain)
BAD_PUBLISHES: list[tuple[Any, int, str, tuple[str, ...]]] = [
    (b'{"goal": "g", ', 400, "invalid_json", ("not valid JSON",)),
    (b"", 400, "invalid_json", ("empty",)),
    (b"\xff\xfe{}", 400, "invalid_json", ("not valid JSON",)),
    ([1, 2], 400, "invalid_payload", ("JSON object", "array")),
    ("a string", 400, "invalid_payload", ("JSON object", "string")),
    ({"payload": {}}, 400, "invalid_request", ("'goal'",)),
    ({"goal": "g"}, 400, "invalid_request", ("'payload'",)),
    ({}, 400, "invalid_request", ("'goal'", "'payload'")),
    (publish_case(priority="high"), 400, "invalid_request", ("'priority'", "integer")),
    (publish_case(priority=True), 400, "invalid_request", ("'priority'", "boolean")),
    (publish_case(priority=1.5), 400, "invalid_request", ("'priority'",)),
    (publish_case(priority=1001), 400, "invalid_request", ("'priority'", "1000")),
    (publish_case(priority=1e300), 400, "invalid_request", ("'priority'",)),
    (publish_case(max_attempts=0), 400, "invalid_request", ("'max_attempts'", "between 1")),
    (publish_case(max_attempts=21), 400, "invalid_request", ("'max_attempts'",)),
    (publish_case(max_attempts=False), 400, "invalid_request", ("'max_attempts'",)),
    (publish_case(delay=-1), 400, "invalid_request", ("'delay'",)),
    (publish_case(delay="5"), 400, "invalid_request", ("'delay'", "number")),
    (publish_case(backoff_base=-0.5), 400, "invalid_request", ("'backoff_base'",)),
    (publish_case(namespace="bad ns!"), 400, "invalid_namespace", ("'namespace'",)),
    (publish_case(namespace="n" * 65), 400, "invalid_namespace", ("'namespace'",)),
    (publish_case(namespace=7), 400, "invalid_namespace", ("'namespace'",)),
    (publish_case(goal=""), 400, "invalid_goal", ("'goal'",)),
    (publish_case(goal=5), 400, "invalid_goal", ("'goal'",)),
    (publish_case(goal="g" * 257), 400, "invalid_goal", ("longer than 256",)),
    (publish_case(goal="a\nb"), 400, "invalid_goal", ("control",)),
    (publish_case(visibility="secret"), 400, "invalid_request", ("'visibility'",)),
    (publish_case(target_worker=5), 400, "invalid_target_worker", ("'target_worker'",)),
    (
        publish_case(required_capability="c" * 65),
        400,
        "invalid_required_capability",
        ("'required_capability'",),
    ),
    (publish_case(payload="x" * (LIMIT + 1)), 413, "payload_too_large", (str(LIMIT),)),
    (publish_case(payload=nested(40)), 400, "payload_too_deep", ("32",)),
    (b'{"goal":"g","payload":' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "invalid_json", ()),
]


@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    BAD_PUBLISHES,
    ids=[f"{i}-{case[2]}" for i, case in enumerate(BAD_PUBLISHES)],
)
async def test_bad_publish_is_refused_with_a_named_error(
    small_bus: BusProcess,
    sraw: RawBus,
    body: Any,
    status: int,
    code: str,
    words: tuple[str, ...],
) -> None:
    key = small_bus.admin_secret
    if isinstance(body, bytes):
        r = await sraw.request("POST", "/intent", key=key, raw_body=body)
    else:
        r = await sraw.request("POST", "/intent", key=key, doc=body)
    assert_error(r, status, code, *words)


async def test_refused_publishes_leave_nothing_behind(small_bus: BusProcess, sraw: RawBus) -> None:
    key = small_bus.admin_secret
    r = await sraw.request("POST", "/intent", key=key, doc=publish_case(priority="high"))
    assert r.status == 400
    assert await sraw.claim(key, goal="limits") is None
    # A payload exactly at the limit is fine.
    at_limit = "x" * (LIMIT - 2)  # the JSON string adds two quotes
    intent_id = await sraw.publish(key, {"goal": "limits-edge", "payload": at_limit})
    got = await sraw.claim(key, goal="limits-edge")
    assert got is not None
    assert got["id"] == intent_id
    assert got["payload"] == at_limit


async def test_fulfill_limits(small_bus: BusProcess, sraw: RawBus) -> None:
    key = small_bus.admin_secret
    intent_id = await sraw.publish(key, {"goal": "fulfill-limits", "payload": {}})
    got = await sraw.claim(key, goal="fulfill-limits")
    assert got is not None
    token = got["claim_token"]
    path = f"/fulfill/{intent_id}"
    r = await sraw.request(
        "POST", path, key=key, doc={"claim_token": token, "result": "y" * (LIMIT + 10)}
    )
    assert_error(r, 413, "result_too_large", str(LIMIT))
    r = await sraw.request(
        "POST",
        path,
        key=key,
        doc={"claim_token": token, "result": "y" * (LIMIT + 1), "result_type": "text"},
    )
    assert_error(r, 413, "result_too_large", str(LIMIT))
    r = await sraw.request(
        "POST", path, key=key, doc={"claim_token": token, "result": 1, "result_type": "xml"}
    )
    assert_error(r, 400, "invalid_result_type", "'result_type'")
    r = await sraw.request(
        "POST", path, key=key, doc={"claim_token": token, "result": [1], "result_type": "text"}
    )
    assert_error(r, 400, "invalid_result", "string")
    r = await sraw.request("POST", path, key=key, raw_body=b"{not json")
    assert_error(r, 400, "invalid_json")
    r = await sraw.request("POST", path, key=key, doc={"claim_token": 5})
    assert_error(r, 400, "invalid_request", "'claim_token'")
    # None of that cost the lease.
    ok = await sraw.fulfill(key, intent_id, {"claim_token": token, "result": "fits"})
    assert ok.status == 200


@pytest.mark.parametrize(
    ("params", "headers", "code", "words"),
    [
        ({"wait": "99"}, {}, "invalid_request", ("'wait'", "30")),
        ({"wait": "-1"}, {}, "invalid_request", ("'wait'",)),
        ({"wait": "soon"}, {}, "invalid_request", ("'wait'",)),
        ({"wait": "nan"}, {}, "invalid_request", ("'wait'",)),
        ({"namespace": "no spaces"}, {}, "invalid_namespace", ("'namespace'",)),
        ({"goal": "g" * 300}, {}, "invalid_goal", ("256",)),
        ({}, {"X-Worker-ID": "w" * 65}, "invalid_request", ("X-Worker-ID",)),
    ],
)
async def test_bad_claim_is_refused(
    small_bus: BusProcess,
    sraw: RawBus,
    params: dict[str, str],
    headers: dict[str, str],
    code: str,
    words: tuple[str, ...],
) -> None:
    r = await sraw.request(
        "POST", "/claim", key=small_bus.admin_secret, params=params, headers=headers
    )
    assert_error(r, 400, code, *words)


async def test_bad_kv_requests(small_bus: BusProcess, sraw: RawBus) -> None:
    key = small_bus.admin_secret
    r = await sraw.request("POST", "/set/k", key=key, doc={"ttl": 5})
    assert_error(r, 400, "invalid_request", "'value'")
    r = await sraw.request("POST", "/set/k", key=key, doc={"value": "v", "ttl": "long"})
    assert_error(r, 400, "invalid_request", "'ttl'")
    r = await sraw.request("POST", "/set/k", key=key, doc={"value": "v" * (65 * 1024)})
    assert_error(r, 413, "payload_too_large", "KV")
    r = await sraw.request("POST", "/set/" + "k" * 300, key=key, doc={"value": "v"})
    assert_error(r, 400, "invalid_request", "KV key")


async def test_unknown_route_and_wrong_method_answer_json(
    small_bus: BusProcess, sraw: RawBus
) -> None:
    key = small_bus.admin_secret
    r = await sraw.request("GET", "/no/such/route", key=key)
    assert_error(r, 404, "not_found", "/no/such/route")
    r = await sraw.request("POST", "/no/such/route", key=None)
    assert_error(r, 404, "not_found")
    r = await sraw.request("GET", "/intent", key=key)
    assert_error(r, 405, "method_not_allowed")
    r = await sraw.request("DELETE", "/claim", key=key)
    assert_error(r, 405, "method_not_allowed")


async def test_a_body_of_several_mib_is_413(small_bus: BusProcess, sraw: RawBus) -> None:
    big = b'{"goal":"g","payload":"' + b"z" * (4 * 1024 * 1024) + b'"}'
    r = await sraw.request("POST", "/intent", key=small_bus.admin_secret, raw_body=big)
    assert_error(r, 413, "payload_too_large", "larger than")
    # The bus is still serving.
    assert await sraw.claim(small_bus.admin_secret, goal="g") is None


async def test_overlong_idempotency_key_is_400(small_bus: BusProcess, sraw: RawBus) -> None:
    r = await sraw.request(
        "POST",
        "/intent",
        key=small_bus.admin_secret,
        doc=publish_case(),
        headers={"Idempotency-Key": "k" * 257},
    )
    assert_error(r, 400, "invalid_request", "Idempotency-Key")


def _raw_request(method: str, path: str, headers: dict[str, bytes], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1"]
    lines += [name.encode() + b": " + value for name, value in headers.items()]
    lines += [f"Content-Length: {len(body)}".encode(), b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@pytest.mark.parametrize(
    ("method", "path", "bad_header", "status", "code"),
    [
        ("POST", "/claim?goal=hdr", "X-Worker-ID", 400, "invalid_request"),
        ("POST", "/intent", "Idempotency-Key", 400, "invalid_request"),
        ("POST", "/claim?goal=hdr", "X-API-KEY", 401, "unauthorized"),
        ("POST", "/claim?goal=hdr", "X-Nonce", 403, "invalid_signature"),
        ("POST", "/claim?goal=hdr", "X-Signature", 403, "invalid_signature"),
        ("GET", "/admin/keys", "X-Admin-Token", 401, "unauthorized"),
        ("GET", "/metrics", "Authorization", 401, "unauthorized"),
    ],
)
@pytest.mark.parametrize(
    "value", [b"bad\xff\xfe", "n\u00e9e \u2603".encode()], ids=["latin1", "utf8"]
)
async def test_odd_header_bytes_are_refused_not_fatal(
    small_bus: BusProcess,
    sraw: RawBus,
    method: str,
    path: str,
    bad_header: str,
    status: int,
    code: str,
    value: bytes,
) -> None:
    """Header bytes that are not UTF-8 reach the bus as lone surrogates: storing one
    once failed the commit and stopped the whole bus, hashing or signing one was a 500.
    Non-ASCII UTF-8 must be refused just as cleanly (or, where harmless, accepted)."""
    key = small_bus.admin_secret
    intent_id = await sraw.publish(key, {"goal": "hdr", "payload": {}})
    headers = {"X-API-KEY": key.encode(), "Content-Type": b"application/json"}
    if bad_header in ("X-Nonce", "X-Signature"):
        now = str(int(time.time())).encode()
        headers |= {"X-Timestamp": now, "X-Nonce": b"n", "X-Signature": b"s"}
    headers[bad_header] = b"Bearer " + value if bad_header == "Authorization" else value
    body = b'{"goal":"hdr-idem","payload":{}}' if path == "/intent" else b""
    got_status, doc = await send_raw_http(small_bus.port, _raw_request(method, path, headers, body))
    if value.startswith(b"bad") or bad_header not in ("X-Worker-ID", "Idempotency-Key"):
        assert (got_status, doc["error"]["code"]) == (status, code), doc
        if bad_header in ("X-Worker-ID", "Idempotency-Key"):
            assert bad_header in doc["error"]["message"]
    elif bad_header == "X-Worker-ID":
        # Valid UTF-8 is a valid worker id; this claim took the intent. Hand it back.
        assert got_status == 200, doc
        assert doc["id"] != ""
        r = await sraw.request("POST", f"/release/{doc['id']}", key=key)
        assert r.status == 200
    else:
        assert got_status == 201, doc
    # The bus is alive and the intent was not claimed by the refused request.
    assert small_bus.proc.poll() is None
    got = await sraw.claim(key, goal="hdr")
    assert got is not None
    assert got["id"] == intent_id


async def test_rate_limit(start: StartBus) -> None:
    bus = start("--rate-limit", "5", "--rate-burst", "5")
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        tenant, _ = await raw.new_key("tenant")
        other, _ = await raw.new_key("other")
        statuses = []
        for _ in range(6):
            r = await raw.request("POST", "/claim", key=tenant, params={"goal": "g"})
            statuses.append(r.status)
        assert statuses[:5] == [204] * 5
        assert statuses[5] == 429
        assert_error(r, 429, "rate_limited", "Retry-After")
        assert int(r.headers["Retry-After"]) >= 1
        # Buckets are per key: another tenant is not throttled by the first.
        r = await raw.request("POST", "/claim", key=other, params={"goal": "g"})
        assert r.status == 204
        # The admin secret is exempt.
        for _ in range(20):
            r = await raw.request("POST", "/claim", key=bus.admin_secret, params={"goal": "g"})
            assert r.status == 204
