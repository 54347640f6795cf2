"""The bus starts, answers /health, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import urllib.request

from tests.support.busproc import BusProcess


def test_health_advertises_protocol_and_features(bus: BusProcess) -> None:
    with urllib.request.urlopen(f"{bus.url}/health", timeout=5) as resp:
        assert resp.headers["X-Intent-Version"] == "2.1"
        doc = json.loads(resp.read())
    assert doc["ok"] is True
    assert "long_poll_claim" in doc["features"]
    assert "backlog_stats" in doc["features"]
