"""Property tests: whatever JSON or query a client sends, the bus answers below 500,
with the protocol's error shape, and keeps serving.

One bus serves every example (module scope); examples are plain synchronous
HTTP so Hypothesis drives them directly.
"""

from __future__ import annotations

import http.client
import json
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
]
QUERY_ROUTES = [("POST", "/claim"), ("GET", "/stats"), ("GET", "/admin/dead")]


@pytest.fixture(scope="module")
def fuzz_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BusProcess]:
    proc = start_bus(tmp_path_factory.mktemp("fuzz-bus"))
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


def test_the_bus_survived_the_fuzzing(fuzz_bus: BusProcess) -> None:
    status, doc = call(fuzz_bus, "GET", "/health")
    assert status == 200
    assert doc["ok"] is True
    assert fuzz_bus.proc.poll() is None
