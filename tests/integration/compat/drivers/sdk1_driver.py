"""Drive the published ``intent-bus`` 1.x SDK (protocol v1.1) against a bus.

Run by the SDK virtualenv's interpreter (not the project's), so it imports
nothing from intent-fleet. Usage::

    python sdk1_driver.py SCENARIO BUS_URL [ARG...]

The API key comes from ``INTENT_API_KEY`` (the SDK's own lookup). One JSON
document of observations goes to stdout; an unexpected exception exits
non-zero with its traceback on stderr.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import intent_bus
from intent_bus import IntentBusError, IntentClient


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[dict[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append({"level": record.levelname, "message": record.getMessage()})


def _attempt(call: Callable[[], Any]) -> dict[str, Any]:
    """``{"ok": result}`` or ``{"raised": ExceptionName, "message": ...}``."""
    try:
        return {"ok": call()}
    except IntentBusError as exc:
        return {"raised": type(exc).__name__, "message": str(exc)}


def lifecycle(client: IntentClient, goal: str) -> dict[str, Any]:
    """publish -> claim (default namespace) -> fulfill(id) with no token and no body."""
    obs: dict[str, Any] = {}
    payload = {"to": "ops@example.com", "body": "héllo", "n": [1, 2]}
    obs["publish"] = client.publish(goal, payload)
    claimed = client.claim(goal)
    obs["claim"] = claimed
    obs["claim_payload_equal"] = claimed is not None and claimed.get("payload") == payload
    obs["fulfill"] = _attempt(lambda: client.fulfill(claimed["id"]))
    obs["fulfill_again"] = _attempt(lambda: client.fulfill(claimed["id"]))
    obs["claim_empty"] = _attempt(lambda: client.claim(goal))
    obs["claim_any_goal_empty"] = _attempt(lambda: client.claim(goal + "-nothing-here"))
    return obs


def failing(client: IntentClient, goal: str) -> dict[str, Any]:
    """publish -> claim -> fail(id, error): the intent goes back to the queue."""
    obs: dict[str, Any] = {"publish": client.publish(goal, {"job": "flaky"})}
    claimed = client.claim(goal)
    obs["claim"] = claimed
    obs["fail"] = _attempt(lambda: client.fail(claimed["id"], "disk full"))
    obs["fail_again"] = _attempt(lambda: client.fail(claimed["id"], "twice"))
    obs["fulfill_after_fail"] = _attempt(lambda: client.fulfill(claimed["id"]))
    return obs


def idempotency(client: IntentClient, goal: str) -> dict[str, Any]:
    key = "v1-idem-" + goal
    return {
        "first": client.publish(goal, {"k": 1}, idempotency_key=key),
        "again": client.publish(goal, {"k": 1}, idempotency_key=key),
        "conflict": _attempt(lambda: client.publish(goal, {"k": 2}, idempotency_key=key)),
        "fresh": client.publish(goal, {"k": 1}),
    }


def publish_pair(client: IntentClient, goal: str) -> dict[str, Any]:
    """One public and one private intent for the same goal."""
    return {
        "public": client.publish(goal, {"who": "anyone"}, visibility="public"),
        "private": client.publish(goal, {"who": "me only"}, visibility="private"),
    }


def claim_all(client: IntentClient, goal: str) -> dict[str, Any]:
    """Claim until the bus has nothing more for this key and goal."""
    claimed: list[Any] = []
    for _ in range(10):
        job = client.claim(goal)
        if job is None:
            break
        claimed.append(job)
    return {"claimed": claimed}


def fulfill(client: IntentClient, intent_id: str) -> dict[str, Any]:
    return {"fulfill": _attempt(lambda: client.fulfill(intent_id))}


def fail(client: IntentClient, intent_id: str) -> dict[str, Any]:
    return {"fail": _attempt(lambda: client.fail(intent_id, "not mine"))}


def kv(client: IntentClient, prefix: str) -> dict[str, Any]:
    obs: dict[str, Any] = {}
    values: dict[str, Any] = {
        "string": "hello world",
        "dict": {"a": 1, "b": [1, 2]},
        "int": 7,
    }
    for name, value in values.items():
        key = f"{prefix}-{name}"
        obs[f"set_{name}"] = _attempt(lambda key=key, value=value: client.set(key, value, ttl=60))
        obs[f"get_{name}"] = _attempt(lambda key=key: client.get(key))
    obs["get_missing"] = _attempt(lambda: client.get(prefix + "-missing"))
    obs["set_default_ttl"] = _attempt(lambda: client.set(prefix + "-ttl", "v"))
    return obs


SCENARIOS: dict[str, Callable[..., dict[str, Any]]] = {
    "lifecycle": lifecycle,
    "failing": failing,
    "idempotency": idempotency,
    "publish_pair": publish_pair,
    "claim_all": claim_all,
    "fulfill": fulfill,
    "fail": fail,
    "kv": kv,
}


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in SCENARIOS:
        print(f"usage: sdk1_driver.py {{{','.join(SCENARIOS)}}} BUS_URL [ARG...]", file=sys.stderr)
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
    print(json.dumps(obs, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
