"""Regenerate ``signing_vectors.json`` with the published SDK 2.1.2 (protocol v2.1).

Not a test: run by hand where the SDK wheel is unpacked (it needs ``requests``)::

    .venv/bin/python tests/unit/protocol/data/make_signing_vectors.py /tmp/sdk/v2/x

The canonical path comes from the SDK transport's ``IntentTransport._build_path``,
the body bytes from ``intent_bus.client.auth.canonical_body`` and the signature
from ``intent_bus.client.auth.generate_signature``. The vectors are stored so CI
machines without the SDK check our signing against the SDK's own output.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

CASES: list[dict[str, Any]] = [
    {"name": "no query, no body", "method": "GET", "endpoint": "/health", "params": None},
    {
        "name": "space in value",
        "method": "POST",
        "endpoint": "/claim",
        "params": [["goal", "send email"]],
    },
    {"name": "slash in value", "method": "POST", "endpoint": "/claim", "params": [["goal", "a/b"]]},
    {
        "name": "unicode value",
        "method": "POST",
        "endpoint": "/claim",
        "params": [["goal", "größe ☃ 日本"]],
    },
    {
        "name": "ampersand and equals inside values",
        "method": "GET",
        "endpoint": "/stats",
        "params": [["goal", "a&b=c"], ["namespace", "x=y&z"]],
    },
    {
        "name": "several parameters, unsorted",
        "method": "POST",
        "endpoint": "/claim",
        "params": [["wait", 5], ["publisher", "k_0123"], ["namespace", "ns.1"], ["goal", "g"]],
    },
    {
        "name": "None values dropped",
        "method": "POST",
        "endpoint": "/claim",
        "params": [["goal", "g"], ["publisher", None], ["namespace", None]],
    },
    {"name": "only None values", "method": "GET", "endpoint": "/stats", "params": [["goal", None]]},
    {
        "name": "reserved and unreserved characters",
        "method": "GET",
        "endpoint": "/admin/dead",
        "params": [["goal", "~-._!*'();:@+$,?#[]%"], ["limit", 100]],
    },
    {
        "name": "key needing encoding",
        "method": "GET",
        "endpoint": "/stats",
        "params": [["a b", "c d"]],
    },
    {
        "name": "publish body",
        "method": "POST",
        "endpoint": "/intent",
        "params": None,
        "body": {
            "goal": "send_email",
            "visibility": "private",
            "payload": {"to": "ops", "n": [3, 1, 2]},
        },
    },
    {
        "name": "lease body with lowercase method",
        "method": "post",
        "endpoint": "/extend_claim/abc123",
        "params": None,
        "body": {"seconds": 120, "claim_token": "tok_9"},
    },
]

API_KEY = "tk_0123456789abcdef0123456789abcdef01234567"
TIMESTAMP = "1700000000"
NONCE = "5f1c0ffee5f1c0ffee5f1c0ffee5f1c0"


def main(sdk_dir: str) -> None:
    sys.path.insert(0, sdk_dir)
    # Imported by name at run time: the SDK is not installed, only unpacked.
    auth = importlib.import_module("intent_bus.client.auth")
    transport = importlib.import_module("intent_bus.client.transport")
    canonical_body = auth.canonical_body
    generate_signature = auth.generate_signature
    build_path = transport.IntentTransport._build_path

    vectors = []
    for case in CASES:
        params = case["params"]
        path = build_path(None, case["endpoint"], params)
        body = canonical_body(case.get("body"))
        vectors.append(
            {
                **case,
                "api_key": API_KEY,
                "timestamp": TIMESTAMP,
                "nonce": NONCE,
                "canonical_path": path,
                "body_bytes": body.decode("utf-8"),
                "signature": generate_signature(
                    API_KEY, case["method"], path, TIMESTAMP, NONCE, body
                ),
            }
        )
    out = Path(__file__).with_name("signing_vectors.json")
    document = {
        "_how": (
            "Computed with the published intent-bus SDK 2.1.2: canonical_path by "
            "intent_bus.client.transport.IntentTransport._build_path, body_bytes by "
            "intent_bus.client.auth.canonical_body, signature by "
            "intent_bus.client.auth.generate_signature. Regenerate with make_signing_vectors.py."
        ),
        "vectors": vectors,
    }
    out.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/sdk/v2/x")
