"""Property tests: whatever JSON, query, path or header bytes a client sends, the bus
answers below 500, with the protocol's error shape, and keeps serving.

One bus serves every example (module scope); examples are plain synchronous
HTTP so Hypothesis drives them directly. The whole module runs twice: once with
aiohttp's C HTTP parser, once with its pure-Python parser (``AIOHTTP_NO_EXTENSIONS=1``),
which lets more raw bytes through to the bus.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.busproc import BusProcess, start_bus

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
small_numbers = st.integers(min_value=-5, max_value=1100) | st.floats(
    min_value=-5, max_value=1e6, allow_nan=False
)

publish_docs = st.fixed_dictionaries(
    {},
    optional={
        "goal": st.text(max_size=300) | json_values,
        "payload": json_values,
        "visibility": st.sampled_from(["private", "public", ""]) | json_values,
        "namespace": st.from_regex(r"[A-Za-z0-9_.-]{0,70}", fullmatch=True) | json_values,
        "priority": small_numbers | json_values,
        "delay": small_numbers | json_values,
        "max_attempts": small_numbers | json_values,
        "backoff_base": small_numbers | json_values,
        "target_worker": st.text(max_size=70) | json_values,
        "required_capability": st.text(max_size=70) | json_values,
    },
)
lease_docs = st.fixed_dictionaries(
    {},
    optional={
        "claim_token": st.text(max_size=40) | json_values,
        "result": json_values,
        "result_type": st.sampled_from(["json", "text", ""]) | json_values,
        "error": json_values,
        "seconds": small_numbers | json_values,
        "value": json_values,
        "ttl": small_numbers | json_values,
    },
)
any_body = publish_docs | lease_docs | json_values

POST_ROUTES = [
    "/intent",
    "/fulfill/x",
    "/fail/x",
    "/extend_claim/x",
    "/release/x",
    "/set/k",
    "/admin/generate_key",
    "/admin/revoke_key",
    "/admin/intents/x/cancel",
    "/stats",
]
QUERY_ROUTES = [("POST", "/claim"), ("GET", "/stats"), ("GET", "/admin/dead")]


@pytest.fixture(scope="module", params=["c-parser", "python-parser"])
def fuzz_bus(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BusProcess]:
    env = {"AIOHTTP_NO_EXTENSIONS": "1"} if request.param == "python-parser" else {}
    proc = start_bus(tmp_path_factory.mktemp("fuzz-bus"), env=env)
    try:
        yield proc
    finally:
        code = proc.stop()
        assert code == 0, f"bus exited with {code}:\n{proc.logs()}"


def call(bus: BusProcess, method: str, target: str, body: bytes = b"") -> tuple[int, Any]:
    parts = urlsplit(bus.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        headers = {
            "X-API-KEY": bus.admin_secret,
            "X-Admin-Token": bus.admin_secret,
            "Content-Type": "application/json",
        }
        conn.request(method, target, body=body or None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        parsed = (
            json.loads(data)
            if data and resp.getheader("Content-Type", "").startswith("application/json")
            else None
        )
        return resp.status, parsed
    finally:
        conn.close()


def check(status: int, doc: Any) -> None:
    assert status < 500, doc
    if status >= 400:
        assert isinstance(doc, dict)
        assert set(doc) == {"error"}
        assert set(doc["error"]) == {"code", "message"}
        assert doc["error"]["message"]


@SETTINGS
@given(route=st.sampled_from(POST_ROUTES), doc=any_body)
def test_any_json_body_gets_a_clean_answer(fuzz_bus: BusProcess, route: str, doc: Any) -> None:
    if route == "/admin/revoke_key" and isinstance(doc, dict):
        doc.pop("api_key", None)  # never revoke by accident: only "id" lookups of junk
    status, answer = call(fuzz_bus, "POST", route, json.dumps(doc).encode())
    check(status, answer)
    if route == "/intent" and status == 201:
        assert answer["status"] == "published"


@SETTINGS
@given(
    route=st.sampled_from(QUERY_ROUTES),
    params=st.dictionaries(
        st.sampled_from(["goal", "namespace", "publisher", "limit", "offset", "x"]),
        st.text(max_size=40) | st.from_regex(r"-?[0-9.e]{1,6}", fullmatch=True),
    ),
    # Only waits that end at once: a valid long wait would just make the test slow.
    wait=st.sampled_from(["0", "0.0", "-1", "nan", "inf", "1e9", "soon", "", "31"]) | st.none(),
)
def test_any_query_gets_a_clean_answer(
    fuzz_bus: BusProcess, route: tuple[str, str], params: dict[str, str], wait: str | None
) -> None:
    method, path = route
    if wait is not None:
        params["wait"] = wait
    target = path + ("?" + urlencode(params) if params else "")
    status, answer = call(fuzz_bus, method, target)
    check(status, answer)


RAW_TARGETS = [b"/set/", b"/get/", b"/claim?goal=", b"/stats?goal=", b"/status/", b"/intent/"]
RAW_HEADERS = [
    b"X-Worker-ID",
    b"X-Worker-Capabilities",
    b"X-Claim-Session",
    b"Idempotency-Key",
    b"X-API-KEY",
    b"X-Nonce",
    b"Authorization",
]
#: Any byte but the ones that end a request line or a header (CR, LF) and the space that
#: splits a request line: those make a different request, not a hostile value.
raw_bytes = st.binary(max_size=40).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b" ", b"")
)


def send_bytes(bus: BusProcess, request: bytes) -> tuple[int | None, bytes]:
    """(status, body) of a raw request; status None when the server closed without one."""
    with socket.create_connection(("127.0.0.1", bus.port), timeout=10) as conn:
        conn.sendall(request)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    if not data.startswith(b"HTTP/1.1 "):
        return None, data
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body if b"application/json" in head.lower() else b""


@SETTINGS
@given(
    method=st.sampled_from([b"GET", b"POST"]),
    target=st.sampled_from(RAW_TARGETS),
    tail=raw_bytes,
    header=st.sampled_from(RAW_HEADERS),
    value=raw_bytes,
)
def test_any_bytes_in_paths_and_headers_get_a_clean_answer(
    fuzz_bus: BusProcess, method: bytes, target: bytes, tail: bytes, header: bytes, value: bytes
) -> None:
    key = fuzz_bus.admin_secret.encode()
    lines = [method + b" " + target + tail + b" HTTP/1.1", b"Host: 127.0.0.1"]
    if header != b"X-API-KEY":
        lines.append(b"X-API-KEY: " + key)
    lines += [header + b": " + value, b"Content-Length: 0", b"Connection: close"]
    status, body = send_bytes(fuzz_bus, b"\r\n".join(lines) + b"\r\n\r\n")
    if status is None:
        return  # the HTTP parser refused the bytes outright; the bus itself is checked below
    assert status < 500, body
    if body:
        check(status, json.loads(body))


def test_the_bus_survived_the_fuzzing(fuzz_bus: BusProcess) -> None:
    status, doc = call(fuzz_bus, "GET", "/health")
    assert status == 200
    assert doc["ok"] is True
    assert fuzz_bus.proc.poll() is None
