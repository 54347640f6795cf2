"""The published SDK 2.1.2 (protocol v2.1) as a real client of our bus.

Every scenario runs against a bus started with ``--require-signatures``, so
each call the SDK got through also proves its HMAC signature verified. The
SDK's observations are then cross-checked over independent signed HTTP.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from tests.integration.compat.clients import BusHttp, SdkDriver
from tests.support.busproc import BusProcess

LEASE_LOST = "IntentBusLeaseLostError"


def _goal(name: str) -> str:
    return f"compat.v2.{name}.{uuid.uuid4().hex[:8]}"


def _ok(obs: dict[str, Any], name: str) -> Any:
    entry = obs[name]
    assert "ok" in entry, f"{name}: the SDK raised {entry}"
    return entry["ok"]


def _no_protocol_errors(obs: dict[str, Any]) -> None:
    """The SDK may warn about the version header, but nothing may break because of it."""
    raised = {
        name: value
        for name, value in obs.items()
        if isinstance(value, dict) and value.get("raised") == "IntentBusProtocolError"
    }
    assert not raised, f"the SDK rejected the bus's answers: {raised}"
    for entry in obs["log"]:
        # The only SDK log line expected is the major-version comparison ("2" vs "7").
        assert entry["message"].startswith("Protocol Mismatch"), entry


def test_publish_claim_extend_fulfill_and_results(
    sdk2: SdkDriver,
    signed_bus: BusProcess,
    http: BusHttp,
    api_key: str,
    record_property: Callable[[str, object], None],
) -> None:
    goal = _goal("lifecycle")
    obs = sdk2.run("lifecycle", signed_bus.url, goal, api_key=api_key)
    _no_protocol_errors(obs)
    record_property("protocol_mismatch_warned", obs["protocol_mismatch_warned"])
    assert obs["server_version"] == "2.1"

    published = obs["publish"]
    assert published["status"] == "published"
    assert published["namespace"] == "default"
    intent_id = published["id"]

    # Idempotency: the same key and body answer the first id; another body is a conflict.
    idem = obs["idempotent"]
    assert idem["first"]["id"] == idem["again"]["id"]
    assert obs["idempotent_conflict"]["raised"] == "IntentBusError"
    assert "idempotency_conflict" in obs["idempotent_conflict"]["message"]
    assert obs["without_key"]["id"] != idem["first"]["id"]

    claim = obs["claim"]
    assert claim["truthy"] is True
    assert claim["status_code"] == 200
    assert claim["model"] == "ClaimedIntent"
    claimed = claim["intent"]
    assert claimed["id"] == intent_id
    assert claimed["goal"] == goal
    assert claimed["namespace"] == "default"
    assert claimed["priority"] == 500
    assert claimed["claim_attempts"] == 1
    assert isinstance(claimed["claim_token"], str)
    assert claimed["claim_token"]
    assert obs["claim_payload_equal"] is True

    assert _ok(obs, "extend")["ok"] is True
    assert _ok(obs, "extend")["extended_by"] == 120
    assert obs["status_claimed"]["status"] == "claimed"
    result_while_claimed = _ok(obs, "result_while_claimed")
    assert result_while_claimed["status"] == "claimed"
    assert result_while_claimed["result"] is None

    assert _ok(obs, "fulfill_json") == {"id": intent_id, "ok": True}
    result = _ok(obs, "result_json")
    assert result["status"] == "fulfilled"
    assert result["result_type"] == "json"
    assert obs["result_json_equal"] is True
    assert obs["status_fulfilled"]["status"] == "fulfilled"

    text_id = obs["text_claim"]["intent"]["id"]
    assert text_id == obs["text_publish"]["id"]
    assert _ok(obs, "fulfill_text")["ok"] is True
    text = _ok(obs, "result_text")
    assert text["result_type"] == "text"
    assert text["result"] == "line one\nline two"

    bare_id = obs["bare_publish"]["id"]
    assert _ok(obs, "fulfill_no_result")["ok"] is True
    bare = _ok(obs, "result_none")
    assert bare["status"] == "fulfilled"
    assert bare["result"] is None

    empty = obs["claim_empty"]
    assert empty == {
        "truthy": False,
        "status_code": 204,
        "retry_after": 1.0,
        "model": None,
        "intent": None,
    }

    # What the bus itself holds, asked without the SDK.
    doc = http.status(intent_id, api_key=api_key)
    assert doc["status"] == "fulfilled"
    assert doc["priority"] == 500
    assert doc["claim_attempts"] == 1
    stored = http.get(f"/result/{intent_id}", api_key=api_key)
    assert stored.status == 200
    assert stored.headers["X-Intent-Version"] == "2.1"
    assert stored.doc["result_type"] == "json"
    assert stored.doc["result"] == {"answer": 42, "items": ["a", "b"], "none": None}
    stored_text = http.get(f"/result/{text_id}", api_key=api_key).doc
    assert (stored_text["result_type"], stored_text["result"]) == ("text", "line one\nline two")
    assert http.status(bare_id, api_key=api_key)["status"] == "fulfilled"
    assert http.status(idem["first"]["id"], api_key=api_key)["status"] == "open"


def test_fail_requeues_then_dies_and_stale_tokens_lose_the_lease(
    sdk2: SdkDriver, signed_bus: BusProcess, http: BusHttp, api_key: str
) -> None:
    goal = _goal("failures")
    obs = sdk2.run("failures", signed_bus.url, goal, api_key=api_key)
    _no_protocol_errors(obs)
    intent_id = obs["publish"]["id"]

    assert _ok(obs, "fail_1") == {"id": intent_id, "ok": True, "status": "open"}
    after_first = obs["status_after_fail_1"]
    assert after_first["status"] == "open"
    assert after_first["error"] == "boom 1"
    assert after_first["claim_attempts"] == 1

    second = obs["claim_2"]["intent"]
    assert second is not None, "the failed intent never came back to the queue"
    assert second["id"] == intent_id
    assert second["claim_attempts"] == 2
    assert obs["tokens_differ"] is True

    # A token from an earlier lease, or a made-up one, is "lease lost" (HTTP 404).
    for name in ("stale_fulfill", "stale_extend", "stale_fail", "bogus_token_fulfill"):
        assert obs[name]["raised"] == LEASE_LOST, (name, obs[name])
    # ... and none of them disturbed the current lease.
    assert obs["status_still_claimed"]["status"] == "claimed"

    assert _ok(obs, "fail_2") == {"id": intent_id, "ok": True, "status": "dead"}
    assert obs["status_dead"]["status"] == "dead"
    assert obs["status_dead"]["error"] == "boom 2"
    assert _ok(obs, "result_dead")["status"] == "dead"
    assert obs["fulfill_after_dead"]["raised"] == LEASE_LOST
    assert obs["claim_after_dead"]["status_code"] == 204

    doc = http.status(intent_id, api_key=api_key)
    assert doc["status"] == "dead"
    assert doc["claim_attempts"] == 2
    assert doc["last_error"] == "boom 2"
    dead = http.admin("GET", f"/admin/dead/{intent_id}")
    assert dead.status == 200, dead
    assert dead.doc["goal"] == goal
    assert dead.doc["payload"] == {"job": "flaky"}


def test_kv_strings_and_json_documents(
    sdk2: SdkDriver, signed_bus: BusProcess, http: BusHttp, api_key: str
) -> None:
    prefix = "v2kv-" + uuid.uuid4().hex[:8]
    obs = sdk2.run("kv", signed_bus.url, prefix, api_key=api_key)
    _no_protocol_errors(obs)
    for name in ("string", "dict", "list", "json_looking_string", "int"):
        assert _ok(obs, f"set_{name}") == {"ok": True}
    # The SDK json-encodes dicts and lists on set and decodes them on get.
    assert obs["roundtrip_string"] is True
    assert obs["roundtrip_dict"] is True
    assert obs["roundtrip_list"] is True
    assert obs["roundtrip_json_looking_string"] is True
    # Other scalars come back as the string the bus stored (protocol: values are strings).
    assert _ok(obs, "get_int") == "7"
    assert obs["get_missing"]["raised"] == "IntentBusError"
    assert "not_found" in obs["get_missing"]["message"]
    assert _ok(obs, "get_overwritten") == "second"

    stored = http.get(f"/get/{prefix}-dict", api_key=api_key)
    assert stored.status == 200
    assert isinstance(stored.doc["value"], str)
    assert stored.doc["value"] == '{"a":1,"b":[1,2],"c":{"d":"e"}}'
    assert http.get(f"/get/{prefix}-string", api_key=api_key).doc == {"value": "second"}
    # Keys are scoped per API key.
    other = http.new_key("kv-other")
    assert http.get(f"/get/{prefix}-string", api_key=other).status == 404


def test_namespaces_isolate_claims(
    sdk2: SdkDriver, signed_bus: BusProcess, http: BusHttp, api_key: str
) -> None:
    goal = _goal("ns")
    obs = sdk2.run("namespaces", signed_bus.url, goal, api_key=api_key)
    _no_protocol_errors(obs)
    a_id = obs["publish_a"]["id"]
    assert obs["publish_a"]["namespace"] == "team-a"
    assert obs["claim_default"]["status_code"] == 204
    assert obs["claim_b"]["status_code"] == 204
    got = obs["claim_a"]["intent"]
    assert got["id"] == a_id
    assert got["namespace"] == "team-a"
    assert obs["status_a"]["namespace"] == "team-a"
    assert _ok(obs, "fulfill_a")["ok"] is True

    assert http.status(a_id, api_key=api_key)["status"] == "fulfilled"
    b_id = obs["publish_b"]["id"]
    b_doc = http.status(b_id, api_key=api_key)
    assert (b_doc["namespace"], b_doc["status"]) == ("team-b", "open")
    # The team-b intent is invisible from the default namespace and team-a ...
    for namespace in ("default", "team-a"):
        again = sdk2.run("claim_one", signed_bus.url, goal, namespace, api_key=api_key)
        assert again["claim"]["status_code"] == 204, namespace
    # ... and claimable in its own.
    own = sdk2.run("claim_one", signed_bus.url, goal, "team-b", api_key=api_key)
    assert own["claim"]["intent"]["id"] == b_id


def test_wrong_key_is_an_auth_error(sdk2: SdkDriver, signed_bus: BusProcess, http: BusHttp) -> None:
    obs = sdk2.run("wrong_key", signed_bus.url, _goal("auth"), api_key="tk_" + "0" * 40)
    for name in ("publish", "claim", "get"):
        assert obs[name]["raised"] == "IntentBusAuthError", (name, obs[name])
        assert "unauthorized" in obs[name]["message"]


def test_bus_really_requires_signatures(signed_bus: BusProcess, http: BusHttp) -> None:
    """Guards the premise of this module: an unsigned request is refused here."""
    key = http.new_key("unsigned")
    answer = http.call("POST", "/claim?goal=x", api_key=key, sign=False)
    assert answer.status == 403
    assert answer.error_code() == "invalid_signature"
    assert http.call("POST", "/claim?goal=x", api_key=key).status == 204


def test_v2_publisher_and_v1_worker_share_a_fleet(
    sdk2: SdkDriver, sdk1: SdkDriver, signed_bus: BusProcess, http: BusHttp, api_key: str
) -> None:
    """Public intents from SDK 2 are work for another key's SDK 1 worker; nothing else is."""
    goal = _goal("mixed")

    def publish(visibility: str, namespace: str) -> str:
        obs = sdk2.run("publish", signed_bus.url, goal, visibility, namespace, api_key=api_key)
        return str(obs["publish"]["id"])

    public_id = publish("public", "default")
    private_id = publish("private", "default")
    other_ns_id = publish("public", "team-b")

    worker_key = http.new_key("v1-worker")
    claimed = sdk1.run("claim_all", signed_bus.url, goal, api_key=worker_key)["claimed"]
    # A v1 worker claims in the default namespace only, and never another key's private work.
    assert [c["id"] for c in claimed] == [public_id]
    done = sdk1.run("fulfill", signed_bus.url, public_id, api_key=worker_key)
    assert done["fulfill"]["ok"] == {"id": public_id, "ok": True}

    seen = sdk2.run("result", signed_bus.url, public_id, api_key=api_key)["result"]
    assert seen["ok"]["status"] == "fulfilled"
    assert seen["ok"]["result"] is None
    assert http.status(private_id, api_key=api_key)["status"] == "open"
    assert http.status(other_ns_id, api_key=api_key)["status"] == "open"
