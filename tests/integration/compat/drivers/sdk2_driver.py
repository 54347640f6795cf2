"""Drive the published ``intent-bus`` 2.x SDK against a bus and report what it saw.

Run by the SDK virtualenv's interpreter (not the project's), so it imports
nothing from intent-fleet. Usage::

    python sdk2_driver.py SCENARIO BUS_URL [ARG...]

The API key comes from ``INTENT_API_KEY`` (the SDK's own lookup). One JSON
document of observations goes to stdout; an unexpected exception exits
non-zero with its traceback on stderr.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import intent_bus
from intent_bus import IntentBusError, IntentClient


class _Records(logging.Handler):
    """Every log record the SDK emits, so the test can see its warnings."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[dict[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append({"level": record.levelname, "message": record.getMessage()})


def _model(value: Any) -> Any:
    """SDK models (and ClaimResponse wrappers) as plain JSON."""
    if value is None:
        return None
    data = getattr(value, "data", value) if type(value).__name__ == "ClaimResponse" else value
    if data is None:
        return None
    to_dict = getattr(data, "to_dict", None)
    return to_dict() if callable(to_dict) else data


def _attempt(call: Callable[[], Any]) -> dict[str, Any]:
    """Run one SDK call: ``{"ok": result}`` or ``{"raised": ExceptionName, "message": ...}``."""
    try:
        return {"ok": _model(call())}
    except IntentBusError as exc:
        return {"raised": type(exc).__name__, "message": str(exc)}


def _claim_view(res: Any) -> dict[str, Any]:
    return {
        "truthy": bool(res),
        "status_code": res.status_code,
        "retry_after": res.retry_after,
        "model": type(res.data).__name__ if res.data is not None else None,
        "intent": _model(res),
    }


def _claim_eventually(
    client: IntentClient, goal: str, *, namespace: str = "default", within: float = 10.0
) -> Any:
    """Claim, polling while the intent waits out its retry backoff."""
    deadline = time.monotonic() + within
    while True:
        res = client.claim(goal, namespace=namespace)
        if res or time.monotonic() > deadline:
            return res
        time.sleep(0.1)


def lifecycle(client: IntentClient, goal: str) -> dict[str, Any]:
    obs: dict[str, Any] = {}
    payload = {"n": 1, "nested": {"list": [1, 2, 3], "text": "héllo"}, "flag": True}
    obs["publish"] = _model(client.publish(goal, payload, priority=500, max_attempts=3))
    obs["server_version_after_publish"] = client.server_version

    idem_goal = goal + "-idem"
    first = client.publish(idem_goal, {"k": 1}, idempotency_key="idem-" + goal)
    again = client.publish(idem_goal, {"k": 1}, idempotency_key="idem-" + goal)
    obs["idempotent"] = {"first": _model(first), "again": _model(again)}
    obs["idempotent_conflict"] = _attempt(
        lambda: client.publish(idem_goal, {"k": 2}, idempotency_key="idem-" + goal)
    )
    other = client.publish(idem_goal, {"k": 1})
    obs["without_key"] = _model(other)

    claimed = client.claim(goal, worker_id="worker-a", capabilities=["gpu", " cpu "])
    obs["claim"] = _claim_view(claimed)
    obs["claim_payload_equal"] = claimed.payload == payload
    obs["extend"] = _attempt(lambda: client.extend_claim(claimed.id, claimed.claim_token, 120))
    obs["status_claimed"] = _model(client.get_status(claimed.id))
    obs["result_while_claimed"] = _attempt(lambda: client.get_result(claimed.id))
    result = {"answer": 42, "items": ["a", "b"], "none": None}
    obs["fulfill_json"] = _attempt(
        lambda: client.fulfill(claimed.id, claimed.claim_token, result=result)
    )
    obs["result_json"] = _attempt(lambda: client.get_result(claimed.id))
    obs["result_json_equal"] = obs["result_json"].get("ok", {}).get("result") == result
    obs["status_fulfilled"] = _model(client.get_status(claimed.id))

    text_pub = client.publish(goal, {"n": 2})
    text_claim = client.claim(goal, worker_id="worker-a")
    obs["text_publish"] = _model(text_pub)
    obs["text_claim"] = _claim_view(text_claim)
    obs["fulfill_text"] = _attempt(
        lambda: client.fulfill(
            text_claim.id, text_claim.claim_token, result="line one\nline two", result_type="text"
        )
    )
    obs["result_text"] = _attempt(lambda: client.get_result(text_claim.id))

    bare_pub = client.publish(goal, {"n": 3})
    bare_claim = client.claim(goal)
    obs["bare_publish"] = _model(bare_pub)
    obs["fulfill_no_result"] = _attempt(
        lambda: client.fulfill(bare_claim.id, bare_claim.claim_token)
    )
    obs["result_none"] = _attempt(lambda: client.get_result(bare_claim.id))

    obs["claim_empty"] = _claim_view(client.claim(goal))
    obs["server_version"] = client.server_version
    return obs


def failures(client: IntentClient, goal: str) -> dict[str, Any]:
    obs: dict[str, Any] = {}
    pub = client.publish(goal, {"job": "flaky"}, max_attempts=2, backoff_base=0.01)
    obs["publish"] = _model(pub)
    first = client.claim(goal)
    obs["claim_1"] = _claim_view(first)
    obs["fail_1"] = _attempt(lambda: client.fail(first.id, first.claim_token, "boom 1"))
    obs["status_after_fail_1"] = _model(client.get_status(first.id))

    second = _claim_eventually(client, goal)
    obs["claim_2"] = _claim_view(second)
    obs["tokens_differ"] = second.claim_token != first.claim_token
    # The first lease is gone: its token must not touch the intent any more.
    obs["stale_fulfill"] = _attempt(lambda: client.fulfill(first.id, first.claim_token, result=1))
    obs["stale_extend"] = _attempt(lambda: client.extend_claim(first.id, first.claim_token, 30))
    obs["stale_fail"] = _attempt(lambda: client.fail(first.id, first.claim_token, "stale"))
    obs["bogus_token_fulfill"] = _attempt(lambda: client.fulfill(second.id, "0" * 32, result=1))
    obs["status_still_claimed"] = _model(client.get_status(second.id))

    obs["fail_2"] = _attempt(lambda: client.fail(second.id, second.claim_token, "boom 2"))
    obs["status_dead"] = _model(client.get_status(second.id))
    obs["result_dead"] = _attempt(lambda: client.get_result(second.id))
    obs["fulfill_after_dead"] = _attempt(lambda: client.fulfill(second.id, second.claim_token))
    obs["claim_after_dead"] = _claim_view(client.claim(goal))
    return obs


def kv(client: IntentClient, prefix: str) -> dict[str, Any]:
    obs: dict[str, Any] = {}
    values: dict[str, Any] = {
        "string": "hello world",
        "dict": {"a": 1, "b": [1, 2], "c": {"d": "e"}},
        "list": [1, "two", 3.5],
        "json_looking_string": "false",
        "int": 7,
    }
    for name, value in values.items():
        key = f"{prefix}-{name}"
        obs[f"set_{name}"] = _attempt(lambda key=key, value=value: client.set(key, value, ttl=60))
        got = _attempt(lambda key=key: client.get(key))
        obs[f"get_{name}"] = got
        obs[f"roundtrip_{name}"] = got.get("ok") == value
    obs["get_missing"] = _attempt(lambda: client.get(prefix + "-missing"))
    obs["set_overwrite"] = _attempt(lambda: client.set(prefix + "-string", "second", ttl=60))
    obs["get_overwritten"] = _attempt(lambda: client.get(prefix + "-string"))
    return obs


def namespaces(client: IntentClient, goal: str) -> dict[str, Any]:
    obs: dict[str, Any] = {}
    obs["publish_a"] = _model(client.publish(goal, {"ns": "a"}, namespace="team-a"))
    obs["claim_default"] = _claim_view(client.claim(goal))
    obs["claim_b"] = _claim_view(client.claim(goal, namespace="team-b"))
    got = client.claim(goal, namespace="team-a")
    obs["claim_a"] = _claim_view(got)
    obs["status_a"] = _model(client.get_status(got.id))
    obs["fulfill_a"] = _attempt(lambda: client.fulfill(got.id, got.claim_token, result="done"))
    obs["publish_b"] = _model(client.publish(goal, {"ns": "b"}, namespace="team-b"))
    return obs


def publish(client: IntentClient, goal: str, visibility: str, namespace: str) -> dict[str, Any]:
    pub = client.publish(goal, {"from": "sdk2"}, visibility=visibility, namespace=namespace)
    return {"publish": _model(pub)}


def result(client: IntentClient, intent_id: str) -> dict[str, Any]:
    return {"result": _attempt(lambda: client.get_result(intent_id))}


def claim_one(client: IntentClient, goal: str, namespace: str = "default") -> dict[str, Any]:
    return {"claim": _claim_view(client.claim(goal, namespace=namespace))}


def wrong_key(client: IntentClient, goal: str) -> dict[str, Any]:
    return {
        "publish": _attempt(lambda: client.publish(goal, {"x": 1})),
        "claim": _attempt(lambda: client.claim(goal)),
        "get": _attempt(lambda: client.get("anything")),
    }


SCENARIOS: dict[str, Callable[..., dict[str, Any]]] = {
    "lifecycle": lifecycle,
    "failures": failures,
    "kv": kv,
    "namespaces": namespaces,
    "publish": publish,
    "result": result,
    "claim_one": claim_one,
    "wrong_key": wrong_key,
}


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in SCENARIOS:
        print(f"usage: sdk2_driver.py {{{','.join(SCENARIOS)}}} BUS_URL [ARG...]", file=sys.stderr)
        return 2
    scenario, url, *args = argv
    records = _Records()
    sdk_logger = logging.getLogger("intent_bus")
    sdk_logger.addHandler(records)
    sdk_logger.setLevel(logging.DEBUG)
    with IntentClient(base_url=url) as client:
        obs = SCENARIOS[scenario](client, *args)
    obs["sdk_version"] = intent_bus.__version__
    obs["log"] = records.messages
    obs["protocol_mismatch_warned"] = any(
        "Protocol Mismatch" in m["message"] for m in records.messages
    )
    print(json.dumps(obs, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
