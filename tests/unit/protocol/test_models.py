"""Wire models: both versions' answers parse, malformed ones raise IntentBusProtocolError only."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intent_fleet.protocol import (
    Ack,
    BusStats,
    ClaimedIntent,
    DeadLetter,
    GoalStats,
    Health,
    IntentBusProtocolError,
    IntentResult,
    IntentStatus,
    KeyInfo,
    KvValue,
    ProtocolVersion,
    PublishReceipt,
)

# Answers as intent-fleet's bus (v2.1) sends them, copied from docs/wire.md.
V2_CLAIM = {
    "id": "i_1",
    "namespace": "media",
    "goal": "encode",
    "payload": {"file": "a.mp4"},
    "claim_attempts": 2,
    "max_attempts": 5,
    "priority": 300,
    "visibility": "public",
    "target_worker": None,
    "required_capability": "gpu",
    "claim_token": "ct_abc",
    "claim_timeout": 60,
    "claim_expires_at": 1_700_000_060.5,
    "some_future_field": {"ignored": True},
}
# A v1.1 server (reference 7.0.1): no token, no namespace, no priority.
V1_CLAIM = {"id": "42", "goal": "encode", "payload": [1, 2], "claim_attempts": 1}

V2_STATUS = {
    "id": "i_1",
    "namespace": "default",
    "goal": "g",
    "status": "claimed",
    "priority": 100,
    "visibility": "private",
    "claim_attempts": 1,
    "max_attempts": 3,
    "run_at": 1_700_000_000,
    "created_at": 1_699_999_999.0,
    "claim_expires_at": 1_700_000_060.0,
    "target_worker": None,
    "required_capability": None,
    "completed_at": None,
    "last_error": None,
}
V2_RESULT = {
    **V2_STATUS,
    "status": "fulfilled",
    "result_type": "text",
    "result": "done",
    "completed_at": 1_700_000_010.0,
}
V2_HEALTH = {
    "ok": True,
    "status": "ok",
    "version": "2.1",
    "protocol": "2.1",
    "server": "intent-fleet/0.1.0",
    "ts": 1.0,
    "features": ["long_poll_claim", "backlog_stats"],
}
V2_STATS = {
    "ts": 1_700_000_000.5,
    "goals": [
        {
            "namespace": "default",
            "goal": "g",
            "ready": 3,
            "delayed": 1,
            "claimed": 2,
            "dead": 0,
            "oldest_ready_age_seconds": 1.25,
        }
    ],
}


def test_v2_claim_parses_every_field() -> None:
    intent = ClaimedIntent.from_wire(V2_CLAIM)
    assert intent == ClaimedIntent(
        id="i_1",
        goal="encode",
        payload={"file": "a.mp4"},
        namespace="media",
        claim_token="ct_abc",
        claim_timeout=60,
        claim_attempts=2,
        priority=300,
        target_worker=None,
        required_capability="gpu",
        visibility="public",
        max_attempts=5,
        claim_expires_at=1_700_000_060.5,
    )


def test_v1_claim_gets_the_protocol_defaults() -> None:
    intent = ClaimedIntent.from_wire(V1_CLAIM)
    assert intent.claim_token is None
    assert intent.namespace == "default"
    assert intent.claim_timeout == 60
    assert intent.priority == 100
    assert intent.payload == [1, 2]


def test_models_are_frozen() -> None:
    intent = ClaimedIntent.from_wire(V1_CLAIM)
    with pytest.raises(AttributeError):
        intent.id = "other"  # type: ignore[misc]


def test_publish_receipts_of_both_versions() -> None:
    assert PublishReceipt.from_wire(
        {"id": "i", "status": "published", "namespace": "ns"}
    ) == PublishReceipt("i", "published", "ns")
    assert PublishReceipt.from_wire({"id": "7", "status": "published"}).namespace == "default"


def test_status_and_result() -> None:
    status = IntentStatus.from_wire(V2_STATUS)
    assert status.status == "claimed"
    assert status.run_at == 1_700_000_000.0
    assert isinstance(status.run_at, float)
    result = IntentResult.from_wire(V2_RESULT)
    assert (result.result, result.result_type, result.completed_at) == (
        "done",
        "text",
        1_700_000_010.0,
    )
    minimal = IntentResult.from_wire({"id": "i", "status": "open"})
    assert (minimal.result, minimal.result_type, minimal.goal) == (None, "json", None)


def test_health_stats_and_admin_answers() -> None:
    health = Health.from_wire(V2_HEALTH)
    assert health.protocol is ProtocolVersion.V2_1
    assert health.features == frozenset({"long_poll_claim", "backlog_stats"})
    stats = BusStats.from_wire(V2_STATS)
    assert stats.goals == (GoalStats("default", "g", 3, 1, 2, 0, 1.25),)
    assert stats.ts == 1_700_000_000.5
    key = KeyInfo.from_wire({"api_key": "tk_x", "id": "k_1", "owner": "ops"})
    assert key.api_key == "tk_x"
    assert "tk_x" not in repr(key)
    dead = DeadLetter.from_wire(
        {"intent_id": "i", "namespace": "n", "goal": "g", "attempts": 3, "reason": "boom"}
    )
    assert dead.reason == "boom"
    assert Ack.from_wire({"id": "i", "ok": True, "status": "dead"}).status == "dead"
    assert Ack.from_wire(None) == Ack()
    assert KvValue.from_wire({"value": "v"}).value == "v"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.0", ProtocolVersion.V1_1),
        ("1.1", ProtocolVersion.V1_1),
        ("1", ProtocolVersion.V1_1),
        (" 2.1 ", ProtocolVersion.V2_1),
        ("2.7", ProtocolVersion.V2_1),
        ("7.61", None),
        ("3.0", None),
        ("", None),
        ("banana", None),
        (None, None),
    ],
)
def test_protocol_version_from_header(value: str | None, expected: ProtocolVersion | None) -> None:
    assert ProtocolVersion.from_header(value) is expected


def _without(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != key}


MALFORMED: list[tuple[str, Any, Any, str]] = [
    ("claim not an object", ClaimedIntent, ["id"], "expected a JSON object, got an array"),
    ("claim null", ClaimedIntent, None, "got null"),
    ("claim missing id", ClaimedIntent, _without(V2_CLAIM, "id"), "'id' is missing"),
    (
        "claim empty id",
        ClaimedIntent,
        {**V2_CLAIM, "id": ""},
        "field 'id': expected `str` of length >= 1",
    ),
    (
        "claim numeric id",
        ClaimedIntent,
        {**V2_CLAIM, "id": 42},
        "field 'id': expected `str`, got `int`",
    ),
    ("claim missing payload", ClaimedIntent, _without(V2_CLAIM, "payload"), "'payload'"),
    (
        "claim bool priority",
        ClaimedIntent,
        {**V2_CLAIM, "priority": True},
        "field 'priority': expected `int`, got `bool`",
    ),
    (
        "claim string attempts",
        ClaimedIntent,
        {**V2_CLAIM, "claim_attempts": "2"},
        "'claim_attempts'",
    ),
    ("claim float timeout", ClaimedIntent, {**V2_CLAIM, "claim_timeout": 60.5}, "'claim_timeout'"),
    (
        "claim negative timeout",
        ClaimedIntent,
        {**V2_CLAIM, "claim_timeout": -1},
        "expected `int` >= 0",
    ),
    ("claim token object", ClaimedIntent, {**V2_CLAIM, "claim_token": {}}, "'claim_token'"),
    (
        "claim bool expiry",
        ClaimedIntent,
        {**V2_CLAIM, "claim_expires_at": False},
        "'claim_expires_at'",
    ),
    ("receipt missing id", PublishReceipt, {"status": "published"}, "'id' is missing"),
    ("receipt list status", PublishReceipt, {"id": "i", "status": []}, "'status'"),
    ("status missing status", IntentStatus, _without(V2_STATUS, "status"), "'status' is missing"),
    (
        "status string run_at",
        IntentStatus,
        {**V2_STATUS, "run_at": "soon"},
        "field 'run_at': expected `float | null`, got `str`",
    ),
    (
        "status bool attempts",
        IntentStatus,
        {**V2_STATUS, "claim_attempts": False},
        "'claim_attempts'",
    ),
    ("result bad type", IntentResult, {**V2_RESULT, "result_type": "xml"}, "'result_type'"),
    ("result text not string", IntentResult, {**V2_RESULT, "result": {"a": 1}}, "'result'"),
    ("health features string", Health, {**V2_HEALTH, "features": "all"}, "'features'"),
    ("health feature number", Health, {**V2_HEALTH, "features": [1]}, "'features[0]'"),
    ("stats goals missing", BusStats, {"ts": 1.0}, "'goals' is missing"),
    ("stats entry not object", BusStats, {"goals": [1]}, "field 'goals[0]': expected `object`"),
    (
        "stats bool ready",
        BusStats,
        {"goals": [{**V2_STATS["goals"][0], "ready": True}]},
        "'goals[0].ready'",
    ),
    ("stats float dead", GoalStats, {**V2_STATS["goals"][0], "dead": 1.0}, "'dead'"),
    ("key missing owner", KeyInfo, {"id": "k", "api_key": "x"}, "'owner' is missing"),
    (
        "dead letter bool attempts",
        DeadLetter,
        {"intent_id": "i", "namespace": "n", "goal": "g", "attempts": True},
        "'attempts'",
    ),
    ("ack string", Ack, "ok", "expected a JSON object"),
    ("ack bool extended_by", Ack, {"extended_by": True}, "'extended_by'"),
    ("kv value missing", KvValue, {}, "'value' is missing"),
    ("kv value number", KvValue, {"value": 3}, "'value'"),
]


@pytest.mark.parametrize(
    ("model", "data", "fragment"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_answers_raise_protocol_errors_naming_the_field(
    model: Any, data: Any, fragment: str
) -> None:
    with pytest.raises(IntentBusProtocolError) as caught:
        model.from_wire(data)
    assert fragment in str(caught.value)


SECRET = "tok-secret-123"
# A valid answer of each model, so the secret's field is the one thing wrong.
VALID: dict[Any, dict[str, Any]] = {
    ClaimedIntent: V2_CLAIM,
    PublishReceipt: {"id": "i"},
    IntentStatus: V2_STATUS,
    IntentResult: {**V2_RESULT, "result_type": "json"},
    Health: V2_HEALTH,
    GoalStats: V2_STATS["goals"][0],
    BusStats: V2_STATS,
    KeyInfo: {"id": "k", "owner": "o"},
    DeadLetter: {"intent_id": "i", "namespace": "n", "goal": "g", "attempts": 1},
    Ack: {},
    KvValue: {"value": "v"},
}


@pytest.mark.parametrize("model", list(VALID), ids=lambda m: m.__name__)
@pytest.mark.parametrize(
    "wrong", [[SECRET], {SECRET: SECRET}, [[SECRET]], {"result": SECRET}], ids=repr
)
def test_error_messages_never_quote_values(model: Any, wrong: Any) -> None:
    """Whatever field holds the secret, and however wrong it is, the message does not hold it."""
    refused = 0
    for field in FIELDS:
        try:
            model.from_wire({**VALID[model], field: wrong})
        except IntentBusProtocolError as caught:
            refused += 1
            assert SECRET not in str(caught), field
    assert refused, "no field refused the wrong value: the test tested nothing"


# --- property: arbitrary JSON-like input gives a model or IntentBusProtocolError -----------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats()  # NaN and infinities too: a hand-built dict can hold them
    | st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)

MODELS: list[Any] = [
    PublishReceipt,
    ClaimedIntent,
    IntentStatus,
    IntentResult,
    Health,
    GoalStats,
    BusStats,
    KeyInfo,
    DeadLetter,
    Ack,
    KvValue,
]
FIELDS = sorted(
    {
        *V2_CLAIM,
        *V2_RESULT,
        *V2_HEALTH,
        *V2_STATS["goals"][0],
        "goals",
        "api_key",
        "owner",
        "intent_id",
        "attempts",
        "reason",
        "died_at",
        "extended_by",
        "deleted",
        "value",
        "error",
    }
)
# Documents with the models' own field names, so type checks (not just "missing id") run.
FIELD_DOCS = st.fixed_dictionaries({}, optional={name: JSON_VALUES for name in FIELDS})
ANY_INPUT = JSON_VALUES | FIELD_DOCS | FIELD_DOCS.map(lambda d: {**d, "goals": [d]})


@settings(max_examples=400, deadline=None)
@given(data=ANY_INPUT)
def test_from_wire_raises_only_protocol_errors(data: Any) -> None:
    for model in MODELS:
        try:
            parsed = model.from_wire(data)
        except IntentBusProtocolError:
            continue
        assert isinstance(parsed, model)
        # Whatever parsed has the declared types: no bool smuggled in as a number.
        for name in ("priority", "claim_attempts", "claim_timeout", "ready", "attempts"):
            value = getattr(parsed, name, None)
            assert not isinstance(value, bool)
            assert value is None or isinstance(value, int)
        for name in ("run_at", "completed_at", "claim_expires_at", "oldest_ready_age_seconds"):
            value = getattr(parsed, name, None)
            assert value is None or (isinstance(value, float) and math.isfinite(value))
