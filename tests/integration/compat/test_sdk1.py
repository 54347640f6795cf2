"""The published SDK 1.2.0 (protocol v1.1) as a real client of our v2.1 bus.

v1.1 clients know no namespaces and no claim tokens: they claim in the
default namespace, and the key holding the lease fulfils or fails by intent
id alone. The bus requires signatures here, as SDK 1.2.0 signs every request.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.integration.compat.clients import BusHttp, SdkDriver
from tests.support.busproc import BusProcess

NOT_YOURS = "not_found"


def _goal(name: str) -> str:
    return f"compat.v1.{name}.{uuid.uuid4().hex[:8]}"


def _ok(obs: dict[str, Any], name: str) -> Any:
    entry = obs[name]
    assert "ok" in entry, f"{name}: the SDK raised {entry}"
    return entry["ok"]


def _refused(entry: dict[str, Any]) -> None:
    assert entry.get("raised") == "IntentBusError", entry
    assert NOT_YOURS in entry["message"], entry


def test_publish_claim_fulfill_without_token(
    sdk1: SdkDriver, signed_bus: BusProcess, http: BusHttp, api_key: str
) -> None:
    goal = _goal("lifecycle")
    obs = sdk1.run("lifecycle", signed_bus.url, goal, api_key=api_key)
    assert obs["log"] == []

    published = obs["publish"]
    assert published["status"] == "published"
    intent_id = published["id"]
    claimed = obs["claim"]
    assert claimed is not None
    assert claimed["id"] == intent_id
    assert claimed["goal"] == goal
    assert claimed["namespace"] == "default"
    assert obs["claim_payload_equal"] is True

    # fulfill(id): no body, no claim token; the lease holder's key is enough (v1.1).
    assert _ok(obs, "fulfill") == {"id": intent_id, "ok": True}
    _refused(obs["fulfill_again"])
    # An empty queue is HTTP 204, which the SDK turns into None.
    assert _ok(obs, "claim_empty") is None
    assert _ok(obs, "claim_any_goal_empty") is None

    doc = http.status(intent_id, api_key=api_key)
    assert doc["status"] == "fulfilled"
    assert doc["namespace"] == "default"
    assert doc["visibility"] == "private"
    assert doc["claim_attempts"] == 1
    stored = http.get(f"/result/{intent_id}", api_key=api_key).doc
    assert stored.get("result") is None


def test_fail_requeues(
    sdk1: SdkDriver, signed_bus: BusProcess, http: BusHttp, api_key: str
) -> None:
    goal = _goal("fail")
    obs = sdk1.run("failing", signed_bus.url, goal, api_key=api_key)
    intent_id = obs["publish"]["id"]
    assert obs["claim"]["id"] == intent_id
    assert _ok(obs, "fail") == {"id": intent_id, "ok": True, "status": "open"}
    # The lease ended with the failure: neither a second fail nor a fulfil may touch it.
    _refused(obs["fail_again"])
    _refused(obs["fulfill_after_fail"])

    doc = http.status(intent_id, api_key=api_key)
    assert doc["status"] == "open"
    assert doc["last_error"] == "disk full"
    assert doc["claim_attempts"] == 1
    assert doc["claim_expires_at"] is None


def test_public_intents_are_shared_private_ones_are_not(
    sdk1: SdkDriver, signed_bus: BusProcess, http: BusHttp, api_key: str
) -> None:
    goal = _goal("visibility")
    pair = sdk1.run("publish_pair", signed_bus.url, goal, api_key=api_key)
    public_id, private_id = pair["public"]["id"], pair["private"]["id"]

    stranger = http.new_key("stranger")
    theirs = sdk1.run("claim_all", signed_bus.url, goal, api_key=stranger)["claimed"]
    assert [c["id"] for c in theirs] == [public_id]
    assert theirs[0]["visibility"] == "public"

    # The publisher does not hold the stranger's lease: it may not settle the intent.
    _refused(sdk1.run("fulfill", signed_bus.url, public_id, api_key=api_key)["fulfill"])
    _refused(sdk1.run("fail", signed_bus.url, public_id, api_key=api_key)["fail"])
    # Nor may the stranger settle the private intent it never claimed.
    _refused(sdk1.run("fulfill", signed_bus.url, private_id, api_key=stranger)["fulfill"])
    assert http.status(public_id, api_key=api_key)["status"] == "claimed"

    mine = sdk1.run("claim_all", signed_bus.url, goal, api_key=api_key)["claimed"]
    assert [c["id"] for c in mine] == [private_id]

    done = sdk1.run("fulfill", signed_bus.url, public_id, api_key=stranger)["fulfill"]
    assert done == {"ok": {"id": public_id, "ok": True}}
    assert http.status(public_id, api_key=api_key)["status"] == "fulfilled"
    assert http.status(private_id, api_key=api_key)["status"] == "claimed"
    # The stranger claimed it, so it may read it; the private one stays hidden from it.
    assert http.status(public_id, api_key=stranger)["status"] == "fulfilled"
    assert http.get(f"/status/{private_id}", api_key=stranger).status == 403


def test_idempotency_key_replays_the_first_answer(
    sdk1: SdkDriver, signed_bus: BusProcess, http: BusHttp, api_key: str
) -> None:
    goal = _goal("idem")
    obs = sdk1.run("idempotency", signed_bus.url, goal, api_key=api_key)
    assert obs["first"]["id"] == obs["again"]["id"]
    assert obs["fresh"]["id"] != obs["first"]["id"]
    assert obs["conflict"]["raised"] == "IntentBusError"
    assert "idempotency_conflict" in obs["conflict"]["message"]

    claimed = sdk1.run("claim_all", signed_bus.url, goal, api_key=api_key)["claimed"]
    # Two intents exist, not three: the replay created nothing.
    assert sorted(c["id"] for c in claimed) == sorted([obs["first"]["id"], obs["fresh"]["id"]])
    assert http.status(obs["first"]["id"], api_key=api_key)["status"] == "claimed"


def test_kv_set_and_get(
    sdk1: SdkDriver, signed_bus: BusProcess, http: BusHttp, api_key: str
) -> None:
    prefix = "v1kv-" + uuid.uuid4().hex[:8]
    obs = sdk1.run("kv", signed_bus.url, prefix, api_key=api_key)
    for name in ("string", "dict", "int"):
        assert _ok(obs, f"set_{name}") == {"ok": True}
    assert _ok(obs, "set_default_ttl") == {"ok": True}
    assert _ok(obs, "get_string") == "hello world"
    # SDK 1.2.0 sends a dict as is; the bus keeps its JSON text, which get returns verbatim.
    assert _ok(obs, "get_dict") == '{"a":1,"b":[1,2]}'
    assert _ok(obs, "get_int") == "7"
    assert obs["get_missing"]["raised"] == "IntentBusError"
    assert "not_found" in obs["get_missing"]["message"]

    assert http.get(f"/get/{prefix}-string", api_key=api_key).doc == {"value": "hello world"}
    assert http.get(f"/get/{prefix}-ttl", api_key=api_key).doc == {"value": "v"}
