"""The example handlers, for real, through ``intent-fleet run`` (embedded bus + sidecar)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.lifecycle import wait_until
from tests.support.procs import Child, free_port, spawn

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "handlers"


def _command(lang: str, tmp: Path) -> list[str]:
    if lang == "python":
        return [sys.executable, str(EXAMPLES / "python" / "handler.py")]
    if lang == "node":
        node = shutil.which("node")
        assert node, (
            "Node.js is required for the Node example (it is part of this project's toolchain)"
        )
        return [node, str(EXAMPLES / "node" / "handler.js")]
    go = shutil.which("go")
    assert go, "Go is required to build the Go example (it is part of this project's toolchain)"
    binary = tmp / "go-handler"
    subprocess.run(
        [go, "build", "-o", str(binary), "."], cwd=EXAMPLES / "go", check=True, timeout=300
    )
    return [str(binary)]


def _call(url: str, doc: object | None = None) -> tuple[int, dict[str, object]]:
    data = json.dumps(doc).encode() if doc is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@dataclass
class Running(Child):
    api: str = ""

    def publish(self, payload: dict[str, object], goal: str = "greet", **options: object) -> str:
        body = {"goal": goal, "payload": payload, **options}
        status, doc = _call(f"{self.api}/v1/publish", body)
        assert status == 201, doc
        return str(doc["id"])

    def result(self, intent_id: str, *, timeout: float = 30) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, doc = _call(f"{self.api}/v1/intents/{intent_id}?result=1")
            if status == 200 and doc["status"] in ("fulfilled", "dead"):
                return doc
            time.sleep(0.05)
        raise AssertionError(f"intent {intent_id} not finished in {timeout} s")


@pytest.fixture(params=["python", "node", "go"])
def running(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Running]:
    cmd = _command(request.param, tmp_path)
    app_port, api_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTENT_")}
    running = Running(
        spawn(
            [
                sys.executable,
                "-m",
                "intent_fleet.cli",
                "run",
                "--goal",
                "greet",
                "--app-port",
                str(app_port),
                "--api-port",
                str(api_port),
                "--state-dir",
                str(tmp_path / "state"),
                "--log-level",
                "warning",
                "--",
                *cmd,
            ],
            tmp_path / "run.log",
            env=env,
        ),
        tmp_path / "run.log",
        api=f"http://127.0.0.1:{api_port}",
    )
    api = running.api
    deadline = time.monotonic() + 60
    try:
        while True:
            assert running.alive(), running.logs()
            try:
                if _call(f"{api}/readyz")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert time.monotonic() < deadline, "run did not become ready"
            time.sleep(0.1)
        yield running
    finally:
        request.node.run_exit_code = running.stop(timeout=30, sig=signal.SIGINT)


def test_example_fulfils_json_text_busy_and_publish(running: Running) -> None:
    json_id = running.publish({"name": "Ada"})
    text_id = running.publish({"name": "Grace", "text": True})
    busy_id = running.publish({"name": "Ken", "busy_first": True})
    chain_id = running.publish(
        {"name": "Linus", "publish": {"goal": "greet", "payload": {"name": "child"}}}
    )

    doc = running.result(json_id)
    assert doc["status"] == "fulfilled"
    result = doc["result"]
    assert isinstance(result, dict)
    assert result["greeting"] == "Hello, Ada!"
    assert result["lang"] in ("python", "node", "go")
    assert result["attempt"] == 1

    doc = running.result(text_id)
    assert (doc["result_type"], doc["result"]) == ("text", "Hello, Grace!")

    doc = running.result(busy_id)
    assert doc["status"] == "fulfilled"
    assert doc["claim_attempts"] == 1  # the 503 cost no attempt

    doc = running.result(chain_id)
    chained = doc["result"]
    assert isinstance(chained, dict)
    child = running.result(str(chained["published"]))
    assert child["status"] == "fulfilled"


def test_example_rejections_fail_with_the_handlers_text(running: Running) -> None:
    rejected = running.publish({"reject": "no such customer"}, max_attempts=1)
    doc = running.result(rejected)
    assert doc["status"] == "dead"
    last_error = str(doc.get("last_error") or doc.get("error"))
    assert "no such customer" in last_error
    assert "422" in last_error


def test_ctrl_c_stops_everything_cleanly(running: Running) -> None:
    intent_id = running.publish({"name": "Barbara", "sleep": 0.5})

    def claimed() -> bool:
        return _call(f"{running.api}/v1/intents/{intent_id}")[1].get("status") == "claimed"

    wait_until(claimed, timeout=10, what="the sidecar to start on the intent")
    assert running.stop(timeout=30, sig=signal.SIGINT) == 0, running.logs()
    assert "embedded bus" in running.logs()
