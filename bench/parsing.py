"""Benchmark what reading untrusted JSON costs: the client's wire models and the bus's bodies.

    .venv/bin/python bench/parsing.py            # or: make bench
    .venv/bin/python bench/parsing.py --quick

The wire models (protocol/models.py) are strict msgspec structs; this prints what one answer
costs to read: a claim (the sidecar reads one per intent), a /stats answer of 100 goals (the
operator reads one per worker per tick) and a health answer. The bus's request bodies are
read by hand (bus/validation.py) because their rules are the wire contract: per-field error
codes, empty strings as unset, integral floats as integers, stored-text checks and a nesting
limit. The last two lines time that against a msgspec struct holding the types only, which is
the most a struct could save per publish. Prints one JSON line of medians (microseconds).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import msgspec
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.metrics import per_call_ns
from intent_fleet.bus.settings import LimitSettings, QueueSettings
from intent_fleet.bus.validation import json_body, publish_request
from intent_fleet.protocol import BusStats, ClaimedIntent, Health

CLAIM = orjson.dumps(
    {
        "id": "3f1c0b8e9a7d4c2e8f6a5b4c3d2e1f00",
        "namespace": "media",
        "goal": "encode",
        "payload": {"file": "a.mp4", "sizes": [240, 480, 720], "meta": {"by": "ops"}},
        "claim_attempts": 1,
        "max_attempts": 3,
        "priority": 100,
        "visibility": "private",
        "target_worker": None,
        "required_capability": None,
        "claim_token": "9b2f6c1d8e7a4b3c2d1e0f9a8b7c6d5e",
        "claim_timeout": 60,
        "claim_expires_at": 1_700_000_060.5,
    }
)
STATS = orjson.dumps(
    {
        "ts": 1_700_000_000.5,
        "goals": [
            {
                "namespace": f"team-{n % 10}",
                "goal": f"goal-{n}",
                "ready": n,
                "delayed": 0,
                "claimed": 2,
                "dead": 0,
                "oldest_ready_age_seconds": 1.5,
            }
            for n in range(100)
        ],
    }
)
HEALTH = orjson.dumps(
    {"ok": True, "version": "2.1", "protocol": "2.1", "features": ["long_poll_claim"] * 6}
)
PUBLISH = orjson.dumps(
    {
        "goal": "encode",
        "payload": {"file": "a.mp4", "sizes": [240, 480, 720], "meta": {"by": "ops"}},
        "visibility": "private",
        "priority": 300,
        "max_attempts": 5,
    }
)


class PublishTypes(msgspec.Struct, frozen=True):
    """The publish body's types and ranges only: no codes, no text checks, no defaults."""

    goal: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    payload: msgspec.Raw
    namespace: str | None = None
    visibility: str | None = None
    priority: Annotated[int, msgspec.Meta(ge=0, le=1000)] | None = None
    delay: Annotated[float, msgspec.Meta(ge=0)] | None = None
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=20)] | None = None
    backoff_base: Annotated[float, msgspec.Meta(ge=0)] | None = None
    target_worker: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    required_capability: Annotated[str, msgspec.Meta(max_length=64)] | None = None


def per_call_us(action: Callable[[], object], *, calls: int, rounds: int) -> float:
    return round(per_call_ns(action, calls=calls, rounds=rounds) / 1000, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (for the tests)")
    args = parser.parse_args()
    rounds, calls = (3, 2_000) if args.quick else (9, 50_000)
    limits, queue = LimitSettings(), QueueSettings()
    publish_types = msgspec.json.Decoder(PublishTypes)
    report = {
        "claim_answer_us": per_call_us(
            lambda: ClaimedIntent.from_wire(orjson.loads(CLAIM)), calls=calls, rounds=rounds
        ),
        "stats_answer_100_goals_us": per_call_us(
            lambda: BusStats.from_wire(orjson.loads(STATS)), calls=calls // 50, rounds=rounds
        ),
        "health_answer_us": per_call_us(
            lambda: Health.from_wire(orjson.loads(HEALTH)), calls=calls, rounds=rounds
        ),
        "bus_publish_body_us": per_call_us(
            lambda: publish_request(
                json_body(PUBLISH, max_depth=limits.max_json_depth), limits=limits, queue=queue
            ),
            calls=calls,
            rounds=rounds,
        ),
        "publish_body_types_as_struct_us": per_call_us(
            lambda: publish_types.decode(PUBLISH), calls=calls, rounds=rounds
        ),
    }
    for key, value in report.items():
        print(f"{key:40s} {value:10.3f}")
    print(json.dumps({"medians": report}))


if __name__ == "__main__":
    main()
