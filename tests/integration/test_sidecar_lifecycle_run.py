"""``intent-fleet run`` end to end: a real handler process, the sidecar and an embedded bus
in one command; publish through the printed local API; Ctrl-C (SIGINT) drains and stops
every child.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.busproc import start_bus
from tests.support.counting_handler import HERE as COUNTING_HANDLER
from tests.support.lifecycle import BusHttp, wait_until
from tests.support.procs import Child, read_record, spawn
from tests.support.sidecarproc import free_port

GOAL = "lifecycle-run"


def _call(method: str, url: str, doc: object | None = None) -> tuple[int, Any]:
    data = json.dumps(doc).encode() if doc is not None else None
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_run_serves_a_handler_end_to_end_hides_the_secrets_and_stops_everything_on_ctrl_c(
    tmp_path: Path,
) -> None:
    app_port, api_port = free_port(), free_port()
    state = tmp_path / "state"
    record = tmp_path / "record.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTENT_")}
    # Both would hand the handler the bus; it must see neither.
    env["INTENT_API_KEY"] = "tk_" + "0" * 40
    env["INTENT_BUS_ADMIN_SECRET"] = "parent-admin-secret"
    args = [
        sys.executable,
        "-m",
        "intent_fleet.cli",
        "run",
        "--goal",
        GOAL,
        "--app-port",
        str(app_port),
        "--api-port",
        str(api_port),
        "--state-dir",
        str(state),
        "--",
        sys.executable,
        str(COUNTING_HANDLER),
        "--port",
        str(app_port),
        "--record",
        str(record),
        "--record-env",
    ]
    log_path = tmp_path / "run.log"
    run = Child(spawn(args, log_path, env=env, stdout=subprocess.PIPE, text=True), log_path)
    proc = run.proc
    out: list[str] = []

    def read_stdout() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line)

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    handler_pid: int | None = None
    slow_id = ""
    try:
        api = f"http://127.0.0.1:{api_port}"
        wait_until(
            lambda: any(f"local API {api}" in line for line in out) or proc.poll() is not None,
            timeout=30,
            what="the run banner",
        )
        assert proc.poll() is None, log_path.read_text()
        wait_until(
            lambda: _call("GET", api + "/readyz")[0] == 200,
            timeout=15,
            what="the sidecar to see the handler ready",
        )
        status, receipt = _call("POST", api + "/v1/publish", {"goal": GOAL, "payload": {"n": 1}})
        assert status == 201, receipt
        intent_id = receipt["id"]
        doc = wait_until(
            lambda: (
                (d := _call("GET", f"{api}/v1/intents/{intent_id}")[1])["status"] == "fulfilled"
                and d
            ),
            timeout=15,
            what="the intent to be fulfilled",
        )
        assert doc["claim_attempts"] == 1, doc

        lines = read_record(record)
        assert [r["intent_id"] for r in lines] == [intent_id]
        handler_pid = lines[0]["pid"]
        names = set(lines[0]["env"])
        assert "INTENT_API_KEY" not in names
        assert "INTENT_BUS_ADMIN_SECRET" not in names
        assert not any("SECRET" in n or n.startswith("INTENT_API_KEY") for n in names), names
        assert {"PORT", "INTENT_SIDECAR_URL"} <= names

        # Ctrl-C while a job is in the handler's hands: it finishes and is reported.
        status, receipt = _call(
            "POST", api + "/v1/publish", {"goal": GOAL, "payload": {"sleep": 1.0}}
        )
        assert status == 201, receipt
        slow_id = receipt["id"]
        wait_until(
            lambda: _call("GET", api + "/v1/state")[1]["in_flight"] == 1,
            timeout=10,
            what="the slow intent in flight",
            interval=0.02,
        )
        assert run.stop(timeout=30, sig=signal.SIGINT) == 0, run.logs()  # what Ctrl-C sends
    finally:
        # Ctrl-C, not SIGKILL, even when the test failed: run stops its bus, sidecar and
        # handler itself, and a killed run would leave them behind.
        run.stop(timeout=30, sig=signal.SIGINT)
        reader.join(timeout=5)
        outlived = handler_pid is not None and _alive(handler_pid)
        if outlived:
            assert handler_pid is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(handler_pid, signal.SIGKILL)
    # Every child is gone with it.
    assert handler_pid is not None
    assert not outlived, f"the handler (pid {handler_pid}) outlived run"
    assert (state / "intent-bus.db").is_file()
    secret = state / "admin-secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    secret_value = secret.read_text().strip()
    assert secret_value
    # The drained job was reported before the bus stopped: open the same database again.
    assert [r["intent_id"] for r in read_record(record)] == [intent_id, slow_id]
    bus = start_bus(tmp_path / "reopen", db=state / "intent-bus.db", admin_secret=secret_value)
    try:
        doc = BusHttp(bus.url, admin_secret=bus.admin_secret).intent(slow_id)
        assert (doc["status"], doc["claim_attempts"]) == ("fulfilled", 1), doc
    finally:
        assert bus.stop() == 0, bus.logs()
