"""The sidecar's local API, the key staying out of the handler, and a bus that answers badly.

Real sidecar and handler processes; a real bus except in the last test, where
a deliberately broken server (aiohttp in this process) stands in for a bus
that sends malformed claim answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.integration.conftest import StartBus
from tests.support import scripted_handler
from tests.support.busproc import BusProcess
from tests.support.procs import Child, read_record, spawn
from tests.support.rawbus import RawBus
from tests.support.sidecar_rig import Procs, bus_status, log_lines, until, wait_status
from tests.support.sidecarproc import SidecarProcess, free_port, start_sidecar

GOAL = "api"


def call(
    sidecar: SidecarProcess, method: str, path: str, body: bytes = b""
) -> tuple[int, dict[str, str], Any]:
    """One local API request with an exact body; returns status, headers and parsed JSON."""
    req = urllib.request.Request(
        sidecar.api_url + path,
        data=body or None,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, headers, data = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        status, headers, data = exc.code, dict(exc.headers), exc.read()
    return status, headers, json.loads(data) if data else None


def assert_api_error(reply: tuple[int, dict[str, str], Any], status: int, code: str) -> str:
    got_status, headers, body = reply
    assert got_status == status, reply
    assert headers["Content-Type"].startswith("application/json"), headers
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    message: str = body["error"]["message"]
    assert message
    return message


# -- the local API -------------------------------------------------------------------


async def test_local_api_publish_kv_status_state_and_metrics(
    bus: BusProcess, raw: RawBus, procs: Procs
) -> None:
    key, _ = await raw.new_key("api-tenant")
    handler = procs.handler()
    sidecar = procs.sidecar(bus_url=bus.url, api_key=key, goal=GOAL, app_port=handler.port)

    # Publish for another goal: the bus knows it, with the options given.
    status, receipt = sidecar.post(
        "/v1/publish", {"goal": "elsewhere", "payload": {"x": 1}, "priority": 250}
    )
    assert status == 201, receipt
    assert isinstance(receipt, dict)
    assert receipt["status"] == "published"
    assert receipt["namespace"] == "default"
    st = await bus_status(raw, receipt["id"])
    assert st["goal"] == "elsewhere"
    assert st["status"] == "open"
    assert st["priority"] == 250
    admin = await raw.admin("GET", f"/admin/intents/{receipt['id']}")
    assert admin.body["payload"] == {"x": 1}

    # Publish for the sidecar's own goal: the handler's result comes back through the API.
    status, receipt = sidecar.post(
        "/v1/publish", {"goal": GOAL, "payload": {"status": 200, "json": {"sum": 3}}}
    )
    assert status == 201, receipt
    assert isinstance(receipt, dict)
    own = receipt["id"]

    async def fulfilled() -> dict[str, Any] | None:
        code, doc = sidecar.get(f"/v1/intents/{own}?result=1")
        assert code == 200, doc
        assert isinstance(doc, dict)
        return doc if doc["status"] == "fulfilled" else None

    doc = await until(fulfilled, timeout=10, what="the own intent fulfilled")
    assert doc["result"] == {"sum": 3}
    assert doc["result_type"] == "json"
    code, plain = sidecar.get(f"/v1/intents/{own}")
    assert code == 200
    assert isinstance(plain, dict)
    assert plain["status"] == "fulfilled"
    assert "result" not in plain
    assert_api_error(call(sidecar, "GET", "/v1/intents/no-such-intent"), 404, "not_found")

    # KV, written through the sidecar and visible on the bus under the sidecar's key.
    ok = call(sidecar, "PUT", "/v1/kv/greeting", b'{"value": "hello", "ttl": 60}')
    assert ok[:1] == (200,) and ok[2] == {"ok": True}, ok
    assert call(sidecar, "GET", "/v1/kv/greeting")[::2] == (200, {"value": "hello"})
    r = await raw.request("GET", "/get/greeting", key=key)
    assert r.status == 200
    assert r.body == {"value": "hello"}
    assert call(sidecar, "PUT", "/v1/kv/doc", b'{"value": {"a": [1, 2]}}')[0] == 200
    code, _, got = call(sidecar, "GET", "/v1/kv/doc")
    assert code == 200
    assert json.loads(got["value"]) == {"a": [1, 2]}
    assert_api_error(call(sidecar, "GET", "/v1/kv/never-set"), 404, "not_found")
    assert_api_error(call(sidecar, "PUT", "/v1/kv/k", b'{"ttl": 5}'), 400, "invalid_request")
    assert_api_error(
        call(sidecar, "PUT", "/v1/kv/k", b'{"value": 1, "ttl": -1}'), 400, "invalid_request"
    )

    # State.
    code, state = sidecar.get("/v1/state")
    assert code == 200
    assert isinstance(state, dict)
    assert state["goal"] == GOAL
    assert state["namespace"] == "default"
    assert state["in_flight"] == 0
    assert state["concurrency"] == 4
    assert state["handler_ready"] is True
    assert state["draining"] is False
    idle, busy = state["idle_seconds"], state["busy_ratio"]
    assert isinstance(idle, float | int)
    assert idle >= 0
    assert isinstance(busy, float | int)
    assert 0 <= busy <= 1

    # Metrics.
    code, text = sidecar.get("/metrics")
    assert code == 200
    assert isinstance(text, str)
    for name in (
        "intent_sidecar_intents_claimed_total",
        "intent_sidecar_handler_duration_seconds_bucket",
        "intent_sidecar_in_flight",
        "intent_sidecar_busy_ratio",
        "intent_sidecar_claim_polls_total",
        "intent_sidecar_bus_request_duration_seconds",
    ):
        assert f"\n{name}" in text, name
    assert sidecar.metric("intent_sidecar_intents_claimed_total") == 1
    assert sidecar.metric("intent_sidecar_intents_fulfilled_total") == 1
    assert sidecar.metric("intent_sidecar_claim_polls_total") >= 1
    assert sidecar.metric("intent_sidecar_handler_ready") == 1
    assert "# TYPE intent_sidecar_handler_duration_seconds histogram" in text


def send(
    sidecar: SidecarProcess, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, Any]:
    """A request with exactly these headers (urllib adds only Host unless told otherwise)."""
    req = urllib.request.Request(
        sidecar.api_url + path, data=body or None, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, data = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, data = exc.code, exc.read()
    return status, json.loads(data) if data else None


async def test_local_api_answers_only_json_from_this_host(
    bus: BusProcess, raw: RawBus, procs: Procs
) -> None:
    """A web page in a developer's browser must not publish, read KV or drain: it can reach
    127.0.0.1 only under its own name (DNS rebinding) or cross-site without JSON."""
    key, _ = await raw.new_key("api-tenant")
    handler = procs.handler()
    sidecar = procs.sidecar(bus_url=bus.url, api_key=key, goal=GOAL, app_port=handler.port)
    publish = json.dumps({"goal": "from-a-page", "payload": {}}).encode()
    json_type = {"Content-Type": "application/json"}
    hostile: list[tuple[str, str, dict[str, str], bytes, int, str]] = [
        ("POST", "/v1/publish", {"Content-Type": "text/plain"}, publish, 415, "Content-Type"),
        ("POST", "/v1/publish", {}, publish, 415, "Content-Type"),
        ("POST", "/v1/drain", {}, b"", 415, "Content-Type"),
        ("POST", "/v1/drain", {"Content-Type": "application/x-www-form-urlencoded"}, b"", 415, ""),
        ("PUT", "/v1/kv/k", {"Content-Type": "text/plain"}, b'{"value": 1}', 415, ""),
        (
            "POST",
            "/v1/publish",
            {**json_type, "Host": "evil.example:8787"},
            publish,
            403,
            "127.0.0.1",
        ),
        ("GET", "/v1/kv/k", {"Host": "rebound.evil.example"}, b"", 403, "localhost"),
        ("GET", "/v1/state", {"Host": "127.0.0.1.evil.example"}, b"", 403, ""),
        ("POST", "/v1/publish", {**json_type, "Origin": "https://evil.example"}, publish, 403, ""),
        ("POST", "/v1/drain", {**json_type, "Sec-Fetch-Site": "cross-site"}, b"", 403, ""),
    ]
    for method, path, headers, body, status, word in hostile:
        got, doc = send(sidecar, method, path, headers, body)
        assert got == status, (method, path, headers, doc)
        assert word in doc["error"]["message"], doc
    # None of it happened: nothing published, not draining.
    assert await raw.stats(key, goal="from-a-page") == [
        {
            "namespace": "default",
            "goal": "from-a-page",
            "ready": 0,
            "delayed": 0,
            "claimed": 0,
            "dead": 0,
            "oldest_ready_age_seconds": 0.0,
        }
    ]
    code, state = sidecar.get("/v1/state")
    assert code == 200 and state["draining"] is False, state
    # The same requests, as a program on this host sends them, are served.
    port = sidecar.api_url.rsplit(":", 1)[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost"):
        got, doc = send(sidecar, "POST", "/v1/publish", {**json_type, "Host": host}, publish)
        assert got == 201, (host, doc)
    got, doc = send(
        sidecar, "POST", "/v1/publish", {**json_type, "Origin": f"http://localhost:{port}"}, publish
    )
    assert got == 201, doc


async def test_a_handler_redirect_is_never_followed(
    bus: BusProcess, raw: RawBus, procs: Procs
) -> None:
    key, _ = await raw.new_key("redirect-tenant")
    handler = procs.handler()
    elsewhere = procs.handler()  # where the redirect points: it must see nothing
    sidecar = procs.sidecar(bus_url=bus.url, api_key=key, goal=GOAL, app_port=handler.port)
    location = f"http://127.0.0.1:{elsewhere.port}/steal"
    payload = {"status": 307, "location": location}
    intent_id = await raw.publish(key, {"goal": GOAL, "payload": payload, "max_attempts": 1})
    st = await wait_status(raw, intent_id)
    assert st["status"] == "dead"
    assert "redirect" in (st["last_error"] or ""), st
    assert [r for r in read_record(elsewhere.record) if r["method"] == "POST"] == []
    assert sidecar.proc.poll() is None


async def test_local_api_refuses_bad_requests_and_reports_a_dead_bus(
    bus: BusProcess, procs: Procs
) -> None:
    handler = procs.handler()
    sidecar = procs.sidecar(
        bus_url=bus.url, api_key=bus.admin_secret, goal=GOAL, app_port=handler.port
    )
    message = assert_api_error(
        call(sidecar, "POST", "/v1/publish", b"{not json"), 400, "invalid_request"
    )
    assert "json" in message.lower()
    message = assert_api_error(
        call(sidecar, "POST", "/v1/publish", b"[1, 2]"), 400, "invalid_request"
    )
    assert "object" in message
    message = assert_api_error(
        call(sidecar, "POST", "/v1/publish", b'{"payload": {}}'), 400, "invalid_request"
    )
    assert "goal" in message
    message = assert_api_error(
        call(sidecar, "POST", "/v1/publish", b'{"goal": "g"}'), 400, "invalid_request"
    )
    assert "payload" in message
    too_big = b'{"goal": "g", "payload": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    assert call(sidecar, "POST", "/v1/publish", too_big)[0] == 413

    assert bus.stop() == 0
    started = time.monotonic()
    reply = call(sidecar, "POST", "/v1/publish", b'{"goal": "g", "payload": {}}')
    message = assert_api_error(reply, 503, "bus_unavailable")
    assert "unreachable" in message
    assert reply[1].get("Retry-After") == "1"
    assert time.monotonic() - started < 20
    assert call(sidecar, "GET", "/healthz")[0] == 200
    assert sidecar.proc.poll() is None


# -- the key never reaches the handler ---------------------------------------------

MARKER = "PAYLOAD-MARKER-7f3a9c"


async def test_the_key_and_payloads_stay_out_of_the_handler_env_headers_and_logs(
    bus: BusProcess, raw: RawBus, procs: Procs
) -> None:
    key, _ = await raw.new_key("secret-keeper")
    handler = procs.handler()
    sidecar = procs.sidecar(
        bus_url=bus.url,
        api_key=key,
        goal=GOAL,
        app_port=handler.port,
        extra_args=["--handler-timeout", "30"],
    )
    scripts = [
        {"status": 200, "json": {"echo": MARKER}, "m": MARKER},
        {"status": 200, "text": f"text {MARKER}", "m": MARKER},
        {"status": 422, "body": "refused politely", "m": MARKER},
        {"status": 429, "retry_after": "0.1", "times": 1, "m": MARKER},
    ]
    ids = [await raw.publish(key, {"goal": GOAL, "payload": s, "max_attempts": 1}) for s in scripts]
    status, receipt = sidecar.post("/v1/publish", {"goal": GOAL, "payload": {"m": MARKER}})
    assert status == 201, receipt
    assert isinstance(receipt, dict)
    ids.append(receipt["id"])
    assert call(sidecar, "PUT", "/v1/kv/secret", json.dumps({"value": MARKER}).encode())[0] == 200
    for intent_id in ids:
        await wait_status(raw, intent_id)

    records = read_record(handler.record)
    deliveries = handler.deliveries()
    assert len(deliveries) == len(ids) + 1  # the 429 was delivered twice
    before = time.time()
    for rec in records:
        for name, value in rec["headers"].items():
            assert key not in value, name
            assert bus.admin_secret not in value, name
            assert "tk_" not in value, name
        assert not {n.lower() for n in rec["header_names"]} & {
            "x-api-key",
            "x-signature",
            "authorization",
            "x-admin-token",
        }
        assert rec["env_intent_api"] is False
        assert rec["env_credential_names"] == []
    for d in deliveries:
        deadline = int(d["Intent-Deadline"])
        assert d["time"] < deadline <= d["time"] + 31
        assert deadline > before - 60

    logs = sidecar.logs()
    assert logs, "the sidecar logged nothing"
    assert key not in logs
    assert key.removeprefix("tk_") not in logs
    assert MARKER not in logs
    # The failure itself is logged, with the handler's text but not the payload.
    failed = [d for d in log_lines(sidecar) if d.get("msg") == "intent failed"]
    assert any("refused politely" in str(d.get("error")) for d in failed), failed


async def test_intent_fleet_run_keeps_the_key_out_of_the_handler_environment(
    bus: BusProcess, raw: RawBus, tmp_path: Path
) -> None:
    key, _ = await raw.new_key("run-tenant")
    port = free_port()
    record = tmp_path / "run-handler.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTENT_")}
    env.update(
        {
            "INTENT_API_KEY": key,
            "INTENT_BUS_ADMIN_SECRET": bus.admin_secret,
            "HOME": str(tmp_path),
        }
    )
    args = [
        sys.executable,
        "-m",
        "intent_fleet.cli",
        "run",
        "--goal",
        GOAL,
        "--app-port",
        str(port),
        "--api-port",
        "0",
        "--bus-url",
        bus.url,
        "--",
        sys.executable,
        str(scripted_handler.HERE),
        "--port",
        str(port),
        "--record",
        str(record),
    ]
    log_path = tmp_path / "run.log"
    run = Child(spawn(args, log_path, env=env), log_path)
    handler_pids: set[int] = set()
    try:
        intent_id = await raw.publish(
            key, {"goal": GOAL, "payload": {"status": 200, "json": "via run"}}
        )
        doc = await wait_status(raw, intent_id, timeout=30)
        assert doc["status"] == "fulfilled", log_path.read_text()
        assert doc["result"] == "via run"
        records = read_record(record)
        handler_pids = {r["pid"] for r in records}
        (delivery,) = [r for r in records if r["method"] == "POST"]
        assert delivery["Intent-Id"] == intent_id
        names = delivery["env_names"]
        assert "INTENT_SIDECAR_URL" in names
        assert "PORT" in names
        assert delivery["env_intent_api"] is False
        assert delivery["env_credential_names"] == []
        assert "INTENT_BUS_ADMIN_SECRET" not in names
    finally:
        code = run.stop(timeout=30)
        for pid in handler_pids:  # run stops its handler; make sure nothing is left
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and _alive(pid):
                await asyncio.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
                pytest.fail(f"intent-fleet run left its handler (pid {pid}) running")
    assert code == 0, run.logs()
    assert key not in log_path.read_text()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (not yet reaped by its parent's exit) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


# -- a bus that answers claims with garbage ------------------------------------------


class BrokenBus:
    """Answers /health like a v2.1 bus with long-poll, then feeds scripted /claim answers."""

    VALID_ID = "fake-intent-1"

    def __init__(self) -> None:
        good = {
            "id": self.VALID_ID,
            "namespace": "default",
            "goal": GOAL,
            "payload": {"status": 200, "json": {"fine": True}},
            "claim_attempts": 1,
            "priority": 100,
            "target_worker": None,
            "required_capability": None,
            "claim_token": "tok-1",
            "claim_timeout": 60,
            "claim_expires_at": time.time() + 60,
            "visibility": "private",
            "max_attempts": 3,
        }
        missing_id = {k: v for k, v in good.items() if k != "id"}
        self.script: list[bytes] = [
            b"{this is not json",
            b"{this is not json",
            b"[1, 2, 3]",
            b"[1, 2, 3]",
            orjson.dumps(missing_id),
            orjson.dumps(missing_id),
            orjson.dumps(good),
        ]
        self.claims = 0
        self.fulfilled: list[tuple[str, dict[str, Any]]] = []
        self.failed: list[str] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_post("/claim", self.claim)
        app.router.add_post("/extend_claim/{id}", self.extend)
        app.router.add_post("/fulfill/{id}", self.fulfill)
        app.router.add_post("/fail/{id}", self.fail)
        return app

    @staticmethod
    def _json(doc: Any, status: int = 200) -> web.Response:
        return web.Response(
            status=status,
            body=orjson.dumps(doc),
            content_type="application/json",
            headers={"X-Intent-Version": "2.1"},
        )

    async def health(self, _request: web.Request) -> web.Response:
        return self._json(
            {
                "ok": True,
                "status": "ok",
                "version": "2.1",
                "protocol": "2.1",
                "server": "broken-test-bus",
                "ts": time.time(),
                "features": ["long_poll_claim"],
            }
        )

    async def claim(self, request: web.Request) -> web.Response:
        self.claims += 1
        if self.script:
            return web.Response(
                status=200,
                body=self.script.pop(0),
                content_type="application/json",
                headers={"X-Intent-Version": "2.1"},
            )
        # Nothing left: behave like an idle long-poll.
        await asyncio.sleep(min(float(request.query.get("wait", "1")), 1.0))
        return web.Response(status=204, headers={"Retry-After": "1", "X-Intent-Version": "2.1"})

    async def extend(self, request: web.Request) -> web.Response:
        return self._json({"id": request.match_info["id"], "ok": True, "extended_by": 60})

    async def fulfill(self, request: web.Request) -> web.Response:
        self.fulfilled.append((request.match_info["id"], await request.json()))
        return self._json({"id": request.match_info["id"], "ok": True})

    async def fail(self, request: web.Request) -> web.Response:
        self.failed.append(request.match_info["id"])
        return self._json({"id": request.match_info["id"], "ok": True, "status": "open"})


async def test_malformed_claim_answers_are_logged_and_survived(
    tmp_path: Path, procs: Procs
) -> None:
    fake = BrokenBus()
    runner = web.AppRunner(fake.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    sidecar: SidecarProcess | None = None
    try:
        handler = procs.handler()
        sidecar = await asyncio.to_thread(
            start_sidecar,
            tmp_path / "sidecar",
            bus_url=f"http://127.0.0.1:{port}",
            api_key="tk_" + "0" * 40,
            goal=GOAL,
            app_port=handler.port,
        )
        procs.sidecars.append(sidecar)

        async def fulfilled() -> bool:
            return bool(fake.fulfilled)

        await until(fulfilled, timeout=20, what="the valid claim being fulfilled")
        assert fake.fulfilled[0][0] == BrokenBus.VALID_ID
        body = fake.fulfilled[0][1]
        assert body["claim_token"] == "tok-1"
        assert body["result"] == {"fine": True}
        assert body.get("result_type", "json") == "json"
        assert fake.failed == []
        assert fake.claims >= 7
        assert handler.deliveries()[0]["Intent-Id"] == BrokenBus.VALID_ID

        assert sidecar.proc.poll() is None
        code, _ = await asyncio.to_thread(sidecar.get, "/healthz")
        assert code == 200
        errors = await asyncio.to_thread(sidecar.metric, "intent_sidecar_bus_errors_total")
        assert errors >= 6

        claim_errors = [
            str(d.get("error", ""))
            for d in log_lines(sidecar)
            if "claim" in str(d.get("msg", "")) and d.get("level") in ("warning", "error")
        ]
        joined = "\n".join(claim_errors)
        assert "not valid JSON" in joined, joined
        assert "expected a JSON object, got an array" in joined, joined
        assert "'id' is missing" in joined, joined
        assert "claim answer" in joined, joined
    finally:
        if sidecar is not None:
            sidecar.kill()
        await runner.cleanup()


async def test_a_fulfil_the_bus_refuses_becomes_a_fail_with_the_cause(
    start: StartBus, procs: Procs
) -> None:
    """The handler's result is bigger than this bus keeps: the bus answers 413, and the
    intent fails at once with that cause instead of waiting out its lease."""
    bus = start("--max-result-bytes", "1000")
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        key, _ = await raw.new_key("refused-tenant")
        handler = procs.handler()
        procs.sidecar(bus_url=bus.url, api_key=key, goal=GOAL, app_port=handler.port)
        payload = {"status": 200, "bytes": 4000}
        started = time.monotonic()
        intent_id = await raw.publish(key, {"goal": GOAL, "payload": payload, "max_attempts": 1})
        st = await wait_status(raw, intent_id)
        assert st["status"] == "dead", st
        assert "refused the fulfil (413)" in st["last_error"], st
        assert time.monotonic() - started < 30  # not the 60 s lease
