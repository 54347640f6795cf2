"""Request parsing: good input gets defaults, each bad field gets its own code and message."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intent_fleet.bus.backend import Result
from intent_fleet.bus.errors import ApiError
from intent_fleet.bus.records import Visibility
from intent_fleet.bus.settings import LimitSettings, QueueSettings
from intent_fleet.bus.validation import (
    claim_query,
    fail_request,
    fulfill_request,
    json_body,
    kv_key,
    kv_set_request,
    lease_request,
    publish_request,
)

LIMITS = LimitSettings()
QUEUE = QueueSettings()


def publish(**doc: Any) -> Any:
    return publish_request(doc, limits=LIMITS, queue=QUEUE)


def refused(fn: Any, *args: Any, **kwargs: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        fn(*args, **kwargs)
    return info.value


# -- publish ---------------------------------------------------------------
def test_publish_accepts_minimal_body_with_defaults() -> None:
    req = publish(goal="resize", payload={"b": [1, 2], "a": "x"})
    assert req.goal == "resize"
    assert orjson.loads(req.payload) == {"b": [1, 2], "a": "x"}
    assert req.namespace == "default"
    assert req.visibility is Visibility.PRIVATE
    assert req.priority == 100
    assert req.delay == 0.0
    assert req.max_attempts == QUEUE.default_max_attempts
    assert req.backoff_base == QUEUE.default_backoff_base
    assert req.target_worker is None
    assert req.required_capability is None


def test_publish_accepts_every_field() -> None:
    req = publish(
        goal="g",
        payload=None,
        namespace="team-a.prod_1",
        visibility="public",
        priority=1000,
        delay=2.5,
        max_attempts=20,
        backoff_base=0,
        target_worker="w-7",
        required_capability="gpu",
    )
    assert req.payload == b"null"
    assert (req.namespace, req.visibility, req.priority) == (
        "team-a.prod_1",
        Visibility.PUBLIC,
        1000,
    )
    assert (req.delay, req.max_attempts, req.backoff_base) == (2.5, 20, 0.0)
    assert (req.target_worker, req.required_capability) == ("w-7", "gpu")


def test_publish_integral_float_is_an_int_and_empty_strings_mean_unset() -> None:
    req = publish(goal="g", payload={}, priority=7.0, target_worker="", namespace="")
    assert req.priority == 7
    assert isinstance(req.priority, int)
    assert req.target_worker is None
    assert req.namespace == "default"


@pytest.mark.parametrize(
    ("doc", "code", "field"),
    [
        ({"payload": {}}, "invalid_request", "'goal'"),
        ({"goal": "g"}, "invalid_request", "'payload'"),
        ({"goal": "", "payload": {}}, "invalid_goal", "'goal'"),
        ({"goal": "   ", "payload": {}}, "invalid_goal", "'goal'"),
        ({"goal": 5, "payload": {}}, "invalid_goal", "'goal'"),
        ({"goal": "x" * 257, "payload": {}}, "invalid_goal", "'goal'"),
        ({"goal": "a\nb", "payload": {}}, "invalid_goal", "'goal'"),
        ({"goal": "g", "payload": {}, "namespace": "a b"}, "invalid_namespace", "'namespace'"),
        ({"goal": "g", "payload": {}, "namespace": "n" * 65}, "invalid_namespace", "'namespace'"),
        ({"goal": "g", "payload": {}, "namespace": 3}, "invalid_namespace", "'namespace'"),
        ({"goal": "g", "payload": {}, "visibility": "secret"}, "invalid_request", "'visibility'"),
        ({"goal": "g", "payload": {}, "priority": -1}, "invalid_request", "'priority'"),
        ({"goal": "g", "payload": {}, "priority": 1001}, "invalid_request", "'priority'"),
        ({"goal": "g", "payload": {}, "priority": 1.5}, "invalid_request", "'priority'"),
        ({"goal": "g", "payload": {}, "priority": "5"}, "invalid_request", "'priority'"),
        ({"goal": "g", "payload": {}, "delay": -1}, "invalid_request", "'delay'"),
        ({"goal": "g", "payload": {}, "delay": 31 * 86400}, "invalid_request", "'delay'"),
        ({"goal": "g", "payload": {}, "delay": "soon"}, "invalid_request", "'delay'"),
        ({"goal": "g", "payload": {}, "delay": float("nan")}, "invalid_request", "'delay'"),
        ({"goal": "g", "payload": {}, "max_attempts": 0}, "invalid_request", "'max_attempts'"),
        ({"goal": "g", "payload": {}, "max_attempts": 21}, "invalid_request", "'max_attempts'"),
        ({"goal": "g", "payload": {}, "backoff_base": -1}, "invalid_request", "'backoff_base'"),
        ({"goal": "g", "payload": {}, "backoff_base": 3601}, "invalid_request", "'backoff_base'"),
        (
            {"goal": "g", "payload": {}, "target_worker": 1},
            "invalid_target_worker",
            "'target_worker'",
        ),
        (
            {"goal": "g", "payload": {}, "target_worker": "w" * 65},
            "invalid_target_worker",
            "'target_worker'",
        ),
        (
            {"goal": "g", "payload": {}, "required_capability": ["gpu"]},
            "invalid_required_capability",
            "'required_capability'",
        ),
    ],
)
def test_publish_rejects_bad_field(doc: dict[str, Any], code: str, field: str) -> None:
    err = refused(publish_request, doc, limits=LIMITS, queue=QUEUE)
    assert (err.status, err.code) == (400, code)
    assert field in err.message


@pytest.mark.parametrize("field", ["priority", "max_attempts", "delay", "backoff_base"])
def test_publish_rejects_bool_as_number(field: str) -> None:
    err = refused(publish, goal="g", payload={}, **{field: True})
    assert (err.status, err.code) == (400, "invalid_request")
    assert f"'{field}'" in err.message
    assert "boolean" in err.message


def test_publish_payload_too_large_is_413() -> None:
    limits = LimitSettings(max_payload_bytes=20)
    ok = publish_request({"goal": "g", "payload": "x" * 18}, limits=limits, queue=QUEUE)
    assert len(ok.payload) == 20
    err = refused(publish_request, {"goal": "g", "payload": "x" * 19}, limits=limits, queue=QUEUE)
    assert (err.status, err.code) == (413, "payload_too_large")
    assert "21 bytes" in err.message


# -- json_body -------------------------------------------------------------
def test_json_body_parses_an_object() -> None:
    assert json_body(b' {"a": [1, {"b": null}]} ', max_depth=8) == {"a": [1, {"b": None}]}


def test_json_body_empty() -> None:
    assert json_body(b"  \n", max_depth=8, required=False) == {}
    err = refused(json_body, b"", max_depth=8)
    assert (err.status, err.code) == (400, "invalid_json")


@pytest.mark.parametrize("body", [b"{", b"{'a': 1}", b"nul", b"\xff\xfe", b'{"a": NaN}'])
def test_json_body_invalid_json(body: bytes) -> None:
    err = refused(json_body, body, max_depth=8)
    assert (err.status, err.code) == (400, "invalid_json")


@pytest.mark.parametrize(
    ("body", "kind"), [(b"[1, 2]", "an array"), (b'"x"', "a string"), (b"3", "a number")]
)
def test_json_body_must_be_an_object(body: bytes, kind: str) -> None:
    err = refused(json_body, body, max_depth=8)
    assert (err.status, err.code) == (400, "invalid_payload")
    assert kind in err.message


def test_json_body_depth_limit() -> None:
    def nested(levels: int) -> bytes:
        # ``levels`` containers: the outer object plus levels-1 nested lists.
        return b'{"a":' + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}"

    assert json_body(nested(4), max_depth=4) == {"a": [[[]]]}
    err = refused(json_body, nested(5), max_depth=4)
    assert (err.status, err.code) == (400, "payload_too_deep")
    assert "4" in err.message


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=200) | json_values.map(orjson.dumps))
def test_json_body_only_ever_raises_api_error(body: bytes) -> None:
    try:
        doc = json_body(body, max_depth=3, required=True)
    except ApiError as err:
        assert err.status == 400
        assert err.code in {"invalid_json", "invalid_payload", "payload_too_deep"}
    else:
        assert isinstance(doc, dict)


# -- claim query -----------------------------------------------------------
def test_claim_query_defaults() -> None:
    q = claim_query({}, {}, max_wait=30)
    assert q.namespace == "default"
    assert q.goal is None
    assert q.publisher is None
    assert q.wait == 0.0
    assert q.worker_id is None
    assert q.capabilities == frozenset()


def test_claim_query_reads_everything() -> None:
    q = claim_query(
        {"goal": "resize", "namespace": "prod", "publisher": "k_1", "wait": "2.5"},
        {"X-Worker-ID": "w1", "X-Worker-Capabilities": " gpu, ,cuda ,,gpu"},
        max_wait=30,
    )
    assert (q.goal, q.namespace, q.publisher, q.wait, q.worker_id) == (
        "resize",
        "prod",
        "k_1",
        2.5,
        "w1",
    )
    assert q.capabilities == frozenset({"gpu", "cuda"})


def test_claim_query_wait_bounds_are_inclusive() -> None:
    assert claim_query({"wait": "30"}, {}, max_wait=30).wait == 30.0
    assert claim_query({"wait": "0"}, {}, max_wait=30).wait == 0.0


@pytest.mark.parametrize("wait", ["30.5", "-1", "soon", "nan", "inf"])
def test_claim_query_rejects_bad_wait(wait: str) -> None:
    err = refused(claim_query, {"wait": wait}, {}, max_wait=30)
    assert (err.status, err.code) == (400, "invalid_request")
    assert "'wait'" in err.message


@pytest.mark.parametrize(
    ("query", "headers", "code", "needle"),
    [
        ({"namespace": "bad ns"}, {}, "invalid_namespace", "'namespace'"),
        ({"goal": "x" * 300}, {}, "invalid_goal", "'goal'"),
        ({}, {"X-Worker-ID": "w" * 65}, "invalid_request", "X-Worker-ID"),
    ],
)
def test_claim_query_rejects(
    query: dict[str, str], headers: dict[str, str], code: str, needle: str
) -> None:
    err = refused(claim_query, query, headers, max_wait=30)
    assert err.code == code
    assert needle in err.message


# -- fulfill / fail / extend --------------------------------------------------
def test_fulfill_without_result() -> None:
    req = fulfill_request({}, limits=LIMITS)
    assert (req.claim_token, req.result) == (None, None)


def test_fulfill_json_result() -> None:
    req = fulfill_request({"claim_token": "t", "result": {"ok": [1]}}, limits=LIMITS)
    assert req.claim_token == "t"
    assert req.result is not None and req.result.type == "json"
    assert orjson.loads(req.result.body) == {"ok": [1]}


def test_fulfill_text_result_is_kept_verbatim() -> None:
    req = fulfill_request({"result": "héllo", "result_type": "text"}, limits=LIMITS)
    assert req.result == Result("héllo".encode(), "text")


def test_fulfill_text_result_must_be_a_string() -> None:
    err = refused(fulfill_request, {"result": {"a": 1}, "result_type": "text"}, limits=LIMITS)
    assert (err.status, err.code) == (400, "invalid_result")
    assert "string" in err.message


def test_fulfill_result_too_large_is_413() -> None:
    limits = LimitSettings(max_result_bytes=5)
    assert fulfill_request({"result": "abcde", "result_type": "text"}, limits=limits).result
    err = refused(fulfill_request, {"result": "abcdef", "result_type": "text"}, limits=limits)
    assert (err.status, err.code) == (413, "result_too_large")


@pytest.mark.parametrize("result_type", ["xml", 3, ["json"]])
def test_fulfill_rejects_unknown_result_type(result_type: Any) -> None:
    err = refused(fulfill_request, {"result": 1, "result_type": result_type}, limits=LIMITS)
    assert (err.status, err.code) == (400, "invalid_result_type")
    assert "'result_type'" in err.message


@pytest.mark.parametrize("token", ["", 5, ["t"]])
def test_bad_claim_token_is_refused(token: Any) -> None:
    err = refused(fulfill_request, {"claim_token": token}, limits=LIMITS)
    assert err.code == "invalid_request"
    assert "'claim_token'" in err.message


def test_fail_request_keeps_text_and_serialises_the_rest() -> None:
    assert fail_request({"claim_token": "t", "error": "boom"}) == ("t", "boom")
    assert fail_request({"error": {"why": 1}}) == (None, '{"why":1}')
    assert fail_request({}) == (None, "Worker failure")


def test_lease_request() -> None:
    assert lease_request({"claim_token": "t", "seconds": 90.7}) == ("t", 90)
    assert lease_request({"claim_token": "t"}) == ("t", 60)
    assert "'claim_token'" in refused(lease_request, {"seconds": 5}).message
    for bad in (True, "10", float("inf")):
        err = refused(lease_request, {"claim_token": "t", "seconds": bad})
        assert "'seconds'" in err.message


# -- KV -------------------------------------------------------------------
def test_kv_string_value_is_kept_as_is() -> None:
    assert kv_set_request({"value": "plain"}, limits=LIMITS) == ("plain", 600)


@pytest.mark.parametrize(
    ("value", "stored"), [({"a": 1}, '{"a":1}'), ([1, "x"], '[1,"x"]'), (5, "5"), (None, "null")]
)
def test_kv_other_values_are_stored_as_json_text(value: Any, stored: str) -> None:
    assert kv_set_request({"value": value}, limits=LIMITS)[0] == stored


@pytest.mark.parametrize(
    ("ttl", "kept"), [(0, 1), (-50, 1), (0.4, 1), (1, 1), (2.9, 2), (86400, 86400), (10**9, 86400)]
)
def test_kv_ttl_is_clamped(ttl: float, kept: int) -> None:
    assert kv_set_request({"value": "v", "ttl": ttl}, limits=LIMITS)[1] == kept


@pytest.mark.parametrize("ttl", [True, "60", float("nan")])
def test_kv_rejects_non_numeric_ttl(ttl: Any) -> None:
    err = refused(kv_set_request, {"value": "v", "ttl": ttl}, limits=LIMITS)
    assert (err.status, err.code) == (400, "invalid_request")
    assert "'ttl'" in err.message


def test_kv_missing_or_oversized_value() -> None:
    assert "'value'" in refused(kv_set_request, {"ttl": 5}, limits=LIMITS).message
    err = refused(kv_set_request, {"value": "é" * 3}, limits=LimitSettings(max_kv_value_bytes=5))
    assert (err.status, err.code) == (413, "payload_too_large")


def test_kv_key_length() -> None:
    assert kv_key("k" * 256) == "k" * 256
    for bad in ("", "k" * 257):
        assert refused(kv_key, bad).code == "invalid_request"
